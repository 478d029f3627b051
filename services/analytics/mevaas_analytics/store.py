"""SQL of the analytics schema: the rows each event becomes (written by `events.BatchWriter`) and
the read queries of the reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.events.v1 import events_pb2

SCHEMA = "analytics"
PLATFORM = "_platform"

Statement = tuple[str, tuple[Any, ...]]


def when(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def token_key(chain_id: int, address: str) -> str:
    return f"{chain_id}:{address.lower()}"


def _int(text: str) -> int:
    return int(text) if text else 0


INSERT_OPPORTUNITY = """
INSERT INTO analytics.opportunities (tenant_id, opportunity_id, event_id, strategy_id, strategy_type, chain_id,
    dex, profit_token, expected_profit, expected_profit_net, detected_block, detected_at, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (tenant_id, opportunity_id) DO NOTHING"""


def opportunity_rows(opp: events_pb2.Opportunity) -> list[Statement]:
    detected = opp.detected_at if opp.HasField("detected_at") else opp.occurred_at
    return [
        (
            INSERT_OPPORTUNITY,
            (
                opp.tenant_id,
                opp.opportunity_id,
                opp.event_id,
                opp.strategy_id,
                opp.type,
                opp.chain_id,
                opp.hops[0].dex if opp.hops else "",
                token_key(opp.profit_token.chain_id, opp.profit_token.address),
                _int(opp.expected_profit),
                _int(opp.expected_profit_net_of_gas),
                opp.detected_block,
                when(detected),
                opp.SerializeToString(deterministic=True),
            ),
        )
    ]


def decision_rows(decision: events_pb2.RiskDecision) -> list[Statement]:
    rows: list[Statement] = []
    if decision.HasField("opportunity") and decision.opportunity.opportunity_id:
        # The decision carries its opportunity: the read model is complete even if opp.* lagged.
        rows += opportunity_rows(decision.opportunity)
    rows.append(
        (
            """INSERT INTO analytics.decisions (tenant_id, opportunity_id, event_id, strategy_id, outcome,
                reason_code, reason, decided_at, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (tenant_id, opportunity_id) DO NOTHING""",
            (
                decision.tenant_id,
                decision.opportunity_id,
                decision.event_id,
                decision.strategy_id,
                decision.outcome,
                decision.reason_code,
                decision.reason,
                when(decision.occurred_at),
                decision.SerializeToString(deterministic=True),
            ),
        )
    )
    return rows


def execution_rows(result: events_pb2.ExecutionResult) -> list[Statement]:
    token = result.profit_token
    return [
        (
            """INSERT INTO analytics.execution_results (tenant_id, execution_id, status, event_id, opportunity_id,
                strategy_id, session_id, chain_id, wallet_address, tx_count, private_submission, block_number,
                gas_used, gas_cost, realized_profit, expected_profit, profit_token, profit_decimals, rebalance_id,
                occurred_at, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
            ON CONFLICT (tenant_id, execution_id, status) DO NOTHING""",
            (
                result.tenant_id,
                result.execution_id,
                result.status,
                result.event_id,
                result.opportunity_id,
                result.strategy_id,
                result.session_id,
                result.chain_id,
                result.wallet_address.lower(),
                len(result.tx_hashes),
                result.submission_mode == 2,
                result.block_number,
                result.gas_used,
                _int(result.gas_cost),
                int(result.realized_profit) if result.realized_profit else None,
                int(result.expected_profit) if result.expected_profit else None,
                token_key(token.chain_id, token.address) if token.address else "",
                token.decimals,
                result.rebalance_id,
                when(result.occurred_at),
                result.SerializeToString(deterministic=True),
            ),
        )
    ]


def session_rows(event: events_pb2.ExecutionSessionEvent) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.session_events (tenant_id, session_id, sequence, state, strategy_id,
                occurred_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (tenant_id, session_id, sequence) DO NOTHING""",
            (
                event.tenant_id,
                event.session_id,
                event.sequence,
                event.state,
                event.strategy_id,
                when(event.occurred_at),
                event.SerializeToString(deterministic=True),
            ),
        )
    ]


def breach_rows(breach: events_pb2.RiskBreach) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.breaches (tenant_id, breach_id, occurred_at, payload) VALUES ($1, $2, $3, $4)
            ON CONFLICT (tenant_id, breach_id) DO NOTHING""",
            (
                breach.tenant_id,
                breach.breach_id or breach.event_id,
                when(breach.occurred_at),
                breach.SerializeToString(deterministic=True),
            ),
        )
    ]


def kill_switch_rows(change: events_pb2.KillSwitchChanged) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.kill_switch_changes (tenant_id, event_id, engaged, occurred_at, payload)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, event_id) DO NOTHING""",
            (
                change.tenant_id or PLATFORM,
                change.event_id,
                change.engaged,
                when(change.occurred_at),
                change.SerializeToString(deterministic=True),
            ),
        )
    ]


