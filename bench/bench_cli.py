"""Start-up time of the `mevaas` CLI against `python -c pass`, in one run (goal: --help within 3x).

Each case runs as a fresh process, interleaved round by round so machine load hits all alike:
  python -c pass       the interpreter of the venv alone (the baseline)
  mevaas --help        the root help, printed from the command registry
  mevaas config show   resolves the config (files and env, no network) on the fast path: no typer/rich/grpc
  mevaas whoami        a typical API command: config, grpc, the API key exchange and one RPC,
                       against an in-process gRPC server that answers canned messages (so the
                       figure is the CLI's own cost)
  eager imports        importing every command module, the inspector and the devnet CLI at once:
                       what `mevaas --help` paid before the registry (for reference)

    .venv/bin/python bench/bench_cli.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc

PYTHON = sys.executable
MEVAAS = str(Path(PYTHON).parent / "mevaas")
EAGER = (
    "import mevaas_sdk.tenancy_cli, mevaas_sdk.trading_cli, mevaas_sdk.treasury_cli, mevaas_sdk.rpc_cli, "
    "mevaas_sdk.watch_cli, mevaas_inspector.cli, mevaas_local.devnet.cli"
)

# The same command through typer/rich (what `mevaas config show` ran before its fast path).
TYPER_CONFIG_SHOW = "from mevaas_sdk.config_cli import app; app(['--json'])"


class CannedAuth(tenancy_pb2_grpc.AuthServiceServicer):
    async def ExchangeApiKey(self, request: Any, context: Any) -> tenancy_pb2.ExchangeApiKeyResponse:
        expires = Timestamp(seconds=int(time.time()) + 900)
        return tenancy_pb2.ExchangeApiKeyResponse(access_token="canned", expires_at=expires)

    async def WhoAmI(self, request: Any, context: Any) -> tenancy_pb2.WhoAmIResponse:
        return tenancy_pb2.WhoAmIResponse(tenant_id="t-1", subject="bench", roles=[common_pb2.ROLE_VIEWER])


async def timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd
    )
    _, err = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{argv} failed ({process.returncode}): {err.decode()}")
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(rounds: int) -> None:
    server = grpc.aio.server()
    tenancy_pb2_grpc.add_AuthServiceServicer_to_server(CannedAuth(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEVAAS_")}
        env.update(
            XDG_CONFIG_HOME=str(Path(home) / "config"),
            MEVAAS_ENDPOINT=f"127.0.0.1:{port}",
            MEVAAS_API_KEY="mvs_bench_key",
        )
        cases = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "mevaas --help": [MEVAAS, "--help"],
            "mevaas config show": [MEVAAS, "config", "show", "--json"],
            "config show via typer": [PYTHON, "-c", TYPER_CONFIG_SHOW],
            "mevaas whoami --json": [MEVAAS, "whoami", "--json"],
            "eager imports (before)": [PYTHON, "-c", EAGER],
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for argv in cases.values():  # warm the file cache once
            await timed(argv, env, home)
        for _ in range(rounds):
            for name, argv in cases.items():
                samples[name].append(await timed(argv, env, home))
    await server.stop(None)
    base = statistics.median(samples["python -c pass"])
    print(f"CLI start-up, {rounds} runs each, interleaved (ms)")
    print(f"{'case':<26}{'p50':>9}{'p95':>9}{'x baseline p50':>16}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"{name:<26}{p50 * 1000:>9.1f}{pct(values, 0.95) * 1000:>9.1f}{p50 / base:>16.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    asyncio.run(main(parser.parse_args().rounds))
