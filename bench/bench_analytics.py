"""Backtest replay speed in pool updates per second: the incremental replay (the plugin re-evaluates
only cycles touching pools changed in the block) against a naive baseline that re-evaluates every
two-pool cycle from scratch after every block. Same synthetic history, same results checked."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mevaas_analytics.domain.backtest import BlockChanges, PoolInfo, replay

CHAIN = 31337
TOKENS = [f"0x{i:040x}" for i in range(1, 61)]


@dataclass(frozen=True)
class Cycle:
    pools: tuple[str, str]
    net_profit: int
    gas_cost: int = 0

    @property
    def route_key(self) -> str:
        return ">".join(self.pools)


def out_amount(amount: int, reserve_in: int, reserve_out: int) -> int:
    amount_fee = amount * 997
    return amount_fee * reserve_out // (reserve_in * 1000 + amount_fee)


class CyclePlugin:
    """Two-pool cycles between pools of the same token pair, 1 unit-of-0.1%-reserve trade size."""

    def __init__(self, pools: Mapping[str, PoolInfo]) -> None:
        by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
        for info in pools.values():
            by_pair[(info.token0, info.token1)].append(info.address)
        self.cycles = [(a, b) for group in by_pair.values() for a in group for b in group if a != b]
        self.touching: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for cycle in self.cycles:
            for pool in cycle:
                self.touching[pool].append(cycle)
        self.best: dict[tuple[str, str], Cycle] = {}

    def _evaluate(self, market: Mapping[str, tuple[PoolInfo, int, int]], cycle: tuple[str, str]) -> None:
        (_, a0, a1), (_, b0, b1) = market[cycle[0]], market[cycle[1]]
        amount = a0 // 1000
        back = out_amount(out_amount(amount, a0, a1), b1, b0)
        if back > amount:
            self.best[cycle] = Cycle(cycle, back - amount)
        else:
            self.best.pop(cycle, None)

    def on_market_update(self, market: Any, changed: Any) -> list[Cycle]:
        targets = (
            self.cycles if changed is None else {c for pool in changed[CHAIN] for c in self.touching[pool]}
        )
        for cycle in targets:
            self._evaluate(market, cycle)
        return list(self.best.values())


def history(pool_count: int, blocks: int, per_block: int) -> tuple[dict[str, PoolInfo], list[BlockChanges]]:
    rng = random.Random(7)
    pools = {}
    for i in range(pool_count):
        t0, t1 = TOKENS[i % 30], TOKENS[30 + i % 30]
        address = f"0x{0xAA00 + i:040x}"
        pools[address] = PoolInfo(address, "dex", t0, t1, 30)
    addresses = list(pools)
    first = BlockChanges(1, 1_700_000_000, {a: (10**21, 2 * 10**21) for a in addresses})
    out = [first]
    for n in range(2, blocks + 1):
        changes = {}
        for a in rng.sample(addresses, per_block):
            changes[a] = (
                10**21 + rng.randrange(-(10**19), 10**19),
                2 * 10**21 + rng.randrange(-(10**19), 10**19),
            )
        out.append(BlockChanges(n, 1_700_000_000 + 12 * n, changes))
    return pools, out


def market(
    _chain: int, _block: int, state: Mapping[str, tuple[PoolInfo, int, int]]
) -> Mapping[str, tuple[PoolInfo, int, int]]:
    return state


def run(incremental: bool, pools: dict[str, PoolInfo], blocks: list[BlockChanges]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = replay(
        CyclePlugin(pools), CHAIN, pools, blocks, market, lambda c: c.pools, incremental=incremental
    )
    return time.perf_counter() - start, result


def main() -> None:
    pools, blocks = history(pool_count=300, blocks=3000, per_block=4)
    updates = sum(len(b.reserves) for b in blocks)
    fast_s, fast = run(True, pools, blocks)
    slow_s, slow = run(False, pools, blocks)
    assert fast.executed == slow.executed, "incremental replay must equal the naive one"
    print(
        f"backtest replay: {len(pools)} pools, {len(blocks)} blocks, {updates} pool updates, {len(fast.executed)} executions"
    )
    print(f"  incremental: {updates / fast_s:,.0f} pool updates/s ({fast_s:.3f} s)")
    print(f"  naive (every cycle per block): {updates / slow_s:,.0f} pool updates/s ({slow_s:.3f} s)")
    print(f"  ratio: {slow_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