def audit_rows(record: events_pb2.AuditRecord) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.audit_records (tenant_id, event_id, occurred_at, payload) VALUES ($1, $2, $3, $4)
            ON CONFLICT (tenant_id, event_id) DO NOTHING""",
            (
                record.tenant_id,
                record.event_id,
                when(record.occurred_at),
                record.SerializeToString(deterministic=True),
            ),
        )
    ]


def tenant_rows(event: events_pb2.TenantEvent) -> list[Statement]:
    return [
        (
            """INSERT INTO analytics.tenant_versions (tenant_id, version, kind, occurred_at, plan, payload)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, version) DO NOTHING""",
            (
                event.tenant_id,
                event.tenant.version,
                event.kind,
                when(event.occurred_at),
                event.tenant.plan.SerializeToString(deterministic=True),
                event.SerializeToString(deterministic=True),
            ),
        )
    ]


def market_rows(update: events_pb2.MarketUpdate) -> list[Statement]:
    rows: list[Statement] = [
        (
            """INSERT INTO analytics.market_blocks (chain_id, block_hash, block_number, block_time, pool_count)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain_id, block_hash) DO NOTHING""",
            (
                update.chain_id,
                update.block_hash,
                update.block_number,
                when(update.block_timestamp if update.HasField("block_timestamp") else update.occurred_at),
                len(update.pools),
            ),
        )
    ]
    # Newest block wins (a reorg replaces a height with a block of the same or a higher number).
    upsert = """INSERT INTO analytics.pool_reserves (chain_id, address, dex, token0, token1, reserve0, reserve1,
            fee_bps, block_number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (chain_id, address) DO UPDATE SET reserve0 = excluded.reserve0, reserve1 = excluded.reserve1,
            block_number = excluded.block_number
        WHERE excluded.block_number >= analytics.pool_reserves.block_number"""
    for pool in update.pools:
        rows.append(
            (
                upsert,
                (
                    update.chain_id,
                    pool.address.lower(),
                    pool.dex,
                    pool.token0.lower(),
                    pool.token1.lower(),
                    _int(pool.reserve0),
                    _int(pool.reserve1),
                    pool.fee_bps,
                    update.block_number,
                ),
            )
        )
    return rows


# --- reads -----------------------------------------------------------------------------------

# An opportunity with its derived status: the final execution result if any (else SUBMITTED),
# else the risk decision, else DETECTED. OpportunityStatus = ExecutionResultStatus + 3.
OPPORTUNITY_VIEW = """
SELECT o.tenant_id, o.opportunity_id, o.strategy_id, o.strategy_type, o.chain_id, o.dex, o.profit_token,
       o.expected_profit, o.expected_profit_net, o.detected_at, o.payload,
       d.outcome, d.reason_code, d.reason, d.decided_at,
       e.execution_id, e.status AS exec_status, e.payload AS exec_payload, e.occurred_at AS exec_at,
       CASE WHEN e.status IS NOT NULL THEN e.status + 3
            WHEN d.outcome = 1 THEN 3 WHEN d.outcome = 2 THEN 2 ELSE 1 END AS status,
       greatest(o.detected_at, d.decided_at, e.occurred_at) AS updated_at
FROM analytics.opportunities o
LEFT JOIN analytics.decisions d ON d.tenant_id = o.tenant_id AND d.opportunity_id = o.opportunity_id
LEFT JOIN LATERAL (
    SELECT r.execution_id, r.status, r.payload, r.occurred_at FROM analytics.execution_results r
    WHERE r.tenant_id = o.tenant_id AND r.opportunity_id = o.opportunity_id
    ORDER BY (r.status <> 1) DESC, r.occurred_at DESC LIMIT 1
) e ON true
"""


@dataclass(frozen=True)
class OpportunityFilter:
    strategy_ids: tuple[str, ...] = ()
    chain_ids: tuple[int, ...] = ()
    statuses: tuple[int, ...] = ()
    types: tuple[int, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    min_expected_profit: int | None = None


def _where(f: OpportunityFilter, args: list[Any]) -> str:
    clauses = ["tenant_id = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.strategy_ids:
        clauses.append(f"strategy_id = ANY({arg(list(f.strategy_ids))}::text[])")
    if f.chain_ids:
        clauses.append(f"chain_id = ANY({arg(list(f.chain_ids))}::bigint[])")
    if f.statuses:
        clauses.append(f"status = ANY({arg(list(f.statuses))}::int[])")
    if f.types:
        clauses.append(f"strategy_type = ANY({arg(list(f.types))}::int[])")
    if f.start is not None:
        clauses.append(f"detected_at >= {arg(f.start)}")
    if f.end is not None:
        clauses.append(f"detected_at < {arg(f.end)}")
    if f.min_expected_profit is not None:
        clauses.append(f"expected_profit_net >= {arg(f.min_expected_profit)}")
    return " AND ".join(clauses)


async def list_opportunities(
    conn: asyncpg.Connection,
    tenant_id: str,
    f: OpportunityFilter,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (detected_at, opportunity_id)."""
    args: list[Any] = [tenant_id]
    where = _where(f, args)
    if after is not None:
        args += [after[0], after[1]]
        where += f" AND (detected_at, opportunity_id) < (${len(args) - 1}, ${len(args)})"
    args.append(limit)
    return list(
        await conn.fetch(
            f"SELECT * FROM ({OPPORTUNITY_VIEW}) v WHERE {where} "
            f"ORDER BY detected_at DESC, opportunity_id DESC LIMIT ${len(args)}",
            *args,
        )
    )


async def execution_results(
    conn: asyncpg.Connection, tenant_id: str, start: datetime | None, end: datetime | None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT * FROM analytics.execution_results WHERE tenant_id = $1
            AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)
            ORDER BY occurred_at, execution_id, status""",
            tenant_id,
            start,
            end,
        )
    )


async def audit_page(
    conn: asyncpg.Connection,
    tenant_id: str,
    start: datetime | None,
    end: datetime | None,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT occurred_at, event_id, payload FROM analytics.audit_records WHERE tenant_id = $1
            AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)
            AND ($4::timestamptz IS NULL OR (occurred_at, event_id) > ($4, $5))
            ORDER BY occurred_at, event_id LIMIT $6""",
            tenant_id,
            start,
            end,
            after[0] if after else None,
            after[1] if after else "",
            limit,
        )
    )


