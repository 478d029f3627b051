"""The read queries of the reports, backtests and billing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from mevaas_analytics.store.common import PLATFORM

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


async def realized_pnl_by_holding(
    conn: asyncpg.Connection, tenant_id: str, statuses: list[int]
) -> dict[tuple[int, str, str], int]:
    """(chain, lower-case wallet, lower-case token address) -> realised PnL of final executions."""
    rows = await conn.fetch(
        "SELECT chain_id, wallet_address, profit_token, sum(realized_profit) AS pnl "
        "FROM analytics.execution_results WHERE tenant_id = $1 AND status = ANY($2::int[]) "
        "AND realized_profit IS NOT NULL AND profit_token <> '' "
        "GROUP BY chain_id, wallet_address, profit_token",
        tenant_id,
        statuses,
    )
    return {
        (r["chain_id"], r["wallet_address"].lower(), r["profit_token"].partition(":")[2].lower()): int(
            r["pnl"]
        )
        for r in rows
    }


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


async def list_backtests(
    conn: asyncpg.Connection, strategy_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first; `after` is the (created_at, backtest_id) of the previous page's last row."""
    return list(
        await conn.fetch(
            "SELECT backtest_id, created_at, payload FROM analytics.backtests"
            " WHERE ($1 = '' OR strategy_id = $1)"
            " AND ($2::timestamptz IS NULL OR (created_at, backtest_id) < ($2::timestamptz, $3))"
            " ORDER BY created_at DESC, backtest_id DESC LIMIT $4",
            strategy_id,
            after[0] if after else None,
            after[1] if after else "",
            limit,
        )
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


async def rebalance(conn: asyncpg.Connection, tenant_id: str, rebalance_id: str) -> asyncpg.Record | None:
    """The rebalance as accepted here (``payload``) and as execution last reported it
    (``execution_result``, NULL before its first report)."""
    return await conn.fetchrow(
        "SELECT payload, execution_result FROM analytics.rebalances WHERE tenant_id = $1 AND rebalance_id = $2",
        tenant_id,
        rebalance_id,
    )
