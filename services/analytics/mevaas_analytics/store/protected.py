"""Clients' protected transactions in the read model (execution's ``exec.<tenant>.protected``):
the rows each event becomes, and the reads billing and the compliance report make of them.

One row per protected transaction; a later status never goes back (received < submitted < a
final one), the refund is kept once booked, and a redelivered event changes nothing."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_analytics.store.common import Statement, when

STATUS_RANK = {"received": 1, "submitted": 2, "included": 3, "reverted": 3, "expired": 3, "failed": 3}

UPSERT = """INSERT INTO analytics.protected_transactions AS p (tenant_id, protected_transaction_id, chain_id,
    tx_hash, sender, to_address, fair_ordering, accepted, status, status_rank, error, reason_code, sanctioned,
    source, received_at, block_number, refund_token, refund_amount, gas_refund, refunded_at,
    protection_fee, fair_ordering_fee, fee_currency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18, $19, $20,
    $21, $22, $23)
ON CONFLICT (tenant_id, protected_transaction_id) DO UPDATE SET
    status = CASE WHEN excluded.status_rank > p.status_rank THEN excluded.status ELSE p.status END,
    error = CASE WHEN excluded.status_rank > p.status_rank THEN excluded.error ELSE p.error END,
    status_rank = GREATEST(p.status_rank, excluded.status_rank),
    block_number = GREATEST(p.block_number, excluded.block_number),
    refund_token = CASE WHEN p.refunded_at IS NULL THEN excluded.refund_token ELSE p.refund_token END,
    refund_amount = COALESCE(p.refund_amount, excluded.refund_amount),
    gas_refund = COALESCE(p.gas_refund, excluded.gas_refund),
    refunded_at = COALESCE(p.refunded_at, excluded.refunded_at),
    protection_fee = CASE WHEN p.fee_currency = '' THEN excluded.protection_fee ELSE p.protection_fee END,
    fair_ordering_fee = CASE WHEN p.fee_currency = '' THEN excluded.fair_ordering_fee ELSE p.fair_ordering_fee END,
    fee_currency = CASE WHEN p.fee_currency = '' THEN excluded.fee_currency ELSE p.fee_currency END"""


def protected_rows(event: events_pb2.ProtectedTransactionEvent) -> list[Statement]:
    refunded = bool(event.refund_amount)
    # The fee recorded at acceptance (kept once known): the total and, of it, the fair-ordering part.
    priced = event.HasField("protection_fee") and bool(event.protection_fee.currency_code)
    total = Decimal(event.protection_fee.amount or "0") if priced else None
    fair = Decimal(event.fair_ordering_fee.amount or "0") if priced else None
    return [
        (
            UPSERT,
            (
                event.tenant_id,
                event.protected_transaction_id,
                event.chain_id,
                event.tx_hash.lower(),
                event.sender.lower(),
                event.to.lower(),
                event.fair_ordering,
                event.status != "failed",
                event.status,
                STATUS_RANK.get(event.status, 0),
                event.error,
                event.reason_code,
                json.dumps(
                    [
                        {"address": s.address, "list_name": s.list_name, "entity": s.entity}
                        for s in event.sanctioned
                    ]
                ),
                event.source,
                when(event.received_at),
                event.block_number,
                event.refund_token.lower() if refunded else "",
                int(event.refund_amount) if refunded else None,
                int(event.gas_refund_wei or "0") if refunded else None,
                when(event.occurred_at) if refunded else None,
                total - fair if total is not None and fair is not None else None,
                fair,
                event.protection_fee.currency_code if priced else "",
            ),
        )
    ]


async def protected_in(
    conn: asyncpg.Connection, tenant_id: str, start: datetime | None, end: datetime | None
) -> list[asyncpg.Record]:
    """The tenant's protected transactions received in [start, end) (either bound optional)."""
    return list(
        await conn.fetch(
            """SELECT * FROM analytics.protected_transactions WHERE tenant_id = $1
            AND ($2::timestamptz IS NULL OR received_at >= $2) AND ($3::timestamptz IS NULL OR received_at < $3)
            ORDER BY received_at, protected_transaction_id""",
            tenant_id,
            start,
            end,
        )
    )


async def refunds_in(conn: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    """Every refund booked on the tenant's protected transactions, with when it was booked."""
    return list(
        await conn.fetch(
            """SELECT chain_id, tx_hash, block_number, refund_token, refund_amount, gas_refund, refunded_at
            FROM analytics.protected_transactions WHERE tenant_id = $1 AND refunded_at IS NOT NULL
            ORDER BY refunded_at, protected_transaction_id""",
            tenant_id,
        )
    )


async def current_tier(conn: asyncpg.Connection, tenant_id: str) -> int:
    """The tenant's tier as its latest TenantEvent says (0 when none was seen)."""
    payload = await conn.fetchval(
        "SELECT payload FROM analytics.tenant_versions WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
        tenant_id,
    )
    return int(events_pb2.TenantEvent.FromString(payload).tenant.tier) if payload is not None else 0
