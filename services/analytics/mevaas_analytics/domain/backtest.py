"""Market history in columnar files and the replay of a strategy plugin over it.

Recording: every MarketUpdate's pool states become rows (block, pool index, reserve0, reserve1) of
a numpy `.npz` file per chain and block range; reserves (uint112 on Uniswap V2) are split into two
uint64 limbs so the file holds exact integers without pickling. Pool metadata (address, dex,
tokens, fee) is a separate small table of the same file.

Replay: blocks are applied in order; after each block the plugin's `on_market_update(market,
changed)` is called with the pools that changed (None on the first block), exactly as the live
engine calls it. Assumptions (stated in every result):

* Inclusion: a candidate found after block N executes in block N+1 at the reserves of block N,
  before any other transaction of N+1 (what a private bundle at the top of the block achieves);
  nothing is reverted or dropped.
* Gas: the candidate's own gas estimate at its gas price (`Candidate.gas_cost`, in profit token
  units) is paid; realised profit = expected profit - gas cost.
* Competition: at most one execution per pool per block (the best net candidate wins the pool),
  and the tenant wins a fraction `win_share` (default 1) of them, chosen deterministically by
  candidate order so a replay is reproducible.
* Only candidates with net profit >= `min_net_profit` execute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mevaas_analytics.domain import reports

MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class PoolInfo:
    address: str
    dex: str
    token0: str
    token1: str
    fee_bps: int


@dataclass
class BlockChanges:
    block_number: int
    timestamp: int
    # pool address -> (reserve0, reserve1)
    reserves: dict[str, tuple[int, int]] = field(default_factory=dict)
    # EIP-1559 base fee of the block, wei (0 in files recorded without it).
    base_fee: int = 0


class MarketRecorder:
    """Collects pool states per block of one chain; `write` stores them as one `.npz` file."""

    def __init__(self, chain_id: int) -> None:
        self.chain_id = chain_id
        self.pools: dict[str, PoolInfo] = {}
        self.blocks: dict[int, BlockChanges] = {}

    def add(
        self,
        block_number: int,
        timestamp: int,
        pools: Iterable[tuple[PoolInfo, int, int]],
        base_fee: int = 0,
    ) -> None:
        block = self.blocks.setdefault(block_number, BlockChanges(block_number, timestamp))
        block.base_fee = base_fee
        for info, reserve0, reserve1 in pools:
            address = info.address.lower()
            self.pools.setdefault(address, info)
            block.reserves[address] = (reserve0, reserve1)

    def write(self, directory: Path) -> Path | None:
        if not self.blocks:
            return None
        index = {address: i for i, address in enumerate(self.pools)}
        rows = [
            (b.block_number, index[a], r0, r1)
            for b in sorted(self.blocks.values(), key=lambda b: b.block_number)
            for a, (r0, r1) in b.reserves.items()
        ]
        first, last = min(self.blocks), max(self.blocks)
        path = directory / f"market-{self.chain_id}-{first:012d}-{last:012d}.npz"
        directory.mkdir(parents=True, exist_ok=True)
        infos = list(self.pools.values())
        np.savez_compressed(
            path,
            block=np.array([r[0] for r in rows], dtype=np.uint64),
            pool=np.array([r[1] for r in rows], dtype=np.uint32),
            reserve0_hi=np.array([r[2] >> 64 for r in rows], dtype=np.uint64),
            reserve0_lo=np.array([r[2] & MASK64 for r in rows], dtype=np.uint64),
            reserve1_hi=np.array([r[3] >> 64 for r in rows], dtype=np.uint64),
            reserve1_lo=np.array([r[3] & MASK64 for r in rows], dtype=np.uint64),
            block_numbers=np.array(sorted(self.blocks), dtype=np.uint64),
            block_times=np.array([self.blocks[b].timestamp for b in sorted(self.blocks)], dtype=np.int64),
            block_base_fees=np.array([self.blocks[b].base_fee for b in sorted(self.blocks)], dtype=np.uint64),
            pool_address=np.array([p.address.lower() for p in infos]),
            pool_dex=np.array([p.dex for p in infos]),
            pool_token0=np.array([p.token0.lower() for p in infos]),
            pool_token1=np.array([p.token1.lower() for p in infos]),
            pool_fee_bps=np.array([p.fee_bps for p in infos], dtype=np.uint32),
        )
        self.blocks.clear()
        return path


def load_history(
    paths: Sequence[Path], from_block: int, to_block: int
) -> tuple[dict[str, PoolInfo], list[BlockChanges]]:
    """Blocks from_block..to_block (inclusive) of the recorded files, in block order."""
    pools: dict[str, PoolInfo] = {}
    blocks: dict[int, BlockChanges] = {}
    for path in paths:
        with np.load(path) as data:
            infos = [
                PoolInfo(str(a), str(d), str(t0), str(t1), int(f))
                for a, d, t0, t1, f in zip(
                    data["pool_address"],
                    data["pool_dex"],
                    data["pool_token0"],
                    data["pool_token1"],
                    data["pool_fee_bps"],
                    strict=True,
                )
            ]
            for info in infos:
                pools.setdefault(info.address, info)
            numbers = data["block_numbers"].tolist()
            times = dict(zip(numbers, data["block_times"].tolist(), strict=True))
            fees = (
                dict(zip(numbers, data["block_base_fees"].tolist(), strict=True))
                if "block_base_fees" in data.files
                else {}
            )
            r0 = [
                (hi << 64) | lo
                for hi, lo in zip(data["reserve0_hi"].tolist(), data["reserve0_lo"].tolist(), strict=True)
            ]
            r1 = [
                (hi << 64) | lo
                for hi, lo in zip(data["reserve1_hi"].tolist(), data["reserve1_lo"].tolist(), strict=True)
            ]
            # Blocks without pool changes still count (the plugin sees them, with nothing changed).
            for block in numbers:
                if from_block <= block <= to_block:
                    blocks.setdefault(block, BlockChanges(block, times[block], base_fee=fees.get(block, 0)))
            for block, pool, a, b in zip(data["block"].tolist(), data["pool"].tolist(), r0, r1, strict=True):
                if from_block <= block <= to_block:
                    changes = blocks.setdefault(
                        block, BlockChanges(block, times[block], base_fee=fees.get(block, 0))
                    )
                    changes.reserves[infos[pool].address] = (a, b)
    return pools, [blocks[b] for b in sorted(blocks)]


class ReplayCandidate(Protocol):
    """What the replay needs of a plugin's candidate (`mevaas_strategies` Candidate satisfies it)."""

    @property
    def net_profit(self) -> int: ...

    @property
    def route_key(self) -> str: ...

    @property
    def gas_cost(self) -> int: ...


