"""Columnar market history round trip and the replay engine with a simple test plugin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mevaas_analytics.domain.backtest import (
    Assumptions,
    MarketRecorder,
    PoolInfo,
    compare_with_live,
    load_history,
    replay,
)

A, B = "0x" + "0a" * 20, "0x" + "0b" * 20
P1 = PoolInfo("0x" + "01" * 20, "uniswap_v2", A, B, 30)
P2 = PoolInfo("0x" + "02" * 20, "sushiswap", A, B, 30)
BIG = 3 * 2**100  # beyond uint64: stored as two limbs


@dataclass(frozen=True)
class Spread:
    """Candidate of the test plugin: profit = reserve1 difference of the two pools minus gas."""

    pools: tuple[str, str]
    gross: int
    gas_cost: int

    @property
    def net_profit(self) -> int:
        return self.gross - self.gas_cost

    @property
    def route_key(self) -> str:
        return ">".join(self.pools)


class SpreadPlugin:
    """Pure and incremental like the real plugins: only re-evaluates when a pool changed."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def on_market_update(self, market: Mapping[str, tuple[PoolInfo, int, int]], changed: Any) -> list[Spread]:
        self.calls.append(changed)
        if P1.address not in market or P2.address not in market:
            return []
        (_, _, b1), (_, _, b2) = market[P1.address], market[P2.address]
        low, high = sorted([(b1, P1.address), (b2, P2.address)])
        return [Spread((low[1], high[1]), high[0] - low[0], 5)]


def record(tmp_path: Path) -> Path:
    recorder = MarketRecorder(31337)
    recorder.add(10, 1_700_000_000, [(P1, BIG, 1000), (P2, BIG, 1000)])
    recorder.add(11, 1_700_000_012, [(P1, BIG, 1100)])  # spread 100 -> net 95
    recorder.add(12, 1_700_000_024, [(P2, BIG + 1, 1103)])  # spread 3 -> net -2, skipped
    recorder.add(13, 1_700_000_036, [(P1, BIG, 1003)])  # 1103 vs 1003 -> net 95
    path = recorder.write(tmp_path)
    assert path is not None
    return path


def market(
    _chain: int, _block: int, state: Mapping[str, tuple[PoolInfo, int, int]]
) -> Mapping[str, tuple[PoolInfo, int, int]]:
    return dict(state)


def pools_of(candidate: Spread) -> tuple[str, str]:
    return candidate.pools


def test_history_round_trips_exact_reserves(tmp_path: Path) -> None:
    pools, blocks = load_history([record(tmp_path)], 11, 12)
    assert pools[P1.address] == P1
    assert [(b.block_number, b.reserves) for b in blocks] == [
        (11, {P1.address: (BIG, 1100)}),
        (12, {P2.address: (BIG + 1, 1103)}),
    ]


def test_replay_executes_profitable_candidates_next_block(tmp_path: Path) -> None:
    pools, blocks = load_history([record(tmp_path)], 0, 100)
    plugin = SpreadPlugin()
    result = replay(plugin, 31337, pools, blocks, market, pools_of)
    assert result.executed == [
        (12, f"{P2.address}>{P1.address}", 95),
        (14, f"{P1.address}>{P2.address}", 95),
    ]
    assert result.pnl_by_block == [(10, 0, 0), (11, 95, 95), (12, 0, 95), (13, 95, 190)]
    assert result.performance.total_pnl == 190 and result.performance.trade_count == 2
    assert result.pool_updates == 5
    # First block evaluates everything, later blocks only what changed.
    assert plugin.calls[0] is None and plugin.calls[2] == {31337: frozenset({P2.address})}
    assert "next block" in result.assumptions


def test_competition_share_and_comparison_with_live(tmp_path: Path) -> None:
    pools, blocks = load_history([record(tmp_path)], 0, 100)
    half = replay(SpreadPlugin(), 31337, pools, blocks, market, pools_of, Assumptions(win_share=0.5))
    assert [e[0] for e in half.executed] == [14]  # the first contested win goes to a competitor
    full = replay(SpreadPlugin(), 31337, pools, blocks, market, pools_of)
    live = [(12, f"{P2.address}>{P1.address}", 90)]
    comparison = compare_with_live(full, live)
    assert comparison["matched"] == 1
    assert comparison["backtest_only"] == [(14, f"{P1.address}>{P2.address}")]
    assert comparison["profit_gap"] == 190 - 90
