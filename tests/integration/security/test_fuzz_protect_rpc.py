"""A fuzzer of the Protect RPC (the JSON-RPC endpoint wallets point at), against the live endpoint
of a running execution service with real tenancy, PostgreSQL, NATS and the devnet behind it: the
malformed HTTP bodies the gateway's fuzzer sends (fuzzing.FIXED_BODIES: binary, invalid UTF-8,
100,000-deep nesting, non-objects, an empty batch, over 1 MB), then seeded random requests and
batches (wrong types everywhere, bad and huge hex, unicode and NUL, ids of every JSON type,
nesting around the parser's limit, batches over the limit, refused and made-up methods, missing
or bad keys, unknown chains, bad modes).

Every answer must be JSON: a well-formed JSON-RPC 2.0 response (one per request of a batch, the
request's id echoed when it had a valid one), never a 5xx other than 503, never an internal error,
no database or driver text, no error that echoes a large input; none may hang (30 s client
timeout); afterwards the endpoint still answers a valid call. ``MEVAAS_PROTECT_FUZZ_COUNT`` sets
the random requests (default 150; e.g. 5000 for an acceptance run), ``MEVAAS_FUZZ_SEED`` the
seed."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from mevaas.common.v1 import common_pb2
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.integration.protection.helpers import protect_rpc
from tests.integration.security.fuzzing import FIXED_BODIES, FORBIDDEN_TEXT
from tests.integration.tenancy.helpers import create_tenant

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

COUNT = int(os.environ.get("MEVAAS_PROTECT_FUZZ_COUNT", "150"))
CONCURRENCY = 8
METHODS = (
    "eth_sendRawTransaction",
    "eth_chainId",
    "eth_accounts",
    "mevaas_getTransactionStatus",
    "eth_getTransactionCount",
    "eth_blockNumber",
    "eth_call",
    "eth_estimateGas",
    "eth_getBalance",
    "eth_getLogs",
    "eth_getBlockByNumber",
    "eth_feeHistory",
    "eth_getNoSuchThing",
    "eth_sendTransaction",
    "eth_sign",
    "anvil_setBalance",
    "evm_mine",
    "debug_traceTransaction",
    "",
    "ünïcödé\u202e",
    "a\x00b",
)
ADDRESS = Account.create().address


def hexes(rng: random.Random) -> Any:
    return rng.choice(
        (
            "0x",
            "0xzz",
            "0x0",
            "0x" + "ab" * 32,
            "0x" + "AB" * 32,
            "0x" + "0g" * 32,
            "0x" + "00 " * 21,
            "0x02" + "ff" * rng.randint(1, 300),
            "0x" + "c0" * 3,
            "0x" + "ab" * (128 * 1024 + 1),  # just over the raw transaction limit
            "0x" + "f8" * rng.randint(1, 64),
            "ab" * 32,
            ADDRESS,
            ADDRESS.lower()[:-1],
        )
    )


def scalar(rng: random.Random) -> Any:
    return rng.choice(
        (
            hexes(rng),
            "latest",
            "pending",
            "earliest",
            "0x" + "f" * 80,
            "a\x00b",
            "ünïcödé-\u202e\U0001f600",
            "x" * rng.choice((0, 1, 1000, 200_000)),
            0,
            -1,
            2**64,
            -(2**255),
            10**400 // 10**300,  # a 100-digit integer
            1e308,
            1.5,
            True,
            None,
        )
    )


def nested(rng: random.Random, depth: int) -> Any:
    """Arrays and objects ``depth`` deep: around the parser's limit of 64."""
    value: Any = scalar(rng)
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.6 or depth >= 3:
        return scalar(rng)
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.9:
        keys = ("to", "from", "data", "input", "value", "gas", "fromBlock", "toBlock", "address", "", "\x00")
        return {rng.choice(keys): value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return nested(rng, rng.choice((30, 62, 63, 64, 70)))


def request(rng: random.Random) -> Any:
    """One request object, usually nearly right, each part wrong now and then."""
    if rng.random() < 0.05:
        return value(rng)  # not an object at all
    item: dict[str, Any] = {}
    if rng.random() < 0.9:
        item["jsonrpc"] = "2.0" if rng.random() < 0.85 else rng.choice(("1.0", 2.0, None, "", ["2.0"]))
    if rng.random() < 0.9:
        item["id"] = rng.choice(
            (
                rng.randint(0, 2**31),
                -5,
                "abc",
                "ünï\u202e",
                "",
                None,
                True,
                1.5,
                {"x": 1},
                [1],
                "x" * 300,
                2**70,
            )
        )
    if rng.random() < 0.95:
        item["method"] = rng.choice(METHODS) if rng.random() < 0.9 else rng.choice((1, None, [], {}))
    if rng.random() < 0.9:
        if rng.random() < 0.85:
            item["params"] = [value(rng) for _ in range(rng.choice((0, 1, 1, 2, 3, 5)))]
        else:
            item["params"] = rng.choice(({"a": 1}, "x", 7, None, True))
    if rng.random() < 0.05:
        item["extra"] = value(rng)
    return item


def body(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.75:
        return request(rng)
    if roll < 0.97:
        return [request(rng) for _ in range(rng.randint(1, 12))]
    return [request(rng) for _ in range(rng.choice((100, 101, 500)))]  # at and over the batch limit


def valid_id(rid: Any) -> bool:
    return rid is None or (type(rid) is int) or (isinstance(rid, str) and len(rid) <= 256)


def problems(sent: Any, status: int, text: str) -> list[str]:
    """What is wrong with one answer (nothing, for a good one)."""
    if status >= 500 and status != 503:
        return [f"HTTP {status}"]
    if 200 < status < 400 or status > 503:
        return [f"HTTP {status}"]
    lowered = text.lower()
    if any(word in lowered for word in FORBIDDEN_TEXT):
        return [f"shows internal text: {text[:300]!r}"]
    try:
        answer = json.loads(text)
    except ValueError:
        return [f"HTTP {status} answer is not JSON: {text[:200]!r}"]
    if status != 200 and len(text) > 64 * 1024:
        return [f"HTTP {status} error of {len(text)} bytes (echoes the input?)"]
    replies = answer if isinstance(answer, list) else [answer]
    if isinstance(answer, list) and not answer:
        return ["an empty batch answer"]
    found: list[str] = []
    for reply in replies:
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0" or "id" not in reply:
            found.append(f"not a JSON-RPC response: {str(reply)[:200]}")
        elif ("result" in reply) == ("error" in reply):
            found.append(f"needs exactly one of result and error: {str(reply)[:200]}")
        elif "error" in reply:
            error = reply["error"]
            if not isinstance(error, dict) or type(error.get("code")) is not int:
                found.append(f"malformed error object: {str(error)[:200]}")
            elif not isinstance(error.get("message"), str):
                found.append(f"error without a message: {str(error)[:200]}")
            elif error["code"] == -32603:
                found.append(f"internal error: {str(reply)[:200]}")
            elif len(json.dumps(error)) > 16 * 1024:
                found.append(f"an error of {len(json.dumps(error))} bytes (echoes the input?)")
    single = isinstance(sent, dict) and isinstance(answer, dict) and valid_id(sent.get("id"))
    if not found and single and answer["id"] not in (sent.get("id"), None):
        found.append(f"id {sent.get('id')!r} answered as {answer['id']!r}")
    if not found and isinstance(sent, list) and 0 < len(sent) <= 100 and isinstance(answer, list):
        expected = [
            item.get("id") if isinstance(item, dict) and valid_id(item.get("id")) else None for item in sent
        ]
        if [reply["id"] for reply in answer] != expected:
            found.append(f"batch ids {[r['id'] for r in answer][:10]} for {expected[:10]}")
    return found


async def test_fuzzed_json_rpc_always_gets_a_json_rpc_answer(
    execution_service: Any, tenancy_service: Any, admin_client: MevaasClient, devnet: Devnet
) -> None:
    # A plan high enough that the tenant's rate limit refuses none of the fuzzed calls.
    plan = common_pb2.Plan(
        name="fuzz",
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        max_strategies=1,
        max_concurrent_executions=1,
    )
    key = (await create_tenant(admin_client, plan=plan)).owner_key
    rng = random.Random(int(os.environ.get("MEVAAS_FUZZ_SEED", "12")))
    codes: Counter[int] = Counter()
    failures: list[str] = []
    limit = asyncio.Semaphore(CONCURRENCY)
    async with (
        protect_rpc(execution_service, f"127.0.0.1:{tenancy_service.grpc_port}") as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        base, chain = url.rsplit("/", 1)

        def target() -> tuple[str, dict[str, str]]:
            roll = rng.random()
            if roll < 0.8:
                return f"{url}/{key}", {}
            if roll < 0.88:
                return url, {"X-API-Key": key}
            if roll < 0.92:
                return f"{url}/{key}?mode=" + rng.choice(("fair", "private", "nope", "\x00")), {}
            if roll < 0.95:
                return f"{base}/" + rng.choice(("0", "-1", "99999999999999999999", "x", chain + "0")), {}
            # A missing or bad key (each one is checked at tenancy: kept few).
            return url, rng.choice(({}, {"X-API-Key": "mvs_bad.key"}, {"Authorization": "Bearer x"}))

        async def send(sent: Any, data: bytes, where: str, headers: dict[str, str]) -> None:
            async with limit:
                try:
                    async with http.post(
                        where, data=data, headers={"Content-Type": "application/json", **headers}
                    ) as reply:
                        status, text = reply.status, await reply.text()
                except TimeoutError:
                    failures.append(f"{data[:80]!r}: no answer within 30 s")
                    return
            codes[status] += 1
            failures.extend(f"{data[:80]!r}: {p}" for p in problems(sent, status, text))

        cases: list[tuple[Any, bytes]] = [(None, raw) for raw in FIXED_BODIES]
        for _ in range(COUNT):
            sent = body(rng)
            cases.append((sent, json.dumps(sent).encode()))
        await asyncio.gather(*(send(sent, data, *target()) for sent, data in cases))
        # Still serving: a valid call is answered.
        async with http.post(
            f"{url}/{key}", json={"jsonrpc": "2.0", "id": "after", "method": "eth_chainId", "params": []}
        ) as reply:
            assert reply.status == 200
            assert await reply.json() == {"jsonrpc": "2.0", "id": "after", "result": hex(int(chain))}
    print(f"fuzzed Protect RPC requests: {dict(sorted(codes.items()))} total {codes.total()}")
    assert failures == [], f"{len(failures)} bad answers ({dict(codes)}):\n" + "\n".join(failures[:40])
