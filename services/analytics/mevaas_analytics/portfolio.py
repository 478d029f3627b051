"""PortfolioService over the read model.

Positions are the net token flows the platform executed for the tenant (realised PnL of final
executions per chain, wallet and profit token); on-chain reconciliation is not done by this
service, so `balance` is that tracked net flow and `as_of_block` the last block it includes.
A rebalance is recorded with its idempotency key and sent to execution as a RebalanceCommand on
`exec.<tenant>.rebalance` through the transactional outbox; execution plans the routes (the
command carries the targets; `trades` stays empty here because this service holds no pool
routing state).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_analytics import store
from mevaas_analytics.api import FINAL, READERS, TRADERS, page_size, timeframe_bounds, ts
from mevaas_analytics.domain import reports
from mevaas_core import outbox
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import FailedPrecondition, NotFound
from mevaas_core.grpckit import current_principal, require_tenant_scope, rpc
from mevaas_core.idempotency import IdempotentCall
from mevaas_core.pagination import decode_page_token, encode_page_token
from mevaas_core.validation import Validator

Ctx = Any


def _token(key: str, decimals: int) -> common_pb2.Token:
    chain, _, address = key.partition(":")
    return common_pb2.Token(chain_id=int(chain), address=address, decimals=decimals)


def trades_of(rows: list[asyncpg.Record], strategy_id: str = "") -> dict[str, list[reports.Trade]]:
    """Final executions per denomination token."""
    out: dict[str, list[reports.Trade]] = defaultdict(list)
    for row in rows:
        if (
            row["status"] in FINAL
            and row["profit_token"]
            and (not strategy_id or row["strategy_id"] == strategy_id)
        ):
            out[row["profit_token"]].append(
                reports.Trade(
                    row["occurred_at"],
                    int(row["realized_profit"] or 0),
                    int(row["gas_cost"]),
                    row["strategy_id"],
                )
            )
    return out


def metrics_proto(token: common_pb2.Token, perf: reports.Performance) -> common_pb2.PerformanceMetrics:
    return common_pb2.PerformanceMetrics(
        denomination=token,
        total_pnl=str(perf.total_pnl),
        gross_profit=str(perf.gross_profit),
        gross_loss=str(perf.gross_loss),
        gas_cost_wei=str(perf.gas_cost_wei),
        max_drawdown=str(perf.max_drawdown),
        sharpe_ratio=perf.sharpe_ratio,
        sortino_ratio=perf.sortino_ratio,
        win_rate=perf.win_rate,
        trade_count=perf.trade_count,
        winning_trades=perf.winning_trades,
        losing_trades=perf.losing_trades,
    )


class PortfolioServicer(portfolio_pb2_grpc.PortfolioServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @rpc(*READERS)
    async def GetPositions(
        self, request: portfolio_pb2.GetPositionsRequest, context: Ctx
    ) -> portfolio_pb2.GetPositionsResponse:
        tenant = require_tenant_scope()
        v = Validator()
        size = page_size(request.page, v)
        if request.wallet_address:
            v.address(request.wallet_address, "wallet_address")
        v.raise_if_any()
        async with tenant_transaction(self.pool, tenant) as conn:
            rows = await conn.fetch(
                """SELECT chain_id, wallet_address, profit_token, max(profit_decimals) AS decimals,
                    sum(coalesce(realized_profit, 0)) AS pnl, max(block_number) AS block, max(occurred_at) AS at
                FROM analytics.execution_results WHERE tenant_id = $1 AND status = ANY($2::int[]) AND profit_token <> ''
                AND ($3 = 0 OR chain_id = $3) AND ($4 = '' OR wallet_address = $4)
                GROUP BY chain_id, wallet_address, profit_token ORDER BY chain_id, wallet_address, profit_token""",
                tenant,
                sorted(FINAL),
                request.chain_id,
                request.wallet_address.lower(),
            )
        positions = [
            portfolio_pb2.Position(
                token=_token(r["profit_token"], r["decimals"]),
                wallet_address=r["wallet_address"],
                balance=str(int(r["pnl"])),
                reserved="0",
                available=str(int(r["pnl"])),
                realized_pnl=str(int(r["pnl"])),
                as_of_block=r["block"],
                updated_at=ts(r["at"]),
            )
            for r in rows
            if request.include_zero or r["pnl"] != 0
        ]
        cursor = decode_page_token(request.page.page_token, 1)
        offset = int(cursor[0]) if cursor else 0
        response = portfolio_pb2.GetPositionsResponse(positions=positions[offset : offset + size])
        if offset + size < len(positions):
            response.page.next_page_token = encode_page_token(offset + size)
        return response

    @rpc(*READERS)
    async def GetPerformance(
        self, request: portfolio_pb2.GetPerformanceRequest, context: Ctx
    ) -> portfolio_pb2.GetPerformanceResponse:
        tenant = require_tenant_scope()
        v = Validator()
        start, end = timeframe_bounds(request.timeframe, "timeframe", v)
        v.raise_if_any()
        async with tenant_transaction(self.pool, tenant) as conn:
            rows = await store.execution_results(conn, tenant, start, end)
        decimals = {r["profit_token"]: r["profit_decimals"] for r in rows}
        response = portfolio_pb2.GetPerformanceResponse(timeframe=request.timeframe)
        for key, trades in sorted(trades_of(rows, request.strategy_id).items()):
            token = _token(key, decimals[key])
            perf = reports.performance(trades, start=start, end=end)
            response.metrics.append(metrics_proto(token, perf))
            series = response.daily_pnl.add(denomination=token)
            for day, pnl, cumulative, count in perf.daily:
                series.points.add(
                    time=ts(day), pnl=str(pnl), cumulative_pnl=str(cumulative), trade_count=count
                )
            by_strategy: dict[str, list[reports.Trade]] = defaultdict(list)
            for trade in trades:
                by_strategy[trade.strategy_id].append(trade)
            for strategy_id, strategy_trades in sorted(by_strategy.items()):
                response.by_strategy.add(
                    strategy_id=strategy_id,
                    metrics=metrics_proto(token, reports.performance(strategy_trades, start=start, end=end)),
                )
        return response

    @rpc(*READERS)
    async def GetRiskSummary(
        self, request: portfolio_pb2.GetRiskSummaryRequest, context: Ctx
    ) -> portfolio_pb2.GetRiskSummaryResponse:
        tenant = require_tenant_scope()
        now = datetime.now(UTC)
        async with tenant_transaction(self.pool, tenant) as conn:
            engaged = await kill_switch_engaged(conn, tenant)
            breaches = await conn.fetchval(
                "SELECT count(*) FROM analytics.breaches WHERE tenant_id = $1 AND occurred_at >= $2",
                tenant,
                now - timedelta(days=1),
            )
            running = await conn.fetchval(
                """SELECT count(*) FROM (SELECT DISTINCT ON (session_id) state FROM analytics.session_events
                WHERE tenant_id = $1 ORDER BY session_id, sequence DESC) s WHERE state = $2""",
                tenant,
                common_pb2.EXECUTION_STATE_RUNNING,
            )
            rows = await store.execution_results(conn, tenant, now - timedelta(days=1), None)
        response = portfolio_pb2.GetRiskSummaryResponse(
            kill_switch_engaged=engaged,
            recent_breaches=breaches,
            running_sessions=running,
            computed_at=ts(now),
        )
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        decimals = {r["profit_token"]: r["profit_decimals"] for r in rows}
        for key, trades in sorted(trades_of(rows).items()):
            pnl_today = sum(t.pnl for t in trades if t.at >= today)
            response.daily_loss.add(
                denomination=_token(key, decimals[key]), loss_today=str(max(0, -pnl_today))
            )
        return response

    @rpc(*TRADERS)
    async def Rebalance(
        self, request: portfolio_pb2.RebalanceRequest, context: Ctx
    ) -> portfolio_pb2.RebalanceResponse:
        tenant = require_tenant_scope()
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(1 <= len(request.targets) <= 50, "targets", "must hold 1-50 targets")
        v.check(1 <= request.max_slippage_bps <= 5000, "max_slippage_bps", "must be 1-5000")
        if request.wallet_address:
            v.address(request.wallet_address, "wallet_address")
        seen: set[str] = set()
        for i, target in enumerate(request.targets):
            field = f"targets[{i}]"
            v.check(target.token.chain_id > 0, f"{field}.token.chain_id", "is required")
            v.address(target.token.address, f"{field}.token.address")
            key = store.token_key(target.token.chain_id, target.token.address)
            v.check(key not in seen, f"{field}.token", "must be distinct")
            seen.add(key)
            kind = target.WhichOneof("target")
            if kind == "target_amount":
                v.integer_amount(target.target_amount, f"{field}.target_amount")
            elif kind == "target_weight_percent":
                v.decimal(
                    target.target_weight_percent.value,
                    f"{field}.target_weight_percent",
                    low=Decimal(0),
                    high=Decimal(100),
                )
            else:
                v.fail(f"{field}.target", "exactly one of target_amount, target_weight_percent is required")
        v.raise_if_any()
        method = "/mevaas.portfolio.v1.PortfolioService/Rebalance"
        async with tenant_transaction(self.pool, tenant) as conn:
            call = IdempotentCall(store.SCHEMA, tenant_id=tenant, method=method, request=request)
            replay = await call.replay(conn, portfolio_pb2.RebalanceResponse)
            if replay is not None:
                return replay
            if await kill_switch_engaged(conn, tenant):
                raise FailedPrecondition("the kill switch is engaged")
            now = datetime.now(UTC)
            rebalance_id = str(uuid.uuid4())
            result = portfolio_pb2.RebalanceResult(
                rebalance_id=rebalance_id,
                status=portfolio_pb2.REBALANCE_STATUS_PLANNED
                if request.dry_run
                else portfolio_pb2.REBALANCE_STATUS_SUBMITTED,
                targets=request.targets,
                created_at=ts(now),
                updated_at=ts(now),
            )
            if not request.dry_run:
                principal = current_principal()
                command = events_pb2.RebalanceCommand(
                    event_id=str(uuid.uuid4()),
                    tenant_id=tenant,
                    occurred_at=ts(now),
                    rebalance_id=rebalance_id,
                    targets=request.targets,
                    max_slippage_bps=request.max_slippage_bps,
                    wallet_address=request.wallet_address,
                    actor=events_pb2.Actor(id=principal.subject, tenant_id=principal.tenant_id),
                )
                await outbox.enqueue(
                    conn,
                    store.SCHEMA,
                    subject=f"exec.{tenant}.rebalance",
                    message=command,
                    event_id=rebalance_id,
                    tenant_id=tenant,
                )
            await conn.execute(
                "INSERT INTO analytics.rebalances (tenant_id, rebalance_id, payload) VALUES ($1, $2, $3)",
                tenant,
                rebalance_id,
                result.SerializeToString(deterministic=True),
            )
            response = portfolio_pb2.RebalanceResponse(result=result)
            await call.remember(conn, response)
        return response

    @rpc(*READERS)
    async def GetRebalance(
        self, request: portfolio_pb2.GetRebalanceRequest, context: Ctx
    ) -> portfolio_pb2.GetRebalanceResponse:
        tenant = require_tenant_scope()
        v = Validator()
        v.required(request.rebalance_id, "rebalance_id")
        v.raise_if_any()
        async with tenant_transaction(self.pool, tenant) as conn:
            payload = await conn.fetchval(
                "SELECT payload FROM analytics.rebalances WHERE tenant_id = $1 AND rebalance_id = $2",
                tenant,
                request.rebalance_id,
            )
            if payload is None:
                raise NotFound("rebalance", request.rebalance_id)
            result = portfolio_pb2.RebalanceResult.FromString(payload)
            statuses = [
                r["status"]
                for r in await conn.fetch(
                    "SELECT DISTINCT ON (execution_id) execution_id, status FROM analytics.execution_results "
                    "WHERE tenant_id = $1 AND rebalance_id = $2 ORDER BY execution_id, (status <> 1) DESC",
                    tenant,
                    request.rebalance_id,
                )
            ]
        if statuses and all(s != 1 for s in statuses):
            result.status = (
                portfolio_pb2.REBALANCE_STATUS_COMPLETED
                if all(s == 2 for s in statuses)
                else portfolio_pb2.REBALANCE_STATUS_PARTIALLY_COMPLETED
            )
        return portfolio_pb2.GetRebalanceResponse(result=result)


async def kill_switch_engaged(conn: asyncpg.Connection, tenant: str) -> bool:
    """Latest tenant-wide change of the tenant or of the platform-wide switch."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (tenant_id) engaged FROM analytics.kill_switch_changes k
        WHERE tenant_id IN ($1, $2)
        ORDER BY tenant_id, occurred_at DESC""",
        tenant,
        store.PLATFORM,
    )
    return any(r["engaged"] for r in rows)
