"""The replay of one backtest, pure CPU work run off the event loop: the strategy version's own
plugin over the recorded history (`domain.backtest.replay` and its documented assumptions, mapped
from the request in `Settings`), and the Backtest message built from its result (trades, metrics,
PnL series). `mevaas_analytics.backtests` serves the requests around it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_analytics.domain.backtest import (
    Assumptions,
    BacktestResult,
    BlockChanges,
    PoolInfo,
    load_history,
    replay,
)
from mevaas_analytics.portfolio import metrics_proto
from mevaas_chain.pool_index import Pool
from mevaas_chain.registry import ChainConfig
from mevaas_core.bus import ServiceError
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec
from mevaas_strategies.plugins import Candidate, plugin_for

DEFAULT_PRIORITY_FEE_WEI = 1_000_000_000
MAX_TRADES = 1000


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
        lambda c: [pool for _, pool in c.action.pools()],
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
        pools = [pool for _, pool in c.action.pools()]
        executions.append(
            {
                "detected_block": detected,
                "block": executed_in,
                "pools": pools,
                "amount_in": str(c.action.amount_in),
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
                    amount_in=str(c.action.amount_in),
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
