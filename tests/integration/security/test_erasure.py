"""Erasure everywhere (issue 10, item 8): after DeleteTenant every service erases or pseudonymises
the tenant's data in its own schema; a query of each schema as its platform role finds only what
the service's retention plan keeps, nothing personal or secret in it, and each service's audit
record (in ListAuditRecords and the compliance report) says what was kept and why."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
from google.protobuf import field_mask_pb2

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas.risk.v1 import risk_pb2, risk_pb2_grpc
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer
from mevaas_core.erasure import ACTION
from mevaas_operator.tenant_db import PIN_SCHEMA
from mevaas_sdk import MevaasClient
from tests.fixtures.fleet import Fleet
from tests.integration.security.test_revocation import exchange
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


async def tenant_tables(conn: asyncpg.Connection) -> dict[str, set[str]]:
    """Schema -> every table with a tenant_id column, from the catalog (not a hand list): a new
    tenant table that no service's erasure plan names fails the test."""
    # pg_catalog, not information_schema: every role sees all of it, whatever its grants.
    rows = await conn.fetch(
        "SELECT n.nspname, c.relname FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE a.attname = 'tenant_id' AND NOT a.attisdropped AND c.relkind IN ('r', 'p')"
        " AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    )
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row["nspname"], set()).add(row["relname"])
    return out


async def rows_of(conn: asyncpg.Connection, schema: str, tenant_id: str) -> dict[str, int]:
    counts = {}
    for table in sorted((await tenant_tables(conn)).get(schema, set())):
        counts[table] = await conn.fetchval(
            f"SELECT count(*) FROM {schema}.{table} WHERE tenant_id::text = $1", tenant_id
        )
    return counts


