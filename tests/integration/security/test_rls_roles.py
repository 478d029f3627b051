"""RLS no application role can escape (issue 10, item 3): connected as each service's own
tenant-scoped role, `set_config('app.scope', 'platform')` (or any other setting it can change)
shows no other tenant's rows in any table of its schema, while the service's separate platform
role, used for its cross-tenant jobs, does see them."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas_core.auth import PLATFORM_TENANT_ID
from mevaas_sdk import MevaasClient
from tests.fixtures.fleet import Fleet
from tests.integration.security.test_revocation import exchange
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


async def tenant_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT tablename FROM pg_policies WHERE schemaname = $1 AND policyname = 'tenant_isolation' "
        "ORDER BY tablename",
        schema,
    )
    return [r["tablename"] for r in rows]


async def test_the_app_role_of_every_service_cannot_take_platform_scope(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    # Two tenants with rows in every schema (tenancy's own; the others' from tenant events and
    # audit records over the bus, and a wallet each in execution): a leak would show the other.
    mine = await create_tenant(admin_client)
    other = await create_tenant(admin_client)
    tenant_id = mine.tenant.tenant_id
    for tenant in (mine, other):
        token = await exchange(fleet, tenant.owner_key)
        async with fleet.channel("execution") as channel:
            await execution_pb2_grpc.ExecutionServiceStub(channel).CreateWallet(
                execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4())),
                metadata=[("authorization", f"Bearer {token}")],
            )
    for service, runtime in fleet.runtimes.items():
        platform = await asyncpg.connect(runtime.settings.platform_database_url)
        app = await asyncpg.connect(runtime.settings.database_url)
        try:
            tables = await tenant_tables(platform, service)
            assert tables, service
            deadline = time.monotonic() + 15
            while True:
                visible_to_platform = 0
                for table in tables:
                    visible_to_platform += await platform.fetchval(
                        f"SELECT count(*) FROM {service}.{table} WHERE tenant_id::text = $1",
                        other.tenant.tenant_id,
                    )
                if visible_to_platform or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            # The other tenant's rows exist in this schema (so the checks below could fail).
            assert visible_to_platform > 0, service
            for table in tables:
                foreign = f"SELECT count(*) FROM {service}.{table} WHERE tenant_id::text NOT IN ($1, $2)"
                async with app.transaction():
                    await app.execute("SELECT set_config('app.scope', 'platform', true)")
                    assert await app.fetchval(foreign, "", PLATFORM_TENANT_ID) == 0, (service, table)
                    await app.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
                    assert await app.fetchval(foreign, tenant_id, PLATFORM_TENANT_ID) == 0, (service, table)
                for statement in ("SET app.scope = 'platform'", "SET SESSION AUTHORIZATION DEFAULT"):
                    try:
                        await app.execute(statement)
                    except asyncpg.PostgresError:
                        continue
                    assert await app.fetchval(foreign, "", PLATFORM_TENANT_ID) == 0, (service, table)
                    await app.execute("RESET ALL")
            with pytest.raises(asyncpg.PostgresError):
                await app.execute(f"SET ROLE {service}_platform")
        finally:
            await app.close()
            await platform.close()
