"""SQL of billing: execution valuations (written with the execution result they value) and
invoices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain.valuation import ComponentValue
from mevaas_analytics.store import Statement
from mevaas_chain.pricing import Priced, to_decimal

INSERT_VALUATION = """INSERT INTO analytics.execution_valuations (tenant_id, execution_id, status, component,
    chain_id, token, amount, decimals, priced, usd_price, usd_value, price_source, price_block, price_observed_at,
    unpriced_reason, valued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (tenant_id, execution_id, status, component) DO UPDATE SET priced = true,
    usd_price = excluded.usd_price, usd_value = excluded.usd_value, price_source = excluded.price_source,
    price_block = excluded.price_block, price_observed_at = excluded.price_observed_at, unpriced_reason = '',
    valued_at = excluded.valued_at
WHERE NOT analytics.execution_valuations.priced AND excluded.priced"""


def valuation_rows(
    result: events_pb2.ExecutionResult, values: Sequence[ComponentValue], valued_at: datetime
) -> list[Statement]:
    """A redelivered result keeps its first priced valuation (the price of when it was recorded);
    an unpriced one is replaced by a priced one (a replica that had the market state)."""
    rows: list[Statement] = []
    for value in values:
        v = value.valuation
        priced: tuple[Any, ...]
        if isinstance(v, Priced):
            priced = (
                True,
                to_decimal(v.price.usd),
                to_decimal(v.usd),
                v.price.source,
                v.price.block_number,
                v.price.observed_at,
                "",
            )
        else:
            priced = (False, None, None, "", 0, None, v.reason)
        rows.append(
            (
                INSERT_VALUATION,
                (
                    result.tenant_id,
                    result.execution_id,
                    result.status,
                    value.component,
                    value.chain_id,
                    f"{value.chain_id}:{value.token}",
                    v.amount,
                    v.decimals,
                    *priced,
                    valued_at,
                ),
            )
        )
    return rows


async def valuations(
    conn: asyncpg.Connection, tenant_id: str, component: str, start: datetime | None, end: datetime | None
) -> list[asyncpg.Record]:
    """The recorded valuations of one component of the tenant's final executions, with when the
    execution happened."""
    return list(
        await conn.fetch(
            """SELECT v.*, r.occurred_at, r.strategy_id FROM analytics.execution_valuations v
            JOIN analytics.execution_results r ON r.tenant_id = v.tenant_id AND r.execution_id = v.execution_id
                AND r.status = v.status
            WHERE v.tenant_id = $1 AND v.component = $2
            AND ($3::timestamptz IS NULL OR r.occurred_at >= $3) AND ($4::timestamptz IS NULL OR r.occurred_at < $4)
            ORDER BY r.occurred_at, v.execution_id""",
            tenant_id,
            component,
            start,
            end,
        )
    )


async def issued_invoices(conn: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT period_start, payload FROM analytics.invoices WHERE tenant_id = $1", tenant_id
        )
    )


async def next_invoice_number(conn: asyncpg.Connection) -> int:
    number: int = await conn.fetchval("SELECT nextval('analytics.invoice_numbers')")
    return number


async def insert_invoice(
    conn: asyncpg.Connection, tenant_id: str, period_start: datetime, invoice: Any, issued_at: datetime
) -> bool:
    """False when the period already has an issued invoice (it is kept)."""
    inserted = await conn.fetchval(
        """INSERT INTO analytics.invoices (tenant_id, invoice_id, period_start, number, status, issued_at, payload)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, period_start) DO NOTHING RETURNING 1""",
        tenant_id,
        invoice.invoice_id,
        period_start,
        invoice.number,
        invoice.status,
        issued_at,
        invoice.SerializeToString(deterministic=True),
    )
    return inserted is not None


async def invoice_payload(conn: asyncpg.Connection, tenant_id: str, period_start: datetime) -> bytes:
    payload: bytes = await conn.fetchval(
        "SELECT payload FROM analytics.invoices WHERE tenant_id = $1 AND period_start = $2",
        tenant_id,
        period_start,
    )
    return payload
