"""Backtests for the strategy service (subjects and error codes in `mevaas_strategy.backtests`).

A backtest replays the strategy version's own plugin (`mevaas_strategy.domain`, the code the live
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
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from eth_utils.address import to_checksum_address
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_analytics import store
from mevaas_analytics.domain import reports
from mevaas_analytics.domain.backtest import (
    Assumptions,
    BacktestResult,
    BlockChanges,
    MarketRecorder,
    PoolInfo,
    load_history,
    replay,
)
from mevaas_analytics.portfolio import metrics_proto
from mevaas_chain.pool_index import Pool
from mevaas_chain.registry import ChainConfig, ChainRegistry
from mevaas_core.bus import Bus, RemoteError, RequestContext, ServiceError
from mevaas_core.db import tenant_transaction
from mevaas_strategy.backtests import BACKTEST_SUBJECT, COMPARE_SUBJECT, GET_BACKTEST_SUBJECT
from mevaas_strategy.domain.market import ChainMarket, MarketView
from mevaas_strategy.domain.model import StrategySpec
from mevaas_strategy.domain.plugins import Candidate, plugin_for
from mevaas_strategy.events import LOOKUP_SUBJECT

DEFAULT_PRIORITY_FEE_WEI = 1_000_000_000
MAX_TRADES = 1000
QUEUE = "analytics-backtests"


class MarketHistory:
    """Pool states per block and chain, kept in memory and written to `.npz` files every
    `blocks_per_file` blocks (and on `flush`, which a backtest calls to see the latest blocks)."""

    def __init__(self, directory: Path | None, blocks_per_file: int) -> None:
        self.directory = directory
        self.blocks_per_file = blocks_per_file
        self.recorders: dict[int, MarketRecorder] = {}

    def record(self, update: events_pb2.MarketUpdate) -> None:
        if self.directory is None:
            return
        recorder = self.recorders.setdefault(update.chain_id, MarketRecorder(update.chain_id))
        recorder.add(
            update.block_number,
            update.block_timestamp.seconds,
            (
                (
                    PoolInfo(p.address, p.dex, p.token0, p.token1, p.fee_bps),
                    int(p.reserve0 or 0),
                    int(p.reserve1 or 0),
                )
                for p in update.pools
            ),
            base_fee=int(update.base_fee_per_gas or 0),
        )
        if len(recorder.blocks) >= self.blocks_per_file:
            recorder.write(self.directory / str(update.chain_id))

    def flush(self, chain_id: int | None = None) -> None:
        if self.directory is None:
            return
        for chain, recorder in self.recorders.items():
            if chain_id is None or chain == chain_id:
                recorder.write(self.directory / str(chain))

    def files(self, chain_id: int) -> list[Path]:
        if self.directory is None:
            return []
        return sorted((self.directory / str(chain_id)).glob(f"market-{chain_id}-*.npz"))


class ReplayMarket:
    """The plugin's MarketView of a replayed block, built like the live engine's: pools (keyed by
    checksummed address), token symbols and decimals from the chain registry, the block's base fee."""

    def __init__(
        self, chain: ChainConfig, base_fees: Mapping[int, int], priority_fee: int, gas_price: int | None
    ) -> None:
        self.base_fees = base_fees
        self.gas_price = gas_price
        self.pools: dict[str, Pool] = {}
        self.seen: dict[str, tuple[PoolInfo, int, int]] = {}
        self.market = ChainMarket(
            chain_id=chain.chain_id,
            block_number=0,
            block_hash="",
            base_fee=0,
            priority_fee=0 if gas_price is not None else priority_fee,
            pools=self.pools,
            wrapped_native=chain.wrapped_native,
            symbols={t.address: t.symbol for t in chain.tokens},
            decimals={t.address: t.decimals for t in chain.tokens},
            block_time_s=chain.block_time_s or 12.0,
        )
        self.view = MarketView(chains={chain.chain_id: self.market})

    def __call__(
        self, chain_id: int, block_number: int, state: Mapping[str, tuple[PoolInfo, int, int]]
    ) -> MarketView:
        grown = False
        for address, entry in state.items():
            # The replay replaces an entry when the pool changes: rebuild only those.
            if self.seen.get(address) is entry:
                continue
            grown = grown or address not in self.pools
            self.seen[address] = entry
            info, reserve0, reserve1 = entry
            self.pools[address] = Pool(
                address, info.dex, info.token0, info.token1, info.fee_bps, reserve0, reserve1
            )
        if grown:
            self.market.epoch += 1
            self.view.memo.clear()
        self.view.per_block.clear()
        self.market.block_number = block_number
        self.market.base_fee = (
            self.gas_price if self.gas_price is not None else self.base_fees.get(block_number, 0)
        )
        return self.view


