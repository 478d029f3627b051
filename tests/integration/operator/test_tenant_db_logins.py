"""The operator's per-tenant database logins (mevaas_operator.tenant_db) on a real PostgreSQL with
the execution and strategy schemas migrated: a dedicated tenant's login sees and writes only its
tenant's rows, whatever it sets (`app.tenant_id`, `app.scope`) or whichever role it may SET; it
cannot become the platform's roles nor read the pin table; a table a later migration adds stays
closed to it until pinned; the login works through the services' own `tenant_transaction`;
provisioning is idempotent and removal drops the login; and the operator, on kmock, writes a
dedicated tenant's logins into the Secrets its workers mount and removes them when it is shared."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from mevaas_core.db import create_pool, provision_service_database, tenant_transaction
from mevaas_core.migrations import apply_migrations
from mevaas_operator.config import OperatorConfig
from mevaas_operator.kube import KINDS, SECRET_KIND, TENANT_KIND, KubeClient, NotFoundError
from mevaas_operator.tenant_db import TenantDatabase, login_role
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path
from tests.fixtures.platform import service_passwords
from tests.integration.operator.support import eventually, get, running_operator, tenant_body

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def owners(postgres_server: str) -> AsyncIterator[dict[str, str]]:
    """Both worker services' schemas, provisioned and migrated (owner DSN per service)."""
    from mevaas_execution.server import SERVICE as EXECUTION
    from mevaas_strategy.server import SERVICE as STRATEGY

    dsns = {}
    for spec in (EXECUTION, STRATEGY):
        provisioned = await provision_service_database(
            postgres_server, spec.name, *service_passwords(postgres_server, spec.name)
        )
        assert spec.migrations is not None
        await apply_migrations(provisioned.owner_dsn, spec.name, spec.migrations)
        dsns[spec.name] = provisioned.owner_dsn
    yield dsns


@pytest.fixture
def tenant_db(postgres_server: str) -> TenantDatabase:
    return TenantDatabase(admin_dsn=postgres_server, password_seed=b"test-seed-" + uuid.uuid4().bytes)


async def seed_wallets(postgres_server: str, tenants: list[str]) -> None:
    conn = await asyncpg.connect(postgres_server)
    try:
        for tenant in tenants:
            await conn.execute(
                "INSERT INTO execution.wallets (wallet_id, tenant_id, address, imported, kek_id, wrapped_dek, "
                "ciphertext) VALUES ($1, $2, $3, false, 'tdk-x', '\\x00', '\\x00')",
                str(uuid.uuid4()),
                tenant,
                "0x" + uuid.uuid4().hex[:20],
            )
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def seeded(owners: dict[str, str], postgres_server: str) -> AsyncIterator[tuple[str, str]]:
    """Two tenants with a wallet each, removed afterwards: the rows are under no real data key, and
    the session's execution database is shared (a KEK rotation test refuses to run while a wallet
    is under a key its ring lacks)."""
    tenants = (f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}")
    await seed_wallets(postgres_server, list(tenants))
    yield tenants
    conn = await asyncpg.connect(postgres_server)
    try:
        await conn.execute("DELETE FROM execution.wallets WHERE tenant_id = ANY($1)", list(tenants))
    finally:
        await conn.close()


