"""The Protect RPC's failures as a client sees them (issue 10, item 5), with real servers on
127.0.0.1: while tenancy (which checks API keys) is stopped or unreachable, a key not yet checked
gets HTTP 503 with Retry-After and a JSON-RPC error per request, each with its own id (a key
already checked keeps working); an unreachable chain node is 503 too; when tenancy rate-limits
the key checks, or the tenant goes over its plan, the answer is HTTP 429 with Retry-After; a
revoked key is 401; an unknown chain, path or HTTP method and a body over the limit are a 4xx
with a JSON-RPC error body, never aiohttp's plain-text page."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_chain.registry import ChainRegistry
from mevaas_execution.chains import ChainGateway
from mevaas_local.devnet import Devnet
from mevaas_local.embedded import free_port
from mevaas_sdk import MevaasClient
from tests.integration.protection.helpers import protect_rpc
from tests.integration.tenancy.helpers import create_tenant

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def own_tenancy(tenancy_service: Any) -> AsyncIterator[Any]:
    """A tenancy of this test's own on the session's database and bus (the same keys and
    tenants), so stopping it or using up its rate limit touches no other test."""
    from mevaas_tenancy.server import TenancyRuntime

    runtime = TenancyRuntime(tenancy_service.settings.model_copy(update={"grpc_port": 0, "metrics_port": 0}))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def post(
    url: str, body: Any, *, key: str = "", raw: bytes | None = None, client: str = "127.0.0.1"
) -> tuple[int, Any, dict[str, str]]:
    """POST ``body`` (or ``raw``) from loopback address ``client``."""
    headers = {"X-API-Key": key} if key else {}
    async with (
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), connector=aiohttp.TCPConnector(local_addr=(client, 0))
        ) as http,
        http.post(url, json=body if raw is None else None, data=raw, headers=headers) as reply,
    ):
        assert reply.content_type == "application/json", await reply.text()
        return reply.status, await reply.json(), dict(reply.headers)


def call(rid: Any, method: str = "eth_chainId") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": []}


async def new_key(admin: MevaasClient, tenant_id: str) -> tuple[str, str]:
    created = await admin.tenants.CreateApiKey(
        tenancy_pb2.CreateApiKeyRequest(
            idempotency_key=str(uuid.uuid4()), tenant_id=tenant_id, name="rpc", roles=[common_pb2.ROLE_TRADER]
        )
    )
    return created.api_key.api_key_id, created.secret


def assert_unavailable(status: int, body: Any, headers: dict[str, str], rid: Any) -> None:
    assert status == 503, body
    assert int(headers["Retry-After"]) >= 1
    assert body["jsonrpc"] == "2.0" and body["id"] == rid
    assert body["error"]["code"] == -32002 and "tenancy" in body["error"]["message"], body
    assert "127.0.0.1" not in body["error"]["message"]


async def test_tenancy_stopped_is_503_with_retry_after_and_checked_keys_keep_working(
    own_tenancy: Any, execution_service: Any, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    _, unchecked = await new_key(admin_client, tenant.tenant.tenant_id)
    async with protect_rpc(execution_service, f"127.0.0.1:{own_tenancy.grpc_port}") as url:
        status, body, _ = await post(url, call(1), key=tenant.owner_key)
        assert status == 200 and body["result"].startswith("0x"), body
        await own_tenancy.stop()
        assert_unavailable(*await post(url, call("first"), key=unchecked), "first")
        # A batch: every request in it answered, each with its own id (an invalid id as null).
        status, body, headers = await post(url, [call(7), call("x"), call({"no": 1})], key=unchecked)
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert [b["id"] for b in body] == [7, "x", None]
        assert {b["error"]["code"] for b in body} == {-32002}
        # The key checked before the outage is still known: it keeps working.
        status, body, _ = await post(url, call(2), key=tenant.owner_key)
        assert status == 200 and body["id"] == 2 and "result" in body, body


async def test_tenancy_unreachable_is_503_not_a_hang_or_a_500(
    execution_service: Any, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    async with protect_rpc(execution_service, f"127.0.0.1:{free_port()}") as url:
        assert_unavailable(*await post(url, call(41), key=tenant.owner_key), 41)


async def test_rate_limited_key_checks_are_429_with_retry_after(
    own_tenancy: Any, execution_service: Any
) -> None:
    # Tenancy limits its public ExchangeApiKey per caller address (20/s, burst 40): 100 keys
    # never seen before, checked at once, go over it (with the Protect RPC's own budget of new
    # keys per client raised out of the way).
    async with protect_rpc(
        execution_service,
        f"127.0.0.1:{own_tenancy.grpc_port}",
        new_keys_per_second=1000,
        new_keys_burst=1000,
    ) as url:
        answers = await asyncio.gather(
            *(post(url, call(i), key=f"mvs_unknown.{uuid.uuid4().hex}") for i in range(100))
        )
    by_status: dict[int, int] = {}
    for i, (status, body, headers) in enumerate(answers):
        by_status[status] = by_status.get(status, 0) + 1
        assert body["jsonrpc"] == "2.0" and body["id"] == i, body
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert body["error"]["code"] == -32005 and "rate limit" in body["error"]["message"], body
        else:
            assert status == 401 and body["error"]["code"] == -32004, (status, body)
    assert by_status.get(429, 0) > 0 and by_status.get(401, 0) > 0, by_status


async def test_a_revoked_key_is_401_and_malformed_http_is_a_json_4xx(
    tenancy_service: Any, execution_service: Any, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    key_id, key = await new_key(admin_client, tenant.tenant.tenant_id)
    async with protect_rpc(execution_service, f"127.0.0.1:{tenancy_service.grpc_port}") as url:
        status, body, _ = await post(url, call("before"), key=key)
        assert status == 200 and body["id"] == "before", body
        await admin_client.tenants.RevokeApiKey(tenancy_pb2.RevokeApiKeyRequest(api_key_id=key_id))
        for _ in range(100):  # the revocation reaches execution over the bus
            status, body, _ = await post(url, call("after"), key=key)
            if status != 200:
                break
            await asyncio.sleep(0.05)
        assert status == 401 and body["id"] == "after" and body["error"]["code"] == -32004, body
        base, chain = url.rsplit("/", 1)
        status, body, _ = await post(f"{base}/999999", call(3), key=tenant.owner_key)
        assert status == 404 and body["id"] == 3 and body["error"]["code"] == -32600, body
        status, body, _ = await post(url + "/key/extra", call(4))
        assert status == 404 and body["id"] is None and body["error"]["code"] == -32600, body
        status, body, _ = await post(url, None, key=key, raw=b'{"x": "' + b"y" * (1 << 20) + b'"}')
        assert status == 413 and body["error"]["code"] == -32005, body
        async with aiohttp.ClientSession() as http, http.get(url) as reply:
            assert reply.status == 405 and (await reply.json())["error"]["code"] == -32600
        assert chain.isdigit()


async def test_a_tenant_over_its_plan_is_429_with_retry_after(
    execution_harness: Any, tenancy_service: Any, admin_client: MevaasClient
) -> None:
    # The service's own Protect RPC (as server.py wires it: the fleet's shared bucket per tenant).
    runtime = await execution_harness.start(
        http_port=0, tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}"
    )
    try:
        plan = common_pb2.Plan(
            name="metered-rpc",
            rate_limit_per_second=1,
            rate_limit_burst=3,
            max_strategies=1,
            max_concurrent_executions=1,
        )
        tenant = await create_tenant(admin_client, plan=plan)
        chain_id = runtime.gateway.chain_ids[0]
        url = f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{chain_id}"
        answers = await asyncio.gather(*(post(url, call(i), key=tenant.owner_key) for i in range(20)))
        statuses = [status for status, _, _ in answers]
        for i, (status, body, headers) in enumerate(answers):
            assert body["id"] == i, body
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
                assert body["error"]["code"] == -32005 and "rate limit" in body["error"]["message"]
            else:
                assert status == 200 and body["result"] == hex(chain_id), (status, body)
        assert statuses.count(429) > 0 and statuses.count(200) > 0, statuses
        # A batch of calls is as many calls: while the bucket is empty every one is refused.
        status, body, headers = await post(url, [call("a"), call("b")], key=tenant.owner_key)
        if status == 429:
            assert [b["id"] for b in body] == ["a", "b"] and int(headers["Retry-After"]) >= 1
            assert {b["error"]["code"] for b in body} == {-32005}
        else:  # tokens came back since the flood (a slow machine): each answered or refused
            assert status == 200 and [b["id"] for b in body] == ["a", "b"], body
            assert all("result" in b or b["error"]["code"] == -32005 for b in body), body
    finally:
        await execution_harness.stop(runtime)


async def test_an_unreachable_chain_node_is_503_without_its_address(
    execution_service: Any, tenancy_service: Any, admin_client: MevaasClient, devnet: Devnet
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    config = devnet.main.config.model_copy(update={"rpc_url": dead})
    gateway = ChainGateway(ChainRegistry(chains=[config]), timeout_s=1.0)
    tenant = await create_tenant(admin_client)
    try:
        async with protect_rpc(execution_service, f"127.0.0.1:{tenancy_service.grpc_port}", gateway) as url:
            status, body, headers = await post(url, call("read", "eth_blockNumber"), key=tenant.owner_key)
    finally:
        await gateway.close()
    assert status == 503 and int(headers["Retry-After"]) >= 1, (status, body)
    assert body["id"] == "read" and body["error"]["code"] == -32002, body
    assert "unreachable" in body["error"]["message"] and dead not in body["error"]["message"]


def key_checks() -> float:
    """ExchangeApiKey calls tenancy has answered in this process, whatever the answer."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "mevaas_grpc_server_handled"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels.get("service") == "tenancy"
        and sample.labels.get("method") == "ExchangeApiKey"
    )


