"""Leverage protection's position snapshots in the read model (strategy's
``protect.<tenant>.position``): one row per protection and block, written once (a redelivered
snapshot changes nothing), read by billing for the leverage-protection fee."""

from __future__ import annotations

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_analytics.store.common import Statement, when

INSERT = """INSERT INTO analytics.protection_snapshots (tenant_id, protection_id, chain_id, account,
    block_number, at, valid_seconds, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, protection_id, block_number) DO NOTHING"""


def snapshot_rows(event: events_pb2.ProtectedPositionSnapshot) -> list[Statement]:
    return [
        (
            INSERT,
            (
                event.tenant_id,
                event.protection_id,
                event.chain_id,
                event.account.lower(),
                event.block_number,
                when(event.occurred_at),
                event.valid_seconds,
                event.SerializeToString(deterministic=True),
            ),
        )
    ]


async def snapshots_of(
    conn: asyncpg.Connection, tenant_id: str
) -> list[events_pb2.ProtectedPositionSnapshot]:
    """Every snapshot of the tenant's protections, oldest first."""
    rows = await conn.fetch(
        "SELECT payload FROM analytics.protection_snapshots WHERE tenant_id = $1 "
        "ORDER BY at, protection_id, block_number",
        tenant_id,
    )
    return [events_pb2.ProtectedPositionSnapshot.FromString(bytes(r["payload"])) for r in rows]
