"""Market simulator: random swaps of random sizes on random pools, every block, from one wallet,
so each DEX's prices random-walk on their own and drift apart. Uniswap V3 pools, when the chain has
them, are traded too (through their ``SwapRouter``), so V2 and V3 prices of a pair drift apart."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from mevaas_chain import abi
from mevaas_chain.amm.v3 import Q96
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.registry import DexConfig
from mevaas_chain.v3_pools import LIQUIDITY, SLOT0, exact_input_single
from mevaas_local.devnet.deploy import NO_DEADLINE, PoolInfo
from mevaas_local.devnet.relay import BlockProducer, Tx
from mevaas_local.devnet.uniswap_v3 import V3Pool

SWAP_EXACT_TOKENS = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"


class MarketSimulator:
    def __init__(
        self,
        client: ChainClient,
        producer: BlockProducer,
        *,
        wallet: str,
        dexes: Sequence[DexConfig],
        pools: Sequence[PoolInfo],
        swaps_per_block: int = 3,
        min_fraction: float = 0.0005,
        max_fraction: float = 0.01,
        seed: int | None = None,
        v3_router: str | None = None,
        v3_pools: Sequence[V3Pool] = (),
    ) -> None:
        self.client = client
        self.producer = producer
        self.wallet = wallet
        self.routers = {d.name: d.router for d in dexes}
        self.pools = list(pools)
        self.v3_router = v3_router
        self.v3_pools = list(v3_pools) if v3_router is not None else []
        self.swaps_per_block = swaps_per_block
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.rng = random.Random(seed)
        self.enabled = True

    def attach(self) -> None:
        """Queue swaps before every block the producer mines."""
        self.producer.before_block.append(self._before_block)

    async def _before_block(self, _block: int) -> None:
        if self.enabled and self.swaps_per_block > 0:
            await self.queue_swaps(self.swaps_per_block)

    async def random_swaps(self, count: int) -> list[Tx]:
        """``count`` router swaps sized against current reserves (log-uniform fraction of the input
        reserve; a V3 pool's virtual reserve at its in-range liquidity), on random pools (V2 and V3
        alike) in random directions."""
        picks = [self.rng.randrange(len(self.pools) + len(self.v3_pools)) for _ in range(count)]
        v3_chosen = [self.v3_pools[i - len(self.pools)] for i in picks if i >= len(self.pools)]
        return await self._v2_swaps([self.pools[i] for i in picks if i < len(self.pools)]) + (
            await self._v3_swaps(v3_chosen)
        )

    def _fraction(self) -> float:
        return math.exp(self.rng.uniform(math.log(self.min_fraction), math.log(self.max_fraction)))

    async def _v3_swaps(self, chosen: Sequence[V3Pool]) -> list[Tx]:
        if not chosen or self.v3_router is None:
            return []
        replies = await self.client.batch_call(
            [Call(p.address, c) for p in chosen for c in (SLOT0, LIQUIDITY)]
        )
        txs: list[Tx] = []
        for i, pool in enumerate(chosen):
            slot0, liquidity = replies[2 * i], replies[2 * i + 1]
            if slot0 is None or liquidity is None:
                continue
            sqrt_price, in_range = abi.decode_uint(slot0[:32]), abi.decode_uint(liquidity)
            zero_for_one = self.rng.random() < 0.5
            virtual_in = in_range * Q96 // sqrt_price if zero_for_one else in_range * sqrt_price // Q96
            amount_in = int(virtual_in * self._fraction())
            if amount_in <= 0:
                continue
            token_in, token_out = (pool.token0, pool.token1) if zero_for_one else (pool.token1, pool.token0)
            data = exact_input_single(
                token_in, token_out, pool.fee, self.wallet, amount_in, deadline=NO_DEADLINE
            )
            txs.append(
                {"from": self.wallet, "to": self.v3_router, "data": "0x" + data.hex(), "gas": hex(600_000)}
            )
        return txs

    async def _v2_swaps(self, chosen: Sequence[PoolInfo]) -> list[Tx]:
        if not chosen:
            return []
        replies = await self.client.batch_call([Call(p.address, abi.GET_RESERVES) for p in chosen])
        txs: list[Tx] = []
        for pool, reply in zip(chosen, replies, strict=True):
            if reply is None:
                continue
            r0, r1 = abi.decode_reserves(reply)
            zero_for_one = self.rng.random() < 0.5
            token_in, token_out, reserve_in = (
                (pool.token0, pool.token1, r0) if zero_for_one else (pool.token1, pool.token0, r1)
            )
            amount_in = int(reserve_in * self._fraction())
            router = self.routers[pool.dex]
            if amount_in <= 0 or router is None:
                continue
            data = abi.encode_call(
                SWAP_EXACT_TOKENS, amount_in, 0, [token_in, token_out], self.wallet, NO_DEADLINE
            )
            txs.append({"from": self.wallet, "to": router, "data": "0x" + data.hex(), "gas": hex(250_000)})
        return txs

    async def queue_swaps(self, count: int) -> None:
        """Hand ``count`` random swaps to the producer for the next block (no waiting)."""
        for tx in await self.random_swaps(count):
            self.producer.submit_unsigned(tx)
