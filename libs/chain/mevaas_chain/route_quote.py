"""What each hop of an executor route pays out, computed exactly as the Executor contract will:
a V2 pair's ``getAmountOut`` on its reserves and the hop's fee, a V3 pool's exact-input swap with
the loosest price limit (``mevaas_chain.amm.v3``, equal to the pool to the wei).

The pools are read at one block by kind through ``POOL_READERS`` (a new pool kind is one reader
and one `HopPool` class), then `route_amounts` is pure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mevaas_chain import abi
from mevaas_chain.amm import v3
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_chain.client import ChainClient
from mevaas_chain.executor import HOP_V2, HOP_V3, ExecutorHop
from mevaas_chain.v3_pools import read_pool_state


class HopPool(Protocol):
    def amount_out(self, hop: ExecutorHop, amount_in: int) -> int:
        """What the contract's swap on this pool pays for ``amount_in`` along ``hop``."""
        ...


@dataclass(frozen=True)
class V2Reserves:
    reserve0: int
    reserve1: int

    def amount_out(self, hop: ExecutorHop, amount_in: int) -> int:
        reserve_in, reserve_out = (
            (self.reserve0, self.reserve1) if hop.zero_for_one else (self.reserve1, self.reserve0)
        )
        return get_amount_out(amount_in, reserve_in, reserve_out, hop.fee_bps)


@dataclass(frozen=True)
class V3Pool:
    state: v3.V3PoolState

    def amount_out(self, hop: ExecutorHop, amount_in: int) -> int:
        result = v3.swap(self.state, hop.zero_for_one, amount_in)
        return -(result.amount1 if hop.zero_for_one else result.amount0)


PoolReader = Callable[[ChainClient, str, int], Awaitable[HopPool]]


async def _read_v2(client: ChainClient, pair: str, block: int) -> HopPool:
    reply = await client.call(pair, abi.GET_RESERVES, block)
    return V2Reserves(*abi.decode_reserves(reply))


async def _read_v3(client: ChainClient, pool: str, block: int) -> HopPool:
    return V3Pool(await read_pool_state(client, pool, block))


POOL_READERS: dict[int, PoolReader] = {HOP_V2: _read_v2, HOP_V3: _read_v3}


async def read_route_pools(
    client: ChainClient, hops: Sequence[ExecutorHop], block: int
) -> dict[str, HopPool]:
    """Every hop's pool at ``block``, by lower-case address."""
    return {h.pair.lower(): await POOL_READERS[h.kind](client, h.pair, block) for h in hops}


def route_amounts(amount_in: int, hops: Sequence[ExecutorHop], pools: Mapping[str, HopPool]) -> list[int]:
    """``amount_in`` followed by each hop's output, each pool used once (as in a cycle)."""
    amounts = [amount_in]
    for hop in hops:
        amounts.append(pools[hop.pair.lower()].amount_out(hop, amounts[-1]))
    return amounts
