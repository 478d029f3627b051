"""Market simulator: random swaps of random sizes on random pools, every block, from one wallet,
so each DEX's prices random-walk on their own and drift apart."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from mevaas_chain import abi
from mevaas_chain.client import Call, ChainClient
from mevaas_chain.registry import DexConfig
from mevaas_local.devnet.deploy import NO_DEADLINE, PoolInfo
from mevaas_local.devnet.relay import BlockProducer, Tx

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
    ) -> None:
        self.client = client
        self.producer = producer
        self.wallet = wallet
        self.routers = {d.name: d.router for d in dexes}
        self.pools = list(pools)
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
        reserve), on random pools in random directions."""
        chosen = [self.rng.choice(self.pools) for _ in range(count)]
        replies = await self.client.batch_call([Call(p.address, abi.GET_RESERVES) for p in chosen])
        txs: list[Tx] = []
        lo, hi = math.log(self.min_fraction), math.log(self.max_fraction)
        for pool, reply in zip(chosen, replies, strict=True):
            if reply is None:
                continue
            r0, r1 = abi.decode_reserves(reply)
            zero_for_one = self.rng.random() < 0.5
            token_in, token_out, reserve_in = (
                (pool.token0, pool.token1, r0) if zero_for_one else (pool.token1, pool.token0, r1)
            )
            amount_in = int(reserve_in * math.exp(self.rng.uniform(lo, hi)))
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