async def test_delete_tenant_erases_everywhere_but_what_retention_keeps(
    fleet: Fleet, admin_client: MevaasClient, jwt_signing_key: SigningKey
) -> None:
    tenant = await create_tenant(admin_client)
    tenant_id = tenant.tenant.tenant_id
    owner = await exchange(fleet, tenant.owner_key)
    md = [("authorization", f"Bearer {owner}")]
    # Data in every service: a wallet (execution), limits (risk), a user and a key (tenancy).
    async with fleet.channel("execution") as channel:
        await execution_pb2_grpc.ExecutionServiceStub(channel).CreateWallet(
            execution_pb2.CreateWalletRequest(idempotency_key=str(uuid.uuid4()), label="treasury"),
            metadata=md,
        )
    async with fleet.channel("risk") as channel:
        await risk_pb2_grpc.RiskServiceStub(channel).UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(max_slippage_bps=25),
                update_mask=field_mask_pb2.FieldMask(paths=["max_slippage_bps"]),
            ),
            metadata=md,
        )
    await admin_client.tenants.CreateUser(
        tenancy_pb2.CreateUserRequest(
            idempotency_key=str(uuid.uuid4()),
            tenant_id=tenant_id,
            email="jane.doe@example.com",
            display_name="Jane Doe",
            roles=[common_pb2.ROLE_TRADER],
        )
    )
    before: dict[str, dict[str, int]] = {}
    for service, runtime in fleet.runtimes.items():
        conn = await asyncpg.connect(runtime.settings.platform_database_url)
        try:
            before[service] = await rows_of(conn, service, tenant_id)
        finally:
            await conn.close()
    assert before["execution"]["wallets"] == 1 and before["risk"]["limits"] == 1
    # Every schema holding tenant rows belongs to a service with an erasure plan, and each plan
    # names every tenant table of its schema (treasury, transfers, rebalances, protections, ...).
    conn = await asyncpg.connect(fleet.runtimes["tenancy"].settings.platform_database_url)
    try:
        catalog = await tenant_tables(conn)
    finally:
        await conn.close()
    # The operator's login pins (role -> tenant) go with the Tenant resource, by the operator's
    # TenantDatabase.drop (tests/integration/operator/test_tenant_db_logins.py), not by a service.
    catalog.pop(PIN_SCHEMA, None)
    assert set(catalog) <= set(fleet.runtimes), set(catalog) - set(fleet.runtimes)
    for service, runtime in fleet.runtimes.items():
        erasure = type(runtime).erasure
        assert erasure is not None and catalog[service], service
        assert catalog[service] == set(before[service]), service  # the platform role sees them all
        assert catalog[service] - erasure.tables() == set(), (service, catalog[service] - erasure.tables())

    await admin_client.tenants.DeleteTenant(
        tenancy_pb2.DeleteTenantRequest(
            tenant_id=tenant_id, confirm_slug=tenant.tenant.slug, reason="request"
        )
    )

    # Each service says what it erased and kept, in the one audit trail.
    deadline = time.monotonic() + 20
    while True:
        records = {
            r.service: r
            for r in await trail_as_admin(fleet, admin_client, tenant_id)
            if r.action == ACTION and r.actor.kind == events_pb2.ACTOR_KIND_SERVICE
        }
        if set(records) == set(fleet.runtimes) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert set(records) == set(fleet.runtimes)

    for service, runtime in fleet.runtimes.items():
        plan: Any = type(runtime).erasure
        assert plan is not None, service
        conn = await asyncpg.connect(runtime.settings.platform_database_url)
        try:
            after = await rows_of(conn, service, tenant_id)
            # The plan covers every tenant table of the schema.
            assert set(after) <= plan.tables(), (service, set(after) - plan.tables())
            retained = {s.table for s in plan.scrub} | set(plan.keep)
            left = {table for table, n in after.items() if n and table not in retained}
            # The outbox may still hold the notices of the deletion itself (its audit records, the
            # tenant.deleted tombstone and the revocation), nothing else.
            assert left <= {"outbox"}, (service, left)
            subjects = {
                r["subject"]
                for r in await conn.fetch(
                    f"SELECT subject FROM {service}.outbox WHERE tenant_id = $1", tenant_id
                )
            }
            assert subjects <= {
                f"audit.{tenant_id}.record",
                f"tenant.{tenant_id}.deleted",
                f"auth.{tenant_id}.revoked",
            }
            details = records[service].details
            for table in plan.keep:
                assert details[f"kept.{table}"].split(":", 1)[1].strip(), (service, table)  # a reason
            if service == "tenancy":
                users = await conn.fetch(
                    "SELECT email, display_name FROM tenancy.users WHERE tenant_id = $1", tenant_id
                )
                assert users and all(
                    u["email"].startswith("erased-") and not u["display_name"] for u in users
                )
                keys = await conn.fetch(
                    "SELECT secret_hash, name, revoked_at FROM tenancy.api_keys WHERE tenant_id = $1",
                    tenant_id,
                )
                assert keys and all(not k["secret_hash"] and not k["name"] and k["revoked_at"] for k in keys)
                assert (
                    await conn.fetchval(
                        "SELECT contact_email FROM tenancy.tenants WHERE tenant_id = $1", tenant_id
                    )
                    == ""
                )
            if service == "execution":
                assert after["wallets"] == 0 and details["erased.wallets"] == "1"
            if service == "risk":
                assert after["limits"] == 0
        finally:
            await conn.close()

    # The compliance report (analytics) carries the same records: what was kept and why.
    report = await compliance_trail(fleet, jwt_signing_key, tenant_id)
    kept = {r.service for r in report if r.action == ACTION}
    assert kept == set(fleet.runtimes)


async def trail_as_admin(fleet: Fleet, admin: MevaasClient, tenant_id: str) -> list[Any]:
    records: list[Any] = []
    page_token = ""
    while True:
        reply = await admin.tenants.ListAuditRecords(
            tenancy_pb2.ListAuditRecordsRequest(
                tenant_id=tenant_id, page=common_pb2.PageRequest(page_size=100, page_token=page_token)
            )
        )
        records.extend(reply.records)
        page_token = reply.page.next_page_token
        if not page_token:
            return records


async def compliance_trail(fleet: Fleet, key: SigningKey, tenant_id: str) -> list[Any]:
    # The tenant's own compliance officer (a token minted here: tenancy mints none for a deleted
    # tenant, and every token from before the deletion is refused).
    issuer = TokenIssuer(key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=60)
    principal = Principal(
        subject="auditor",
        tenant_id=tenant_id,
        roles=frozenset({Role.COMPLIANCE}),
        rate_per_second=100,
        burst=100,
    )
    token, _ = issuer.issue(principal)
    deadline = time.monotonic() + 20
    async with fleet.channel("analytics") as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        while True:
            reply = await stub.GetComplianceReport(
                analytics_pb2.GetComplianceReportRequest(
                    timeframe=common_pb2.Timeframe(preset=common_pb2.TIMEFRAME_PRESET_LAST_24_HOURS),
                    audit_page=common_pb2.PageRequest(page_size=1000),
                ),
                metadata=[("authorization", f"Bearer {token}")],
            )
            records = list(reply.report.audit_trail)
            if {r.service for r in records if r.action == ACTION} >= set(
                fleet.runtimes
            ) or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.2)