class ReplayPlugin(Protocol):
    def on_market_update(
        self, market: Any, changed: Mapping[int, frozenset[str]] | None
    ) -> Sequence[Any]: ...


# Builds the plugin's market view from the replayed pool reserves (address -> (info, r0, r1)).
MarketBuilder = Callable[[int, int, Mapping[str, tuple[PoolInfo, int, int]]], Any]
PoolsOf = Callable[[Any], Iterable[str]]


@dataclass(frozen=True)
class Assumptions:
    win_share: float = 1.0
    min_net_profit: int = 1

    def describe(self) -> str:
        return (
            "inclusion: next block at the detecting block's reserves, top of block, never reverted; "
            "gas: candidate gas_cost; competition: one execution per pool per block, "
            f"win share {self.win_share}; min net profit {self.min_net_profit}"
        )


@dataclass
class BacktestResult:
    executed: list[tuple[int, str, int]]  # (execution block, route key, net profit)
    pnl_by_block: list[tuple[int, int, int]]  # (block, pnl, cumulative)
    performance: reports.Performance
    pool_updates: int
    assumptions: str
    # (execution block, the plugin's candidate) of each execution, in `executed` order.
    candidates: list[tuple[int, Any]] = field(default_factory=list)
    opportunities_found: int = 0
    blocks_replayed: int = 0


def replay(
    plugin: ReplayPlugin,
    chain_id: int,
    pools: Mapping[str, PoolInfo],
    blocks: Sequence[BlockChanges],
    build_market: MarketBuilder,
    pools_of: PoolsOf,
    assumptions: Assumptions = Assumptions(),
    *,
    incremental: bool = True,
    evaluate_from: int = 0,
) -> BacktestResult:
    """Blocks before `evaluate_from` only build the pool state (history records changed pools
    only, so a range's first block needs everything recorded before it); the plugin first sees the
    block at `evaluate_from` with everything changed."""
    state: dict[str, tuple[PoolInfo, int, int]] = {}
    executed: list[tuple[int, str, int]] = []
    chosen: list[tuple[int, Any]] = []
    found = evaluated = 0
    series: list[tuple[int, int, int]] = []
    trades: list[reports.Trade] = []
    cumulative = updates = 0
    won = lost = 0
    for block in blocks:
        for address, (r0, r1) in block.reserves.items():
            state[address] = (pools[address], r0, r1)
        if block.block_number < evaluate_from:
            continue
        updates += len(block.reserves)
        changed = {chain_id: frozenset(block.reserves)} if incremental and evaluated else None
        evaluated += 1
        candidates = plugin.on_market_update(build_market(chain_id, block.block_number, state), changed)
        found += len(candidates)
        taken: set[str] = set()
        pnl = 0
        at = datetime.fromtimestamp(block.timestamp, UTC) + timedelta(seconds=12)
        for candidate in sorted(candidates, key=lambda c: (-c.net_profit, c.route_key)):
            used = set(pools_of(candidate))
            if candidate.net_profit < assumptions.min_net_profit or used & taken:
                continue
            taken |= used
            # Deterministic share of the wins: take this one only if the running share stays within win_share.
            if won + 1 > assumptions.win_share * (won + lost + 1):
                lost += 1
                continue
            won += 1
            pnl += candidate.net_profit
            executed.append((block.block_number + 1, candidate.route_key, candidate.net_profit))
            chosen.append((block.block_number + 1, candidate))
            trades.append(reports.Trade(at, candidate.net_profit, 0))
        cumulative += pnl
        series.append((block.block_number, pnl, cumulative))
    return BacktestResult(
        executed,
        series,
        reports.performance(trades),
        updates,
        assumptions.describe(),
        chosen,
        found,
        evaluated,
    )


def compare_with_live(backtest: BacktestResult, live: Iterable[tuple[int, str, int]]) -> dict[str, Any]:
    """Backtest vs live over the same blocks: matched executions (same block and route) and the
    profit gap; `live` holds (block, route key, realised net profit) of the strategy's executions."""
    expected = {(b, r): p for b, r, p in backtest.executed}
    actual = {(b, r): p for b, r, p in live}
    matched = expected.keys() & actual.keys()
    return {
        "matched": len(matched),
        "backtest_only": sorted(expected.keys() - actual.keys()),
        "live_only": sorted(actual.keys() - expected.keys()),
        "backtest_profit": sum(expected.values()),
        "live_profit": sum(actual.values()),
        "profit_gap": sum(expected.values()) - sum(actual.values()),
    }
