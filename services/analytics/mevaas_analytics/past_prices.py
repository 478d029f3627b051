"""Prices as of a block the price book does not reach back to.

A replica's price book starts at the reserves it found when it started (the stored ones, then the
market feed): something that happened at an older block (a threat replayed to a late replica, an
execution result it books late) would find no reserves at or before its block and be recorded
unpriced. The chain can answer instead: the reserves of the book's pools are read at that block
(``getReserves`` by ``eth_call`` at the block number, which anvil and archive nodes serve) into a
book of their own, and the configured sources price over it, so the value is the one a replica
that followed the market then would have recorded. Only when the chain cannot answer (the state is
pruned, the node unreachable) does the value stay unpriced, with that reason.

The fetched reserves are never put in the shared book: an observation there stands for every
later block until the next one, and these stand only for their own block.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError

from mevaas_chain.client import ChainClient, RpcError, TransientRpcError
from mevaas_chain.pricing import PriceSource, PricingContext, Unpriced, build_price_source
from mevaas_chain.pricing.pools import PoolBook, PoolReserves
from mevaas_chain.registry import ChainRegistry

log = logging.getLogger(__name__)

GET_RESERVES = "0x0902f1ac"
# Blocks whose fetched prices are kept (threats and results of one block come together).
CACHED_BLOCKS = 64


@dataclasses.dataclass(frozen=True, slots=True)
class PricesAt:
    source: PriceSource
    # Why the block's state could not be read ("" when it was, or was not needed).
    unavailable: str = ""


def reserves_from(pool: PoolReserves, reply: object) -> PoolReserves:
    """The pool's reserves from its ``getReserves`` answer; zero when it had no code then (a pool
    created after the block: no edge at that block)."""
    data = bytes.fromhex(str(reply).removeprefix("0x"))
    if not data:
        return dataclasses.replace(pool, reserve0=0, reserve1=0)
    reserve0, reserve1, _ = decode(["uint112", "uint112", "uint32"], data)
    return dataclasses.replace(pool, reserve0=reserve0, reserve1=reserve1)


def explain(value: Unpriced, unavailable: str) -> Unpriced:
    return dataclasses.replace(value, reason=f"{value.reason}; {unavailable}") if unavailable else value


class PastPrices:
    def __init__(
        self,
        context: PricingContext,
        source_names: Sequence[str],
        prices: PriceSource,
        chains: Callable[[], ChainRegistry],
    ) -> None:
        self.context = context
        self.source_names = list(source_names)
        self.prices = prices
        self.chains = chains
        self._cache: OrderedDict[tuple[int, int], PricesAt] = OrderedDict()

    async def at(self, chain_id: int, block: int) -> PricesAt:
        """The source to price at ``block`` with: the configured one when the book covers the
        block (or no block is named), else the configured sources over the reserves at it."""
        uncovered = self.context.book.uncovered(chain_id, block) if block else []
        if not uncovered:
            return PricesAt(self.prices)
        key = (chain_id, block)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = await self._read(chain_id, block)
        self._cache[key] = found
        while len(self._cache) > CACHED_BLOCKS:
            self._cache.popitem(last=False)
        return found

    async def _read(self, chain_id: int, block: int) -> PricesAt:
        # Every pool the book knows on the chain, at the block: the route may cross covered ones.
        pools = self.context.book.snapshot(chain_id)
        config = next((c for c in self.chains() if c.chain_id == chain_id), None)
        if config is None:
            return PricesAt(
                self.prices, f"reserves at block {block} not readable: chain {chain_id} not configured"
            )
        try:
            async with ChainClient.for_chain(config, timeout_s=5.0) as client:
                replies = await client.batch(
                    [
                        ("eth_call", [{"to": o.reserves.address, "data": GET_RESERVES}, hex(block)])
                        for o in pools
                    ]
                )
        except (TransientRpcError, OSError, TimeoutError) as exc:
            return PricesAt(self.prices, f"reserves at block {block} not available: {exc}")
        failed = next((r for r in replies if isinstance(r, RpcError)), None)
        if failed is not None:
            return PricesAt(self.prices, f"reserves at block {block} not available: {failed.message}")
        try:
            reserves = [reserves_from(o.reserves, r) for o, r in zip(pools, replies, strict=True)]
        except (DecodingError, ValueError) as exc:
            return PricesAt(self.prices, f"reserves at block {block} not decodable: {exc}")
        book = PoolBook()
        book.apply(chain_id, block, reserves)
        log.info("pricing at block %d of chain %d from the chain's reserves then", block, chain_id)
        return PricesAt(build_price_source(self.source_names, dataclasses.replace(self.context, book=book)))
