"""Cycle scan benchmark: vectorised screen + exact verification vs a naive per-cycle exact loop.

Synthetic market: 10,000 Uniswap V2 pools over 2,000 tokens (deterministic seed), every 2- and 3-hop
cycle through WETH, USDC and WBTC. The naive loop sizes every cycle with exact integers (closed form
plus integer refinement); the screen folds all cycles in float64 with NumPy and sizes only its
candidates exactly. Both must report the same profitable cycles (asserted). Then 100 pools change and
both rescan: the screen only the cycles through those pools, the naive loop likewise.

Goals (ARCHITECTURE.md section 7 / issue 3): screen >= 50x the naive loop, full scan < 50 ms on one core
(NumPy's element-wise kernels are single-threaded; figures are medians of --repeat runs).

    .venv/bin/python bench/bench_cycles.py [--pools 10000] [--tokens 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from mevaas_chain.amm.cycles import PoolGraph, enumerate_cycles
from mevaas_chain.amm.screen import CycleScreen, naive_scan
from mevaas_chain.amm.synthetic import drift, synthetic_market

T = TypeVar("T")

MIN_PROFIT_USD = 2.0
CHANGED_POOLS = 100


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pools", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    market = synthetic_market(args.pools, args.tokens, seed=args.seed)
    build_s, cycles = timed(lambda: enumerate_cycles(PoolGraph.of(market.pools), market.base_tokens))
    two_hop = sum(1 for c in cycles if len(c.hops) == 2)
    min_profit = {t: market.usd_to_units(t, MIN_PROFIT_USD) for t in market.base_tokens}
    screen = CycleScreen(cycles, min_profit)
    print(f"market: {len(market.pools)} pools, {args.tokens} tokens, seed {args.seed}")
    print(
        f"cycles: {len(cycles)} ({two_hop} 2-hop, {len(cycles) - two_hop} 3-hop), enumerated in {build_s * 1e3:.0f} ms"
    )

    # Full scan.
    screen.full_scan()  # warm-up
    screen_only = statistics.median(timed(screen.screen_all)[0] for _ in range(args.repeat))
    full_runs = [timed(screen.full_scan) for _ in range(args.repeat)]
    full_s = statistics.median(t for t, _ in full_runs)
    found = {o.cycle_id for o in full_runs[-1][1]}
    naive_runs = [timed(lambda: naive_scan(cycles, min_profit)) for _ in range(max(1, args.repeat // 2))]
    naive_s = statistics.median(t for t, _ in naive_runs)
    naive = naive_runs[-1][1]
    assert set(naive) == found, f"screen and naive loop disagree: {sorted(set(naive) ^ found)[:10]}"
    for cid, result in naive.items():
        assert screen.opportunities[cid].result == result
    candidates = screen.screen_all().size
    print(
        f"full scan: screen {full_s * 1e3:.2f} ms (float pass {screen_only * 1e3:.2f} ms, "
        f"{candidates} candidates verified exactly), naive {naive_s * 1e3:.1f} ms; "
        f"{len(found)} profitable cycles (>= ${MIN_PROFIT_USD:.0f}), identical sets"
    )
    print(
        f"  cycles/s: screen {len(cycles) / full_s:,.0f}, naive {len(cycles) / naive_s:,.0f}; "
        f"ratio {naive_s / full_s:.1f}x"
    )

    # Incremental scans: several rounds of 100 changed pools each.
    inc_times: list[float] = []
    naive_inc_times: list[float] = []
    affected_counts: list[int] = []
    for round_ in range(args.repeat):
        updates = drift(market, CHANGED_POOLS, seed=args.seed * 1000 + round_)
        inc_s, _ = timed(partial(screen.apply_and_scan, updates))
        affected = screen.affected_cycles(list(updates)).tolist()
        subset = [cycles[i] for i in affected]
        naive_inc_s, _ = timed(partial(naive_scan, subset, min_profit))
        inc_times.append(inc_s)
        naive_inc_times.append(naive_inc_s)
        affected_counts.append(len(affected))
    # After all rounds the incrementally maintained set must equal a fresh naive scan.
    assert set(naive_scan(cycles, min_profit)) == set(screen.opportunities), "incremental state diverged"
    inc_s = statistics.median(inc_times)
    naive_inc_s = statistics.median(naive_inc_times)
    affected_n = int(statistics.median(affected_counts))
    print(
        f"incremental ({CHANGED_POOLS} changed pools, ~{affected_n} affected cycles): screen {inc_s * 1e3:.2f} ms, "
        f"naive {naive_inc_s * 1e3:.1f} ms; ratio {naive_inc_s / inc_s:.1f}x; "
        f"{len(screen.opportunities)} profitable cycles now, identical to a fresh naive scan"
    )

    ratio = naive_s / full_s
    print(
        f"goals: ratio >= 50x: {'met' if ratio >= 50 else 'MISSED'} ({ratio:.1f}x); "
        f"full scan < 50 ms: {'met' if full_s < 0.05 else 'MISSED'} ({full_s * 1e3:.2f} ms)"
    )


if __name__ == "__main__":
    main()
