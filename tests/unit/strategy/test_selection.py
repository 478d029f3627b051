"""A strategy publishes, per block, only candidates that can all execute: best first, one per pool."""

from __future__ import annotations

from mevaas_strategies.actions import Hop, SwapCycle
from mevaas_strategies.model import TokenRef
from mevaas_strategies.plugins import Candidate
from mevaas_strategies.selection import best_disjoint

WETH = TokenRef(1, "0x" + "11" * 20)


def candidate(pools: list[str], profit: int, gas_cost: int = 10, chain_id: int = 1) -> Candidate:
    hops = tuple(
        Hop(chain_id, pool, "uniswap", "0x" + "aa" * 20, "0x" + "bb" * 20, 100, 101, 30) for pool in pools
    )
    return Candidate(chain_id, (chain_id,), SwapCycle(hops, 100), profit, WETH, 1000, 1, gas_cost)


def test_best_net_profit_wins_each_pool_and_disjoint_routes_all_stay() -> None:
    best = candidate(["0xP1", "0xP2"], profit=500)
    overlapping = candidate(["0xp2", "0xP3"], profit=400)  # shares P2 (address case ignored)
    disjoint = candidate(["0xP4", "0xP5"], profit=300)
    assert best_disjoint([disjoint, overlapping, best]) == [best, disjoint]


def test_net_profit_decides_not_gross() -> None:
    gross_winner = candidate(["0xP1", "0xP2"], profit=500, gas_cost=450)
    net_winner = candidate(["0xP1", "0xP3"], profit=400, gas_cost=10)
    assert best_disjoint([gross_winner, net_winner]) == [net_winner]


def test_the_same_pool_address_on_two_chains_is_two_pools() -> None:
    here = candidate(["0xP1", "0xP2"], profit=500, chain_id=1)
    there = candidate(["0xP1", "0xP2"], profit=400, chain_id=2)
    assert best_disjoint([here, there]) == [here, there]
