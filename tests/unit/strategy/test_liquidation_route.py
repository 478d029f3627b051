"""A liquidation's sale route ends where a hop yields nothing: the next hop is not quoted (a
Uniswap V2 quote of 0 in reverts, and the whole scan failed with it on a drained pool)."""

from __future__ import annotations

from mevaas_chain.pool_index import Pool
from mevaas_strategies.liquidation import best_route
from mevaas_strategies.market import ChainMarket

A, B, W = ("0x" + c * 40 for c in "abc")


def pool(address: str, token0: str, token1: str, r0: int, r1: int) -> Pool:
    return Pool(
        address=address, dex="uniswap", token0=token0, token1=token1, reserve0=r0, reserve1=r1, fee_bps=30
    )


def market(pools: list[Pool]) -> ChainMarket:
    return ChainMarket(
        chain_id=1,
        block_number=1,
        block_hash="0x",
        base_fee=0,
        priority_fee=0,
        pools={p.address: p for p in pools},
        wrapped_native=W,
    )


def test_a_hop_that_yields_nothing_ends_the_route_instead_of_raising() -> None:
    # Through W only; A -> W gives 0 out for 1 wei in, so W -> B is never quoted.
    chain = market([pool("0x" + "01" * 20, A, W, 10**30, 10), pool("0x" + "02" * 20, W, B, 10**18, 10**18)])
    assert best_route(chain, A, B, 1, frozenset()) is None


def test_the_route_through_the_wrapped_native_is_taken_when_it_yields() -> None:
    chain = market(
        [pool("0x" + "01" * 20, A, W, 10**18, 10**18), pool("0x" + "02" * 20, W, B, 10**18, 10**18)]
    )
    route = best_route(chain, A, B, 10**15, frozenset())
    assert route is not None and [h.token_out for h in route] == [W, B] and route[-1].amount_out > 0
