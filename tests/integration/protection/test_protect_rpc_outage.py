"""The Protect RPC while its database is down (issue 10, item 5): a call that needs PostgreSQL is
HTTP 503 with Retry-After and the JSON-RPC error -32002 with the safe message (no host, DSN or
driver text), a call that does not still answers, a batch says which is which; once PostgreSQL is
back the same call is answered again. Execution here runs on a PostgreSQL of its own, so it can
be stopped, with the session's NATS, tenancy and devnet."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mevaas_core.db import provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_core.outages import SAFE_MESSAGE
from mevaas_local.embedded import EmbeddedPostgres, free_port
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import ExecutionHarness
from tests.integration.tenancy.helpers import create_tenant

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

UNKNOWN_HASH = "0x" + "ab" * 32


def status_call(rid: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "mevaas_getTransactionStatus", "params": [UNKNOWN_HASH]}


async def post(url: str, body: Any) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(url, json=body) as reply,
    ):
        return reply.status, await reply.json(), dict(reply.headers)


async def test_database_down_is_503_with_retry_after_then_served_again(
    execution_harness: ExecutionHarness, tenancy_service: Any, admin_client: MevaasClient
) -> None:
    from mevaas_execution.server import SERVICE

    # Not under pytest's tmp dir: other pytest runs reset its permissions (see test_outages).
    tmp = Path(tempfile.mkdtemp(prefix="mevaas-protect-outage-"))
    postgres = EmbeddedPostgres(tmp / "pg", port=free_port())
    await postgres.start()
    runtime = None
    try:
        dsns = await provision_service_database(
            postgres.dsn, "execution", "app-pw", "owner-pw", "platform-pw"
        )
        assert SERVICE.migrations is not None
        await apply_migrations(dsns.owner_dsn, "execution", SERVICE.migrations)
        runtime = await execution_harness.start(
            database_url=dsns.app_dsn,
            platform_database_url=dsns.platform_dsn,
            http_port=0,
            tenancy_address=f"127.0.0.1:{tenancy_service.grpc_port}",
        )
        tenant = await create_tenant(admin_client)
        chain_id = runtime.gateway.chain_ids[0]
        url = f"http://127.0.0.1:{runtime.protect_rpc_port}/rpc/{chain_id}/{tenant.owner_key}"
        status, body, _ = await post(url, status_call(1))
        assert status == 200 and body["error"]["code"] == -32001, body  # looked up: not found

        await postgres.stop()
        status, body, headers = await post(url, status_call("down"))
        assert status == 503 and int(headers["Retry-After"]) >= 1, (status, body)
        assert body == {
            "jsonrpc": "2.0",
            "id": "down",
            "error": {"code": -32002, "message": SAFE_MESSAGE, "data": {"retryAfterSeconds": 2}},
        }
        # eth_chainId needs no database: answered, and in a batch each call says what it met.
        chain_call = {"jsonrpc": "2.0", "id": "c", "method": "eth_chainId", "params": []}
        status, body, _ = await post(url, [status_call("s"), chain_call])
        assert status == 200, body
        assert body[0]["id"] == "s" and body[0]["error"]["code"] == -32002
        assert body[1] == {"jsonrpc": "2.0", "id": "c", "result": hex(chain_id)}

        await postgres.start()
        for _ in range(300):
            status, body, _ = await post(url, status_call("back"))
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200 and body["error"]["code"] == -32001, body
    finally:
        if runtime is not None:
            await execution_harness.stop(runtime)
        await postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)