async def payloads_in(
    conn: asyncpg.Connection, table: str, tenant_id: str, start: datetime | None, end: datetime | None
) -> list[bytes]:
    """Payloads of `table` (breaches, kill switch changes) of the tenant and the platform-wide ones."""
    assert table in {"breaches", "kill_switch_changes"}
    rows = await conn.fetch(
        f"""SELECT payload FROM analytics.{table} WHERE tenant_id IN ($1, '{PLATFORM}')
        AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)
        ORDER BY occurred_at""",
        tenant_id,
        start,
        end,
    )
    return [r["payload"] for r in rows]


async def decisions(
    conn: asyncpg.Connection, tenant_id: str, start: datetime | None, end: datetime | None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT outcome, reason_code, decided_at, payload FROM analytics.decisions WHERE tenant_id = $1
            AND ($2::timestamptz IS NULL OR decided_at >= $2) AND ($3::timestamptz IS NULL OR decided_at < $3)
            ORDER BY decided_at DESC""",
            tenant_id,
            start,
            end,
        )
    )


async def current_plan(conn: asyncpg.Connection, tenant_id: str) -> bytes | None:
    value: bytes | None = await conn.fetchval(
        "SELECT plan FROM analytics.tenant_versions WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
        tenant_id,
    )
    return value


async def pool_reserves(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT * FROM analytics.pool_reserves"))


async def insert_backtest(
    conn: asyncpg.Connection,
    tenant_id: str,
    backtest_id: str,
    strategy_id: str,
    span: tuple[int, int, int],
    created_at: datetime,
    payload: bytes,
    executions: str,
) -> None:
    """`span` is (chain id, from block, to block); `executions` a JSON array. A second run of the
    same backtest id keeps the first result."""
    await conn.execute(
        "INSERT INTO analytics.backtests (tenant_id, backtest_id, strategy_id, chain_id, from_block, to_block,"
        " created_at, payload, executions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"
        " ON CONFLICT (tenant_id, backtest_id) DO NOTHING",
        tenant_id,
        backtest_id,
        strategy_id,
        *span,
        created_at,
        payload,
        executions,
    )


async def get_backtest(conn: asyncpg.Connection, backtest_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT backtest_id, strategy_id, chain_id, from_block, to_block, payload, executions::text AS executions"
        " FROM analytics.backtests WHERE backtest_id = $1",
        backtest_id,
    )


async def live_executions(
    conn: asyncpg.Connection, strategy_id: str, chain_id: int, from_block: int, to_block: int
) -> list[asyncpg.Record]:
    """Final results (included or reverted) of the strategy's opportunities detected in the block
    range, each with its opportunity."""
    return await conn.fetch(
        "SELECT e.status, e.block_number, e.realized_profit, e.gas_cost, e.occurred_at, o.detected_block,"
        " o.payload AS opportunity FROM analytics.execution_results e JOIN analytics.opportunities o"
        " ON o.tenant_id = e.tenant_id AND o.opportunity_id = e.opportunity_id"
        " WHERE e.strategy_id = $1 AND e.chain_id = $2 AND e.status = ANY($5::int[])"
        " AND o.detected_block BETWEEN $3 AND $4 ORDER BY o.detected_block, e.occurred_at",
        strategy_id,
        chain_id,
        from_block,
        to_block,
        [2, 3],
    )
