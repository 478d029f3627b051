"""PortfolioService over the read model.

Positions are holdings: what each wallet and its executor contract hold on chain, read by
execution's treasury when asked (request/reply on rpc.execution.treasury_holdings) and priced here
with the one price source (docs/pricing.md); an unpriced token says so, it is never valued at 0.
realized_pnl comes from the recorded final executions.
A rebalance is recorded with its idempotency key and sent to execution as a RebalanceCommand on
`exec.<tenant>.rebalance` through the transactional outbox; execution plans and executes the
trades and reports every status change (execution.v1.RebalanceUpdated on
`exec.<tenant>.rebalance_status`, recorded by the `rebalances` feed), which GetRebalance shows.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_analytics import store
from mevaas_analytics.api import READERS, TRADERS, page_size, timeframe_bounds, ts
from mevaas_analytics.domain import positions, reports
from mevaas_analytics.domain.report_tables import FINAL
from mevaas_analytics.store import portfolio as portfolio_store
from mevaas_chain.pricing import PriceSource, valuate
from mevaas_core import outbox, subjects
from mevaas_core.bus import Bus, NoRespondersError, RemoteError, RequestTimeoutError
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from mevaas_core.grpckit import current_principal, require_tenant_scope, rpc
from mevaas_core.idempotency import IdempotentCall
from mevaas_core.pagination import offset_page
from mevaas_core.validation import Validator

Ctx = Any
# (tenant, chain filter, wallet filter) -> what the tenant's wallets and executors hold.
Holdings = Callable[[str, int, str], Awaitable[Sequence[execution_pb2.TreasuryHolding]]]


class TreasuryHoldings:
    """Asks execution's treasury (rpc.execution.treasury_holdings) for the chain balances."""

    def __init__(self, bus: Bus, *, timeout_s: float = 15.0) -> None:
        self.bus = bus
        self.timeout_s = timeout_s

    async def __call__(
        self, tenant_id: str, chain_id: int, wallet: str
    ) -> Sequence[execution_pb2.TreasuryHolding]:
        try:
            reply = await self.bus.request(
                subjects.EXECUTION_TREASURY_HOLDINGS,
                execution_pb2.TreasuryHoldingsRequest(chain_id=chain_id, wallet_address=wallet),
                execution_pb2.TreasuryHoldingsResponse,
                tenant_id=tenant_id,
                timeout=self.timeout_s,
            )
        except (NoRespondersError, RequestTimeoutError) as exc:
            raise Unavailable(f"execution's treasury did not answer the holdings read: {exc}") from exc
        except RemoteError as exc:
            if exc.code == 400:
                raise InvalidArgument(FieldViolation("chain_id", exc.message)) from exc
            raise Unavailable(f"execution's treasury could not read the holdings: {exc.message}") from exc
        return list(reply.holdings)


def _token(key: str, decimals: int) -> common_pb2.Token:
    chain, _, address = key.partition(":")
    return common_pb2.Token(chain_id=int(chain), address=address, decimals=decimals)


def trades_of(rows: list[asyncpg.Record], strategy_id: str = "") -> dict[str, list[reports.Trade]]:
    """Final executions per denomination token."""
    out: dict[str, list[reports.Trade]] = defaultdict(list)
    for row in rows:
        if (
            row["status"] in FINAL
            and row["realized_profit"] is not None
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
    def __init__(self, pool: asyncpg.Pool, prices: PriceSource, holdings: Holdings) -> None:
        self.pool = pool
        self.prices = prices
        self.holdings = holdings

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
        holdings = await self.holdings(tenant, request.chain_id, request.wallet_address.lower())
        async with tenant_transaction(self.pool, tenant) as conn:
            pnl = await store.realized_pnl_by_holding(conn, tenant, sorted(FINAL))
        all_positions = [
            positions.position(
                h,
                valuate(
                    self.prices,
                    h.token.chain_id,
                    positions.token_key(h.token),
                    int(h.wallet_balance) + int(h.executor_balance),
                    h.token.decimals,
                    at_block=h.block_number,
                ),
                pnl.get((h.token.chain_id, h.wallet_address, positions.token_key(h.token)), 0),
            )
            for h in holdings
            if request.include_zero or int(h.wallet_balance) + int(h.executor_balance) != 0
        ]
        page, token = offset_page(all_positions, request.page.page_token, size)
        response = portfolio_pb2.GetPositionsResponse(positions=page)
        positions.totals(all_positions, response)
        if token:
            response.page.next_page_token = token
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
            engaged = await portfolio_store.kill_switch_engaged(conn, tenant)
            breaches = await portfolio_store.breaches_since(conn, tenant, now - timedelta(days=1))
            running = await portfolio_store.sessions_in_state(
                conn, tenant, common_pb2.EXECUTION_STATE_RUNNING
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
            if await portfolio_store.kill_switch_engaged(conn, tenant):
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
            await portfolio_store.insert_rebalance(
                conn, tenant, rebalance_id, result.SerializeToString(deterministic=True)
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
        async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
            row = await store.rebalance(conn, tenant, request.rebalance_id)
        if row is None:
            raise NotFound("rebalance", request.rebalance_id)
        result = portfolio_pb2.RebalanceResult.FromString(row["payload"])
        if row["execution_result"] is not None:
            # Execution runs the rebalance: its status, trades, executions and reason are the truth
            # (execution.v1.RebalanceUpdated); the targets and creation time stay as accepted here.
            reported = portfolio_pb2.RebalanceResult.FromString(row["execution_result"])
            result.status = reported.status
            del result.trades[:]
            result.trades.extend(reported.trades)
            del result.execution_ids[:]
            result.execution_ids.extend(reported.execution_ids)
            result.reason = reported.reason
            result.updated_at.CopyFrom(reported.updated_at)
        return portfolio_pb2.GetRebalanceResponse(result=result)
