"""Cycle enumeration, the cycle index, and the vectorised screen against the naive exact loop."""

from __future__ import annotations

import pytest

from mevaas_chain.amm.arbitrage import Pool
from mevaas_chain.amm.cycles import CycleIndex, PoolGraph, enumerate_cycles
from mevaas_chain.amm.screen import CycleScreen, naive_scan
from mevaas_chain.amm.synthetic import drift, synthetic_market

E18 = 10**18


def small_graph() -> PoolGraph:
    # WETH-A on two DEXes, WETH-B, A-B, USDC-A, USDC-WETH.
    return PoolGraph.of(
        [
            Pool("p1", "A", "WETH", 1000 * E18, 10 * E18),
            Pool("p2", "A", "WETH", 1000 * E18, 11 * E18),
            Pool("p3", "B", "WETH", 500 * E18, 10 * E18),
            Pool("p4", "A", "B", 1000 * E18, 500 * E18),
            Pool("p5", "A", "USDC", 1000 * E18, 30_000 * 10**6),
            Pool("p6", "USDC", "WETH", 30_000 * 10**6, 10 * E18),
        ]
    )


def test_enumeration_lists_each_directed_cycle_once_from_its_first_base() -> None:
    cycles = enumerate_cycles(small_graph(), ["WETH", "USDC"])
    keys = [c.pools for c in cycles]
    assert len(keys) == len(set(keys))
    assert all(c.tokens[0] == c.tokens[-1] == c.base for c in cycles)
    two = {c.pools for c in cycles if len(c.hops) == 2}
    assert two == {("p1", "p2"), ("p2", "p1")}
    three = {c.pools for c in cycles if len(c.hops) == 3}
    # WETH-A-B and WETH-A-USDC triangles, both directions, each with either WETH-A pool.
    assert three == {
        ("p1", "p4", "p3"), ("p2", "p4", "p3"), ("p3", "p4", "p1"), ("p3", "p4", "p2"),
        ("p1", "p5", "p6"), ("p2", "p5", "p6"), ("p6", "p5", "p1"), ("p6", "p5", "p2"),
    }  # fmt: skip
    # The USDC triangle is owned by WETH (listed first), so USDC adds nothing of its own.
    assert all(c.base == "WETH" for c in cycles)
    assert {c.base for c in enumerate_cycles(small_graph(), ["USDC", "WETH"])} == {"USDC", "WETH"}
    assert all(len(c.hops) == 2 for c in enumerate_cycles(small_graph(), ["WETH"], max_hops=2))


def test_index_finds_the_cycles_of_changed_pools() -> None:
    cycles = enumerate_cycles(small_graph(), ["WETH"])
    index = CycleIndex(cycles)
    affected = index.affected(["p4"])
    assert affected == sorted(i for i, c in enumerate(cycles) if "p4" in c.pools)
    assert index.affected(["nope"]) == []


def test_graph_rejects_duplicates() -> None:
    graph = small_graph()
    with pytest.raises(ValueError):
        graph.add(Pool("p1", "A", "B", 1, 1))


def test_screen_equals_naive_loop_full_and_incremental() -> None:
    market = synthetic_market(1_500, 300, seed=3, mispriced_fraction=0.02)
    cycles = enumerate_cycles(PoolGraph.of(market.pools), market.base_tokens)
    min_profit = {t: market.usd_to_units(t, 1.0) for t in market.base_tokens}
    screen = CycleScreen(cycles, min_profit)

    found = {o.cycle_id: o.result for o in screen.full_scan()}
    naive = naive_scan(cycles, min_profit)
    assert len(naive) >= 10
    assert found == naive
    for cid, result in naive.items():
        assert screen.predicted_profit(cid) >= result.profit * (1 - 1e-9)  # float estimate of an upper bound

    for round_ in range(3):
        updates = drift(market, 60, seed=round_, scale=0.03)
        changed = screen.update_reserves(updates)
        affected = set(screen.affected_cycles(changed).tolist())
        new = {o.cycle_id: o.result for o in screen.scan_changed(changed)}
        naive = naive_scan(cycles, min_profit)
        assert new == {cid: r for cid, r in naive.items() if cid in affected}
        assert {cid: o.result for cid, o in screen.opportunities.items()} == naive


def test_screen_with_zero_threshold_matches_naive() -> None:
    market = synthetic_market(400, 80, seed=11, noise=0.004, mispriced_fraction=0.05)
    cycles = enumerate_cycles(PoolGraph.of(market.pools), market.base_tokens)
    screen = CycleScreen(cycles)
    assert {o.cycle_id: o.result for o in screen.full_scan()} == naive_scan(cycles)
