"""Sandwich threats in the read model (strategy's ``protect.<tenant>.threat``): the rows a threat
becomes (written once per tenant, chain and transaction; a redelivery writes nothing twice) with
its valuations, and the report's read of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain.threats import Threat, ThreatValue, parse_threat
from mevaas_analytics.store.common import Statement
from mevaas_chain.pricing import to_decimal

INSERT_THREAT = """INSERT INTO analytics.threats (tenant_id, chain_id, tx_hash, event_id, sender, block_number,
    pool, token, attacker_profit, exposure_token, exposure, safe_slippage_bps, seen_at, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (tenant_id, chain_id, tx_hash) DO NOTHING"""

# As execution_valuations: the first priced valuation stays; an unpriced one (a replica whose
# market state had not reached the block) gives way to a priced one, never the reverse.
UPSERT_VALUATION = """INSERT INTO analytics.threat_valuations (tenant_id, chain_id, tx_hash, component, token,
    amount, decimals, priced, usd_price, usd_value, price_source, price_block, price_observed_at,
    unpriced_reason, valued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (tenant_id, chain_id, tx_hash, component) DO UPDATE SET priced = true,
    decimals = excluded.decimals, usd_price = excluded.usd_price, usd_value = excluded.usd_value,
    price_source = excluded.price_source, price_block = excluded.price_block,
    price_observed_at = excluded.price_observed_at, unpriced_reason = '', valued_at = excluded.valued_at
WHERE NOT analytics.threat_valuations.priced AND excluded.priced"""


def threat_rows(event: events_pb2.SandwichThreat) -> list[Statement]:
    t = parse_threat(event)
    return [
        (
            INSERT_THREAT,
            (
                t.tenant_id,
                t.chain_id,
                t.tx_hash,
                t.event_id,
                t.sender,
                t.block_number,
                t.pool,
                t.token,
                t.attacker_profit,
                t.exposure_token,
                t.exposure,
                t.safe_slippage_bps,
                t.seen_at,
                event.SerializeToString(deterministic=True),
            ),
        )
    ]


def valuation_rows(threat: Threat, values: Sequence[ThreatValue], valued_at: datetime) -> list[Statement]:
    rows: list[Statement] = []
    for value in values:
        p = value.priced
        priced: tuple[Any, ...] = (
            (
                True,
                to_decimal(p.price.usd),
                to_decimal(p.usd),
                p.price.source,
                p.price.block_number,
                p.price.observed_at,
                "",
            )
            if p is not None
            else (False, None, None, "", 0, None, value.unpriced_reason)
        )
        rows.append(
            (
                UPSERT_VALUATION,
                (
                    threat.tenant_id,
                    threat.chain_id,
                    threat.tx_hash,
                    value.component,
                    f"{threat.chain_id}:{value.token}",
                    value.amount,
                    value.decimals,
                    *priced,
                    valued_at,
                ),
            )
        )
    return rows


_IN = """WHERE t.tenant_id = $1
    AND ($2::timestamptz IS NULL OR t.seen_at >= $2) AND ($3::timestamptz IS NULL OR t.seen_at < $3)
    AND ($4::bigint IS NULL OR t.chain_id = $4)"""


async def threats_in(
    conn: asyncpg.Connection,
    tenant_id: str,
    start: datetime | None,
    end: datetime | None,
    chain_id: int | None,
) -> tuple[list[asyncpg.Record], dict[tuple[int, str, str], asyncpg.Record]]:
    """The tenant's threats seen in [start, end) (on chain_id, when given), newest first, and
    their valuations by (chain, tx hash, component)."""
    args = (tenant_id, start, end, chain_id)
    threats = await conn.fetch(
        f"SELECT * FROM analytics.threats t {_IN} ORDER BY t.seen_at DESC, t.chain_id, t.tx_hash", *args
    )
    values = await conn.fetch(
        "SELECT v.* FROM analytics.threat_valuations v JOIN analytics.threats t"
        f" ON t.tenant_id = v.tenant_id AND t.chain_id = v.chain_id AND t.tx_hash = v.tx_hash {_IN}",
        *args,
    )
    return list(threats), {(r["chain_id"], r["tx_hash"], r["component"]): r for r in values}