@dataclass(frozen=True)
class Settings:
    win_share: float
    latency_blocks: int
    priority_fee: int
    gas_price: int | None

    @classmethod
    def of(cls, a: strategy_pb2.BacktestAssumptions) -> Settings:
        inclusion = Decimal(a.inclusion_probability_percent.value or "100")
        return cls(
            win_share=float(inclusion / 100),
            latency_blocks=a.latency_blocks,
            priority_fee=int(a.priority_fee_wei) if a.priority_fee_wei else DEFAULT_PRIORITY_FEE_WEI,
            gas_price=int(a.gas_price_wei) if a.gas_price_wei else None,
        )


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def run_replay(
    spec: StrategySpec,
    chain: ChainConfig,
    paths: Sequence[Path],
    from_block: int,
    to_block: int,
    settings: Settings,
) -> tuple[BacktestResult, list[BlockChanges]]:
    """Pure CPU work (run off the event loop): load the history up to `to_block`, replay the range."""
    cls = plugin_for(spec.type_name if spec.type_name != "custom" else spec.plugin)
    if cls is None:
        raise ServiceError(412, f"no strategy plugin for type {spec.type_name or spec.type}")
    recorded, lowered = load_history(paths, 0, to_block)
    # The plugin knows pools and tokens by checksummed address (as the live pool index keys them),
    # also in the changed-pool sets the replay hands it.
    address: dict[str, str] = {a: str(to_checksum_address(a)) for a in recorded}
    pools = {
        address[a]: PoolInfo(
            address[a], p.dex, to_checksum_address(p.token0), to_checksum_address(p.token1), p.fee_bps
        )
        for a, p in recorded.items()
    }
    blocks = [
        BlockChanges(b.block_number, b.timestamp, {address[a]: r for a, r in b.reserves.items()}, b.base_fee)
        for b in lowered
    ]
    market = ReplayMarket(
        chain, {b.block_number: b.base_fee for b in blocks}, settings.priority_fee, settings.gas_price
    )
    result = replay(
        cls(spec),
        chain.chain_id,
        pools,
        blocks,
        market,
        lambda c: [h.pool.lower() for h in c.hops],
        Assumptions(win_share=settings.win_share, min_net_profit=1),
        evaluate_from=from_block,
    )
    return result, blocks


def backtest_message(
    request: strategy_pb2.Backtest,
    result: BacktestResult,
    blocks: Sequence[BlockChanges],
    settings: Settings,
    token: common_pb2.Token,
    created_at: datetime,
) -> tuple[strategy_pb2.Backtest, list[dict[str, Any]]]:
    times = {b.block_number: b.timestamp for b in blocks}
    span = request.block_range
    executions: list[dict[str, Any]] = []
    trades: list[strategy_pb2.BacktestTrade] = []
    for block, candidate in result.candidates:
        c: Candidate = candidate
        detected = block - 1
        at = datetime.fromtimestamp(times.get(detected, 0), UTC) + timedelta(seconds=12)
        executed_in = block + settings.latency_blocks
        pools = [h.pool for h in c.hops]
        executions.append(
            {
                "detected_block": detected,
                "block": executed_in,
                "pools": pools,
                "amount_in": str(c.amount_in),
                "expected_profit": str(c.expected_profit),
                "net_profit": str(c.net_profit),
                "time": at.isoformat(),
            }
        )
        if len(trades) < MAX_TRADES:
            trades.append(
                strategy_pb2.BacktestTrade(
                    block_number=executed_in,
                    time=ts(at),
                    chain_id=c.chain_id,
                    amount_in=str(c.amount_in),
                    expected_profit=str(c.expected_profit),
                    gas_cost_wei=str(c.gas_estimate * c.gas_price),
                    net_profit=str(c.net_profit),
                    included=True,
                    pools=pools,
                )
            )
    trades_by_block = Counter(e["detected_block"] for e in executions)
    series = [
        common_pb2.PnlPoint(
            time=ts(datetime.fromtimestamp(times.get(block, 0), UTC)),
            block_number=block,
            pnl=str(pnl),
            cumulative_pnl=str(cumulative),
            trade_count=trades_by_block[block],
        )
        for block, pnl, cumulative in result.pnl_by_block
        if pnl
    ]
    done = strategy_pb2.Backtest(
        backtest_id=request.backtest_id,
        strategy_id=request.strategy_id,
        strategy_version=request.strategy_version,
        status=strategy_pb2.BACKTEST_STATUS_SUCCEEDED,
        block_range=span,
        assumptions=request.assumptions,
        metrics=metrics_proto(token, result.performance),
        pnl_series=series,
        opportunities_found=result.opportunities_found,
        blocks_replayed=result.blocks_replayed,
        trades=trades,
        created_at=ts(created_at),
        completed_at=ts(datetime.now(UTC)),
    )
    return done, executions


def correlation(xs: Sequence[int], ys: Sequence[int]) -> float:
    """Pearson correlation (a statistic, floats are fine); NaN when undefined."""
    n = len(xs)
    if n < 2:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


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
        return [
            await self.bus.serve(BACKTEST_SUBJECT, QUEUE, strategy_pb2.Backtest, self.run, concurrency=2),
            await self.bus.serve(GET_BACKTEST_SUBJECT, QUEUE, strategy_pb2.GetBacktestRequest, self.get),
            await self.bus.serve(
                COMPARE_SUBJECT, QUEUE, strategy_pb2.CompareBacktestToLiveRequest, self.compare
            ),
        ]

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
                LOOKUP_SUBJECT,
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


def _tenant(context: RequestContext) -> str:
    if not context.tenant_id:
        raise ServiceError(400, "tenant_id: a tenant-id header is required")
    return context.tenant_id