async def test_a_tenant_login_sees_only_its_tenant(
    seeded: tuple[str, str], tenant_db: TenantDatabase, postgres_server: str
) -> None:
    tenant_a, tenant_b = seeded
    dsns = await tenant_db.ensure(tenant_a)
    assert set(dsns) == {"strategy", "execution"}
    assert login_role("execution", tenant_a) in dsns["execution"]
    for service in ("execution_app", "execution_platform", "execution_owner", "postgres"):
        assert f"//{service}:" not in dsns["execution"]

    conn = await asyncpg.connect(dsns["execution"])
    try:

        async def tenants_seen(setting: str, value: str) -> set[str]:
            async with conn.transaction():
                await conn.execute("SELECT set_config($1, $2, true)", setting, value)
                rows = await conn.fetch("SELECT tenant_id FROM execution.wallets")
            return {r["tenant_id"] for r in rows}

        assert await tenants_seen("app.tenant_id", tenant_a) == {tenant_a}
        # set_config its way to another tenant, or to the old platform scope: nothing.
        assert await tenants_seen("app.tenant_id", tenant_b) == set()
        assert await tenants_seen("app.scope", "platform") == set()
        assert await tenants_seen("app.tenant_id", "") == set()
        # Writing another tenant's row is refused by the pin's WITH CHECK.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_b)
                await conn.execute(
                    "INSERT INTO execution.wallets (wallet_id, tenant_id, address, imported, kek_id, "
                    "wrapped_dek, ciphertext) VALUES ($1, $2, '0xfeed', false, 'tdk-x', '\\x00', '\\x00')",
                    str(uuid.uuid4()),
                    tenant_b,
                )
        # Nor can it become the platform's roles, or read who is pinned to what.
        for role in ("execution_app", "execution_platform", "execution_owner"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"SET ROLE {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM mevaas_tenant_pin.logins")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE mevaas_tenant_pin.logins SET tenant_id = $1", tenant_b)
        # The group role it may SET is pinned as well (the pin follows the session's login).
        await conn.execute("SET ROLE execution_tenant")
        assert await tenants_seen("app.tenant_id", tenant_b) == set()
        assert await tenants_seen("app.tenant_id", tenant_a) == {tenant_a}
        await conn.execute("RESET ROLE")
    finally:
        await conn.close()

    # The worker's own code path: a pool on the login, mevaas_core.db.tenant_transaction.
    pool = await create_pool(dsns["execution"], max_size=1)
    try:
        async with tenant_transaction(pool, tenant_a, readonly=True) as tx:
            assert {r["tenant_id"] for r in await tx.fetch("SELECT tenant_id FROM execution.wallets")} == {
                tenant_a
            }
        async with tenant_transaction(pool, tenant_b, readonly=True) as tx:
            assert await tx.fetch("SELECT tenant_id FROM execution.wallets") == []
    finally:
        await pool.close()
    # The strategy login reaches its schema and no other.
    conn = await asyncpg.connect(dsns["strategy"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM execution.wallets")
    finally:
        await conn.close()


async def test_a_table_added_later_is_closed_until_pinned(
    owners: dict[str, str], tenant_db: TenantDatabase, postgres_server: str
) -> None:
    tenant = f"t-{uuid.uuid4()}"
    dsns = await tenant_db.ensure(tenant)
    table = f"later_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(owners["execution"])
    try:
        # A later migration's tenant table, as the convention writes it (default privileges give
        # execution_app access at once).
        await owner.execute(
            f"CREATE TABLE execution.{table} (tenant_id text NOT NULL, v int);"
            f"ALTER TABLE execution.{table} ENABLE ROW LEVEL SECURITY;"
            f"ALTER TABLE execution.{table} FORCE ROW LEVEL SECURITY;"
            f"CREATE POLICY tenant_isolation ON execution.{table} "
            f"USING (tenant_id = current_setting('app.tenant_id', true));"
            f"CREATE POLICY platform_access ON execution.{table} TO execution_platform USING (true);"
        )
        conn = await asyncpg.connect(dsns["execution"])
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM execution.{table}")
        finally:
            await conn.close()
        # The next reconcile pins it, then grants it.
        assert await tenant_db.ensure(tenant) == dsns
        admin = await asyncpg.connect(postgres_server)  # the owner itself is under FORCE'd RLS
        try:
            await admin.execute(f"INSERT INTO execution.{table} VALUES ($1, 1), ('someone-else', 2)", tenant)
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsns["execution"])
        try:
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', 'someone-else', true)")
                assert await conn.fetch(f"SELECT * FROM execution.{table}") == []
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
                assert [r["v"] for r in await conn.fetch(f"SELECT v FROM execution.{table}")] == [1]
        finally:
            await conn.close()
    finally:
        await owner.execute(f"DROP TABLE execution.{table}")
        await owner.close()


async def test_provisioning_is_idempotent_and_removal_drops_the_login(
    owners: dict[str, str], tenant_db: TenantDatabase
) -> None:
    tenant = f"t-{uuid.uuid4()}"
    first = await tenant_db.ensure(tenant)
    assert await tenant_db.ensure(tenant) == first  # same derived password: the Secret stays
    conn = await asyncpg.connect(first["execution"])
    await conn.close()
    assert sorted(await tenant_db.drop(tenant)) == sorted(
        login_role(s, tenant) for s in ("strategy", "execution")
    )
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await asyncpg.connect(first["execution"])
    assert await tenant_db.drop(tenant) == []


async def test_the_operator_writes_the_logins_into_the_tenant_namespace(
    owners: dict[str, str], tenant_db: TenantDatabase, k8s_emulator: K8sEmulator
) -> None:
    """A dedicated Tenant: the operator creates its logins and writes them into the Secrets its
    workers mount (the tenant's login only, never a platform one); moved to a shared tier, the
    Secrets go and the logins are dropped."""
    config = OperatorConfig(
        helm=str(helm_path()),
        tenant_chart=CHARTS / "tenant",
        kube_url=k8s_emulator.url,
        retry_delay=0.5,
        tenant_db=tenant_db,
    )
    kube = KubeClient.connect(k8s_emulator.url)
    tenant_id = f"initech-{uuid.uuid4()}"
    spec = {"tenantId": tenant_id, "tier": "enterprise", "isolation": "dedicated"}
    try:
        async with running_operator(config, k8s_emulator):
            await kube.create(TENANT_KIND, tenant_body("initech", spec))

            async def logins() -> dict[str, str] | None:
                found = {}
                for service in ("strategy", "execution"):
                    secret = await get_secret(kube, f"mevaas-tenant-db-{service}")
                    if secret is None:
                        return None
                    found[service] = base64.b64decode(secret["data"]["url"]).decode()
                return found

            dsns = await eventually(logins, "the tenant's database Secrets written")
            assert dsns == {s: tenant_db.dsn(s, tenant_id) for s in ("strategy", "execution")}
            secret = await get_secret(kube, "mevaas-tenant-db-execution")
            assert secret is not None
            assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mevaas-operator"
            for platform_role in ("_app", "_platform", "_owner"):
                assert f"execution{platform_role}" not in dsns["execution"]
            conn = await asyncpg.connect(dsns["execution"])
            try:
                assert await conn.fetchval("SELECT session_user") == login_role("execution", tenant_id)
            finally:
                await conn.close()
            # The rendered objects hold no database URL at all (the Secrets are not rendered).
            for kind in ("ConfigMap", "Deployment"):
                for obj in await kube.list(KINDS[kind], "tenant-initech"):
                    assert "postgresql://" not in json.dumps(obj)

            await kube.patch(
                TENANT_KIND,
                "initech",
                {"metadata": {"generation": 2}, "spec": {**spec, "isolation": "shared"}},
            )

            async def removed() -> bool:
                left = [await get_secret(kube, f"mevaas-tenant-db-{s}") for s in ("strategy", "execution")]
                return left == [None, None]

            await eventually(removed, "the Secrets removed once the tenant is shared")
            with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
                await asyncpg.connect(dsns["execution"])
            await kube.delete(TENANT_KIND, "initech")
            await eventually(lambda: gone(kube), "initech released")
    finally:
        kube.close()


async def get_secret(kube: KubeClient, name: str) -> dict[str, Any] | None:
    try:
        return await kube.get(SECRET_KIND, name, "tenant-initech")
    except NotFoundError:
        return None


async def gone(kube: KubeClient) -> bool:
    return await get(kube, "Tenant", "initech") is None
