"""SQL of the portfolio service: its risk summary's counts, the kill-switch state it honours and
the rebalance commands it records."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from mevaas_analytics.store.common import PLATFORM


async def kill_switch_engaged(conn: asyncpg.Connection, tenant: str) -> bool:
    """Latest tenant-wide change of the tenant or of the platform-wide switch."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (tenant_id) engaged FROM analytics.kill_switch_changes k
        WHERE tenant_id IN ($1, $2)
        ORDER BY tenant_id, occurred_at DESC""",
        tenant,
        PLATFORM,
    )
    return any(r["engaged"] for r in rows)


async def breaches_since(conn: asyncpg.Connection, tenant: str, since: datetime) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM analytics.breaches WHERE tenant_id = $1 AND occurred_at >= $2", tenant, since
    )
    return count


async def sessions_in_state(conn: asyncpg.Connection, tenant: str, state: int) -> int:
    """Sessions whose latest recorded event is ``state``."""
    count: int = await conn.fetchval(
        """SELECT count(*) FROM (SELECT DISTINCT ON (session_id) state FROM analytics.session_events
        WHERE tenant_id = $1 ORDER BY session_id, sequence DESC) s WHERE state = $2""",
        tenant,
        state,
    )
    return count


async def insert_rebalance(conn: asyncpg.Connection, tenant: str, rebalance_id: str, payload: bytes) -> None:
    await conn.execute(
        "INSERT INTO analytics.rebalances (tenant_id, rebalance_id, payload) VALUES ($1, $2, $3)",
        tenant,
        rebalance_id,
        payload,
    )