async def test_one_clients_made_up_keys_do_not_lock_out_other_clients(
    own_tenancy: Any, execution_service: Any, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    async with protect_rpc(execution_service, f"127.0.0.1:{own_tenancy.grpc_port}") as url:
        # 60 made-up keys from one address: past its budget of new keys, the Protect RPC refuses
        # them itself (429), so tenancy's limit for this whole process is not used up.
        before = key_checks()
        answers = await asyncio.gather(
            *(post(url, call(i), key=f"mvs_made_up.{uuid.uuid4().hex}") for i in range(60))
        )
        statuses = [status for status, _, _ in answers]
        assert set(statuses) == {401, 429}, statuses
        assert key_checks() - before == statuses.count(401)  # a 429 never reached tenancy
        limited = next(body for status, body, _ in answers if status == 429)
        assert "new API keys" in limited["error"]["message"] and limited["error"]["code"] == -32005
        # Another client's new key still gets checked.
        status, body, _ = await post(url, call("other"), key=tenant.owner_key, client="127.0.0.2")
        assert status == 200 and body["id"] == "other" and "result" in body, body
        # A refused key sent again is answered from memory, not asked of tenancy again.
        bad = f"mvs_made_up.{uuid.uuid4().hex}"
        assert (await post(url, call(1), key=bad, client="127.0.0.3"))[0] == 401
        before = key_checks()
        for i in range(5):
            status, body, _ = await post(url, call(i), key=bad, client="127.0.0.3")
            assert status == 401 and "API key refused" in body["error"]["message"], body
        assert key_checks() == before


async def test_a_token_in_its_last_minute_still_serves_while_tenancy_is_down(
    tenancy_service: Any, execution_service: Any, admin_client: MevaasClient
) -> None:
    from mevaas_tenancy.server import TenancyRuntime

    # Tokens of 50 s: each is inside the last minute, when every call tries to refresh it.
    settings = tenancy_service.settings.model_copy(
        update={"grpc_port": 0, "metrics_port": 0, "token_ttl_seconds": 50}
    )
    tenancy = TenancyRuntime(settings)
    await tenancy.start()
    stopped = False
    try:
        tenant = await create_tenant(admin_client)
        async with protect_rpc(execution_service, f"127.0.0.1:{tenancy.grpc_port}") as url:
            assert (await post(url, call(1), key=tenant.owner_key))[0] == 200
            await tenancy.stop()
            stopped = True
            status, body, _ = await post(url, call(2), key=tenant.owner_key)
            assert status == 200 and body["result"].startswith("0x"), body
    finally:
        if not stopped:
            await tenancy.stop()
