"""ListProtectedTransactions' query (protection/store.py LIST_PROTECTED) reads a page as a range of
the (tenant_id, received_at, protected_transaction_id) index of migration V015: on a table of
many tenants' rows, the first page and a later one (keyset after a row) are an index scan in the
index's order with no sort, whether PostgreSQL plans it for the values given or generically (as
it does for a statement prepared and run many times); and paging through it returns every row of
the tenant once, in the list's order (rows received in the same second ordered by id)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from mevaas_core.db import create_pool, platform_transaction, provision_service_database, tenant_transaction
from mevaas_core.migrations import apply_migrations
from mevaas_execution.protection.store import LIST_PROTECTED, list_protected
from tests.fixtures.platform import service_passwords

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

INDEX = "protected_by_tenant_received"
TENANTS = 40
ROWS_PER_TENANT = 1_500
BIG_TENANT = "tenant-0"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(postgres_server: str, postgres_database: str) -> AsyncIterator[asyncpg.Pool]:
    """Execution's schema on a database of this module's own, with 60,000 protected transactions
    of 40 tenants (their received times interleaved; three of a tenant's in each second), analysed."""
    from mevaas_execution.server import SERVICE

    # Roles belong to the server, not the database: the session's execution passwords, unchanged.
    dsns = await provision_service_database(
        postgres_database, "execution", *service_passwords(postgres_server, "execution")
    )
    assert SERVICE.migrations is not None
    await apply_migrations(dsns.owner_dsn, "execution", SERVICE.migrations)
    pool = await create_pool(dsns.app_dsn, platform_dsn=dsns.platform_dsn, max_size=2)
    async with platform_transaction(pool) as conn:
        await conn.execute(
            "INSERT INTO execution.protected_transactions (protected_transaction_id, tenant_id, chain_id, "
            "tx_hash, sender, nonce, raw_tx, mode, status, max_block_number, received_at) "
            "SELECT 'ptx-' || n, 'tenant-' || (n % $1), 31337, '0x' || lpad(to_hex(n), 64, '0'), "
            "'0x' || lpad(to_hex(n % 97), 40, '0'), n, '\\x02'::bytea, 1, "
            "(ARRAY['received', 'submitted', 'included', 'failed'])[1 + n % 4], 100, "
            "timestamptz '2026-01-01' + (n / 120) * interval '1 second' "
            "FROM generate_series(1, $2) AS n",
            TENANTS,
            TENANTS * ROWS_PER_TENANT,
        )
    owner = await asyncpg.connect(dsns.owner_dsn)
    try:
        await owner.execute("ANALYZE execution.protected_transactions")
    finally:
        await owner.close()
    yield pool
    await pool.close()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


async def explain(conn: asyncpg.Connection, args: tuple[Any, ...], mode: str) -> list[dict[str, Any]]:
    await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
    text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {LIST_PROTECTED}", *args)
    return nodes(json.loads(text)[0]["Plan"])


def page_args(before: tuple[Any, str] | None) -> tuple[Any, ...]:
    """LIST_PROTECTED's parameters as list_protected passes them, without filters."""
    return (
        BIG_TENANT,
        None,
        "",
        0,
        None,
        None,
        before[0] if before else None,
        before[1] if before else "",
        51,
    )


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_pages_of_the_list_are_read_from_the_index_in_order(pool: asyncpg.Pool, mode: str) -> None:
    async with tenant_transaction(pool, BIG_TENANT, readonly=True) as conn:
        first = await list_protected(
            conn, BIG_TENANT, status=None, sender="", chain_id=0, start=None, end=None, before=None, limit=51
        )
        last = first[-1]
        later = (last["received_at"], last["protected_transaction_id"])
        for args in (page_args(None), page_args(later)):
            plan = await explain(conn, args, mode)
            scans = [n for n in plan if n.get("Index Name") == INDEX]
            assert scans and scans[0]["Node Type"] in ("Index Scan", "Index Only Scan"), plan
            assert not [n for n in plan if n["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan")], plan


async def test_paging_through_the_index_returns_every_row_once_in_order(pool: asyncpg.Pool) -> None:
    async def pages() -> list[str]:
        seen: list[str] = []
        before = None
        async with tenant_transaction(pool, BIG_TENANT, readonly=True) as conn:
            while True:
                rows = await list_protected(
                    conn,
                    BIG_TENANT,
                    status=None,
                    sender="",
                    chain_id=0,
                    start=None,
                    end=None,
                    before=before,
                    limit=400,
                )
                seen.extend(r["protected_transaction_id"] for r in rows)
                if len(rows) < 400:
                    return seen
                before = (rows[-1]["received_at"], rows[-1]["protected_transaction_id"])

    with_index = await pages()
    async with tenant_transaction(pool, BIG_TENANT, readonly=True) as conn:
        expected = [
            r["protected_transaction_id"]
            for r in await conn.fetch(
                "SELECT protected_transaction_id FROM execution.protected_transactions WHERE tenant_id = $1 "
                "ORDER BY received_at DESC, protected_transaction_id DESC",
                BIG_TENANT,
            )
        ]
    assert len(with_index) == ROWS_PER_TENANT and with_index == expected
