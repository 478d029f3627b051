"""Protect RPC benchmark: ``eth_sendRawTransaction`` throughput and latency to "submitted", against
a bare pass-through JSON-RPC proxy, in the same run on the same devnet.

* protect: the execution service in its own process serving the Protect RPC (API key checked at
  tenancy's AuthService once, then cached; each call validated at the edge, screened, simulated in
  one JSON-RPC batch, recorded in PostgreSQL, sent to the relay as a private bundle and the row
  marked submitted before it answers), tenancy in its own process;
* proxy: an aiohttp server that forwards the request body to the same chain endpoint (the devnet
  relay, which answers ``eth_sendRawTransaction`` with the hash at once) and returns its answer:
  the cost of one HTTP hop with nothing done, the floor any RPC in front of the chain pays.

Both get the same workload: pre-signed transactions (distinct senders per path, sequential
nonces per sender), sent by ``--concurrency`` clients on keep-alive connections. Latency is per
request from send to answer (for protect, the answer comes once the transaction is "submitted";
checked afterwards in its status). No block is mined during a run. The order-flow auction is
off by default (``--ofa amounts`` turns it on: each accept then also simulates its gas at the
relay, the lot's cost).

    .venv/bin/python bench/bench_protect.py [--transactions 400] [--concurrency 8]

``BENCH_PROFILE_DIR=<dir>`` runs each service under cProfile (``<dir>/<service>.prof``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from eth_account import Account

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.auth import SigningKey
from mevaas_core.db import provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_core.service import ServiceSpec
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres
from mevaas_sdk import ClientConfig, MevaasClient

KEK = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
ADMIN_KEY = f"mvs_benchadmin_{secrets.token_urlsafe(24)}"
GWEI = 10**9
PER_SENDER = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_service(
    spec: ServiceSpec, admin_dsn: str, nats_url: str, key: SigningKey, **extra: Any
) -> tuple[asyncio.subprocess.Process, int]:
    """``python -m mevaas_<name>`` with its own database role and schema, as deployed."""
    assert spec.schema is not None and spec.migrations is not None
    dsns = await provision_service_database(
        admin_dsn, spec.schema, secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(8)
    )
    await apply_migrations(dsns.owner_dsn, spec.schema, spec.migrations)
    port = free_port()
    settings = {
        "database_url": dsns.app_dsn,
        "platform_database_url": dsns.platform_dsn,
        "nats_url": nats_url,
        "grpc_port": port,
        "metrics_port": free_port(),
        "jwt_public_keys": key.public_pem(),
        "log_level": "WARNING",
        **extra,
    }
    env = {**os.environ, **{name.upper(): str(value) for name, value in settings.items()}}
    profile = os.environ.get("BENCH_PROFILE_DIR")
    argv = ["-m", "cProfile", "-o", f"{profile}/{spec.name}.prof"] if profile else []
    process = await asyncio.create_subprocess_exec(sys.executable, *argv, "-m", spec.module, env=env)
    await wait_port(process, port)
    return process, port


async def wait_port(process: asyncio.subprocess.Process, port: int) -> None:
    async with asyncio.timeout(90):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"service exited with {process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


class PassThrough:
    """The baseline: a JSON-RPC proxy that forwards every body to the chain and returns its answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> int:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        app = web.Application()
        app.router.add_post("/", self.forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return port

    async def forward(self, request: web.Request) -> web.Response:
        assert self.session is not None
        async with self.session.post(
            self.upstream, data=await request.read(), headers={"Content-Type": "application/json"}
        ) as upstream:
            return web.Response(
                body=await upstream.read(), status=upstream.status, content_type="application/json"
            )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()


async def signed_batch(chain: DevnetChain, count: int) -> list[str]:
    """``count`` transfers, PER_SENDER per funded sender, signed in nonce order."""
    block = await chain.client.get_block("latest")
    assert block is not None
    base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
    raws: list[str] = []
    for _ in range((count + PER_SENDER - 1) // PER_SENDER):
        account = Account.create()
        await chain.client.request("anvil_setBalance", [account.address, hex(10**21)])
        for nonce in range(PER_SENDER):
            tx = {
                "chainId": chain.spec.chain_id,
                "nonce": nonce,
                "to": account.address,
                "value": 1,
                "gas": 21_000,
                "maxFeePerGas": 4 * base_fee + 2 * GWEI,
                "maxPriorityFeePerGas": GWEI,
                "type": 2,
            }
            raws.append("0x" + Account.sign_transaction(tx, account.key).raw_transaction.hex())
    return raws[:count]


async def drive(url: str, raws: list[str], concurrency: int) -> tuple[list[float], float, list[str]]:
    """Send every transaction (each worker takes whole senders, so nonces go in order); returns
    per-request latencies (ms), the wall time (s) and the hashes answered."""
    groups = [raws[i : i + PER_SENDER] for i in range(0, len(raws), PER_SENDER)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for group in groups:
        queue.put_nowait(group)
    latencies: list[float] = []
    hashes: list[str] = []
    errors: list[Any] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            for raw in queue.get_nowait():
                body = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw]}
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    reply = await response.json()
                latencies.append((time.perf_counter() - started) * 1000)
                if "result" in reply:
                    hashes.append(reply["result"])
                else:
                    errors.append(reply)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return latencies, wall, hashes


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def submitted(url: str, hashes: list[str]) -> int:
    async with aiohttp.ClientSession() as session:
        count = 0
        for start in range(0, len(hashes), 100):
            body = [
                {"jsonrpc": "2.0", "id": i, "method": "mevaas_getTransactionStatus", "params": [h]}
                for i, h in enumerate(hashes[start : start + 100])
            ]
            async with session.post(url, json=body) as response:
                count += sum(1 for r in await response.json() if r["result"]["status"] == "SUBMITTED")
        return count


async def main(transactions: int, concurrency: int, ofa: str) -> None:
    from mevaas_execution.server import SERVICE as EXECUTION
    from mevaas_tenancy.server import SERVICE as TENANCY

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        async with (
            EmbeddedNats(data / "nats") as nats,
            EmbeddedPostgres(data / "pg", durable=False) as pg,
            Devnet(block_time_s=None, data_dir=None, sim_swaps_per_block=0) as devnet,
        ):
            chain = devnet.main
            chains_file = data / "chains.json"
            devnet.registry.write(chains_file)
            key = SigningKey.generate()
            tenancy, tenancy_port = await start_service(
                TENANCY,
                pg.dsn,
                nats.url,
                key,
                jwt_private_key=key.private_pem(),
                bootstrap_admin_key=ADMIN_KEY,
            )
            http_port = free_port()
            execution, _ = await start_service(
                EXECUTION,
                pg.dsn,
                nats.url,
                key,
                execution_kek=KEK,
                chains_file=chains_file,
                http_port=http_port,
                tenancy_address=f"127.0.0.1:{tenancy_port}",
                ofa_hint_level=ofa,
            )
            proxy = PassThrough(chain.config.rpc_url)
            proxy_port = await proxy.start()
            try:
                admin = MevaasClient(
                    ClientConfig(endpoints={"default": f"127.0.0.1:{tenancy_port}"}, api_key=ADMIN_KEY)
                )
                async with admin:
                    slug = f"bench-{uuid.uuid4().hex[:8]}"
                    tenant = await admin.tenants.CreateTenant(
                        tenancy_pb2.CreateTenantRequest(
                            idempotency_key=slug,
                            slug=slug,
                            display_name=slug,
                            tier=common_pb2.TIER_ENTERPRISE,
                        )
                    )
                    api_key = await admin.tenants.CreateApiKey(
                        tenancy_pb2.CreateApiKeyRequest(
                            idempotency_key=slug,
                            tenant_id=tenant.tenant.tenant_id,
                            name="bench",
                            roles=[common_pb2.ROLE_TRADER],
                        )
                    )
                protect_url = f"http://127.0.0.1:{http_port}/rpc/{chain.spec.chain_id}/{api_key.secret}"
                proxy_url = f"http://127.0.0.1:{proxy_port}/"
                # Warm-up (the key exchange, connections, caches), not measured.
                await drive(protect_url, await signed_batch(chain, 20), 2)
                await drive(proxy_url, await signed_batch(chain, 20), 2)
                results = {}
                for name, url in (("proxy", proxy_url), ("protect", protect_url)):
                    raws = await signed_batch(chain, transactions)
                    results[name] = await drive(url, raws, concurrency)
                held = await submitted(protect_url, results["protect"][2])
            finally:
                await proxy.stop()
                await stop(execution)
                await stop(tenancy)
    print(f"eth_sendRawTransaction, {transactions} transactions per path, concurrency {concurrency}")
    print(f"{'path':10} {'tx/s':>9} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for name, (latencies, wall, _) in results.items():
        print(
            f"{name:10} {len(latencies) / wall:9.1f} {pct(latencies, 50):9.2f} {pct(latencies, 90):9.2f} "
            f"{pct(latencies, 99):9.2f} {max(latencies):9.2f}"
        )
    protect, proxy_r = results["protect"], results["proxy"]
    print(
        f"protect / proxy: p50 {pct(protect[0], 50) / pct(proxy_r[0], 50):.1f}x, "
        f"throughput {(len(proxy_r[0]) / proxy_r[1]) / (len(protect[0]) / protect[1]):.1f}x lower; "
        f"{held}/{len(protect[2])} protected transactions SUBMITTED when answered"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--ofa",
        default="off",
        help="order-flow auction hint level (off: none). With an auction, each accept also simulates the "
        "transaction at the devnet relay (eth_callBundle, eth_simulateV1: nothing mined)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.transactions, args.concurrency, args.ofa))
