"""Backtests for the strategy service (subjects in `mevaas_core.subjects`; errors as HTTP-style codes).

A backtest replays the strategy version's own plugin (`mevaas_strategies`, the code the live
engine runs) over the market history this service records from the CHAIN stream, through
`domain.backtest.replay` and its documented assumptions, mapped from the request:

* inclusion: a candidate found after block N executes in N+1 at N's reserves, top of block;
  `inclusion_probability_percent` becomes the replay's deterministic win share (default 100);
  `latency_blocks` only shifts the reported execution block, the trade is priced at N's reserves;
* gas: each block's recorded base fee plus `priority_fee_wei` (default 1 gwei, the engine's
  default), or a flat `gas_price_wei`; the plugin converts gas to the profit token itself;
* competition: one execution per pool per block, best net profit first.

Recorded history holds each block's changed pools only, so a replay applies every recorded block
before the range (state only) and evaluates the range with everything changed on its first block.

Backtest vs live: the strategy's final executions (read model) whose opportunities were detected in
the range, against the backtest's executions: PnL, metrics, daily series and capture ratio.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_analytics import store
from mevaas_analytics.backtest_replay import (
    Settings,
    backtest_message,
    correlation,
    run_replay,
    ts,
)
from mevaas_analytics.domain import reports
from mevaas_analytics.history import MarketHistory
from mevaas_analytics.portfolio import metrics_proto
from mevaas_chain.registry import ChainRegistry
from mevaas_core import subjects
from mevaas_core.bus import Bus, RemoteError, RequestContext, ServiceError
from mevaas_core.bus.follow import read_back
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import InvalidArgument
from mevaas_core.pagination import NOT_OURS, Keyset, page_after, split_page
from mevaas_core.validation import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from mevaas_strategies.model import StrategySpec

QUEUE = "analytics-backtests"

# How long a backtest waits for the market recording to reach the end of its range.
HISTORY_WAIT_S = 10.0


class Backtests:
    """The request handlers; `chains` is read per backtest (tokens and wrapped native of a chain)."""

    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, history: MarketHistory, chains: Callable[[], ChainRegistry]
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.history = history
        self.chains = chains

    async def serve(self) -> list[Any]:
        services = [
            await self.bus.serve(subjects.BACKTEST_GET, QUEUE, strategy_pb2.GetBacktestRequest, self.get),
            await self.bus.serve(
                subjects.BACKTEST_COMPARE, QUEUE, strategy_pb2.CompareBacktestToLiveRequest, self.compare
            ),
            await self.bus.serve(subjects.BACKTEST_LIST, QUEUE, strategy_pb2.ListBacktestsRequest, self.list),
        ]
        # Only a replica that records the market runs backtests: the queue group hands each run to
        # one member, and one without a history would answer "no market history" for any range.
        if self.history.directory is not None:
            services.append(
                await self.bus.serve(
                    subjects.BACKTEST_RUN, QUEUE, strategy_pb2.Backtest, self.run, concurrency=2
                )
            )
        return services

    async def run(self, request: strategy_pb2.Backtest, context: RequestContext) -> strategy_pb2.Backtest:
        tenant = _tenant(context)
        async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
            stored = await store.get_backtest(conn, request.backtest_id)
        if stored is not None:
            return strategy_pb2.Backtest.FromString(bytes(stored["payload"]))
        span = request.block_range
        chain = next((c for c in self.chains() if c.chain_id == span.chain_id), None)
        if chain is None:
            raise ServiceError(400, f"block_range.chain_id: chain {span.chain_id} is not configured")
        try:
            found = await self.bus.request(
                subjects.STRATEGY_GET,
                strategy_pb2.GetStrategyRequest(
                    strategy_id=request.strategy_id, version=request.strategy_version
                ),
                strategy_pb2.GetStrategyResponse,
                tenant_id=tenant,
            )
        except RemoteError as exc:
            raise ServiceError(exc.code, exc.message) from exc
        strategy = found.strategy
        spec = StrategySpec.from_config(
            strategy.config, strategy_id=strategy.strategy_id, tenant_id=tenant, version=strategy.version
        )
        if spec.base_token.chain_id != span.chain_id:
            raise ServiceError(
                400, f"block_range.chain_id: the strategy trades on chain {spec.base_token.chain_id}"
            )
        settings = Settings.of(request.assumptions)
        created_at = datetime.now(UTC)
        if self.history.needs_read_back(span.chain_id, span.from_block):
            await self.history.read_back(
                span.chain_id,
                read_back(self.bus, "CHAIN", f"chain.{span.chain_id}.block", events_pb2.MarketUpdate),
            )
        await self.history.caught_up(span.chain_id, span.to_block, HISTORY_WAIT_S)
        self.history.flush(span.chain_id)
        result, blocks = await asyncio.to_thread(
            run_replay,
            spec,
            chain,
            self.history.files(span.chain_id),
            span.from_block,
            span.to_block,
            settings,
        )
        if result.blocks_replayed == 0:
            done = strategy_pb2.Backtest(
                backtest_id=request.backtest_id,
                strategy_id=request.strategy_id,
                strategy_version=request.strategy_version,
                status=strategy_pb2.BACKTEST_STATUS_FAILED,
                block_range=span,
                assumptions=request.assumptions,
                created_at=ts(created_at),
                completed_at=ts(datetime.now(UTC)),
                error=f"no market history recorded for blocks {span.from_block}-{span.to_block}",
            )
            executions: list[dict[str, Any]] = []
        else:
            token = common_pb2.Token(
                chain_id=span.chain_id,
                address=spec.base_token.address,
                symbol=next((t.symbol for t in chain.tokens if t.address == spec.base_token.address), ""),
                decimals=next((t.decimals for t in chain.tokens if t.address == spec.base_token.address), 18),
            )
            done, executions = backtest_message(request, result, blocks, settings, token, created_at)
        async with tenant_transaction(self.pool, tenant) as conn:
            await store.insert_backtest(
                conn,
                tenant,
                request.backtest_id,
                request.strategy_id,
                (span.chain_id, span.from_block, span.to_block),
                created_at,
                done.SerializeToString(),
                json.dumps(executions),
            )
            stored = await store.get_backtest(conn, request.backtest_id)
        assert stored is not None
        return strategy_pb2.Backtest.FromString(bytes(stored["payload"]))

    async def _stored(self, tenant: str, backtest_id: str) -> asyncpg.Record:
        async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
            row = await store.get_backtest(conn, backtest_id)
        if row is None:
            raise ServiceError(404, f"backtest {backtest_id} not found")
        return row

    async def get(
        self, request: strategy_pb2.GetBacktestRequest, context: RequestContext
    ) -> strategy_pb2.GetBacktestResponse:
        row = await self._stored(_tenant(context), request.backtest_id)
        return strategy_pb2.GetBacktestResponse(
            backtest=strategy_pb2.Backtest.FromString(bytes(row["payload"]))
        )

    async def list(
        self, request: strategy_pb2.ListBacktestsRequest, context: RequestContext
    ) -> strategy_pb2.ListBacktestsResponse:
        """Newest first, in keyset pages; a list carries no trades or PnL series (GetBacktest does)."""
        tenant = _tenant(context)
        if not 0 <= request.page.page_size <= MAX_PAGE_SIZE:
            raise ServiceError(400, f"page.page_size: must be 0-{MAX_PAGE_SIZE}")
        size = request.page.page_size or DEFAULT_PAGE_SIZE
        after = _list_cursor(request)
        async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
            rows = await store.list_backtests(conn, request.strategy_id, after, size + 1)
        page, token = split_page(
            rows, size, lambda r: (request.strategy_id, r["created_at"].isoformat(), r["backtest_id"])
        )
        response = strategy_pb2.ListBacktestsResponse()
        for row in page:
            backtest = response.backtests.add()
            backtest.ParseFromString(bytes(row["payload"]))
            backtest.ClearField("trades")
            backtest.ClearField("pnl_series")
        response.page.next_page_token = token
        return response

    async def compare(
        self, request: strategy_pb2.CompareBacktestToLiveRequest, context: RequestContext
    ) -> strategy_pb2.CompareBacktestToLiveResponse:
        tenant = _tenant(context)
        row = await self._stored(tenant, request.backtest_id)
        backtest = strategy_pb2.Backtest.FromString(bytes(row["payload"]))
        if backtest.status != strategy_pb2.BACKTEST_STATUS_SUCCEEDED:
            raise ServiceError(412, f"backtest {request.backtest_id} did not succeed")
        async with tenant_transaction(self.pool, tenant, readonly=True) as conn:
            live_rows = await store.live_executions(
                conn, row["strategy_id"], row["chain_id"], row["from_block"], row["to_block"]
            )
        start = end = None
        if request.HasField("live_timeframe") and request.live_timeframe.HasField("range"):
            start = request.live_timeframe.range.start.ToDatetime(tzinfo=UTC)
            end = request.live_timeframe.range.end.ToDatetime(tzinfo=UTC)
        simulated = [
            reports.Trade(datetime.fromisoformat(e["time"]), int(e["net_profit"]), 0)
            for e in json.loads(row["executions"])
        ]
        live = [
            reports.Trade(
                r["occurred_at"], int(r["realized_profit"] or 0), int(r["gas_cost"]), row["strategy_id"]
            )
            for r in live_rows
            if (start is None or r["occurred_at"] >= start) and (end is None or r["occurred_at"] < end)
        ]
        sim_perf, live_perf = reports.performance(simulated), reports.performance(live)
        days = sorted({_day(t.at) for t in (*simulated, *live)})
        sim_daily = {d: sum(t.pnl for t in simulated if _day(t.at) == d) for d in days}
        live_daily = {d: sum(t.pnl for t in live if _day(t.at) == d) for d in days}
        included = sum(1 for r in live_rows if r["status"] == 2)
        token = backtest.metrics.denomination
        return strategy_pb2.CompareBacktestToLiveResponse(
            strategy_id=row["strategy_id"],
            backtest_metrics=backtest.metrics,
            live_metrics=metrics_proto(token, live_perf),
            pnl_difference=str(live_perf.total_pnl - sim_perf.total_pnl),
            capture_ratio=included / len(simulated) if simulated else 0.0,
            daily_pnl_correlation=correlation([sim_daily[d] for d in days], [live_daily[d] for d in days]),
            daily=[
                strategy_pb2.ComparisonPoint(
                    time=ts(d), backtest_pnl=str(sim_daily[d]), live_pnl=str(live_daily[d])
                )
                for d in days
            ],
        )


def _day(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def _list_cursor(request: strategy_pb2.ListBacktestsRequest) -> Keyset | None:
    """The (created_at, backtest_id) a page token continues after; it is only good for the filter
    it was issued with."""
    try:
        after = page_after(request.page.page_token, request.strategy_id)
    except InvalidArgument as exc:
        (violation,) = exc.violations
        raise ServiceError(400, f"{violation.field}: {violation.description}") from None
    if after is not None and after.at.tzinfo is None:  # the tokens this API issues carry their offset
        raise ServiceError(400, f"page.page_token: {NOT_OURS}")
    return after


def _tenant(context: RequestContext) -> str:
    if not context.tenant_id:
        raise ServiceError(400, "tenant_id: a tenant-id header is required")
    return context.tenant_id
