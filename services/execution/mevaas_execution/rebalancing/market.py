"""What a rebalance is planned from, read from the chain at one block per chain: the wallet's
balances (the treasury's holdings read, `treasury/holdings.py`), the reserves of every pair of
the chain registry's tokens on every configured DEX (one JSON-RPC batch), and the prices of the
target tokens from the one price source (`mevaas_chain.pricing`: the configured sources, e.g. a
fixed table and pool mid prices through a stablecoin path, fed with those very reserves)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mevaas_chain import abi
from mevaas_chain.client import RpcError
from mevaas_chain.pricing import PoolReserves, Priced, PricingContext, Unpriced, build_price_source, valuate
from mevaas_chain.registry import ChainConfig
from mevaas_execution.chains import ChainGateway
from mevaas_execution.rebalancing.domain.planner import Asset, PlanningError, PoolState, Target, TokenKey
from mevaas_execution.treasury.holdings import TreasuryHoldings


@dataclass(frozen=True, slots=True)
class Market:
    assets: Mapping[TokenKey, Asset]
    pools: Sequence[PoolState]
    # The block each chain was read at, and its head block (for gas prices and deadlines).
    blocks: Mapping[int, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class PricingConfig:
    sources: Sequence[str]
    table: Mapping[tuple[int, str], Fraction]
    stablecoins: Sequence[str]
    max_hops: int = 3


class MarketReader:
    def __init__(self, gateway: ChainGateway, holdings: TreasuryHoldings, pricing: PricingConfig) -> None:
        self.gateway = gateway
        self.holdings = holdings
        self.pricing = pricing

    async def read(self, tenant_id: str, wallet: str, targets: Sequence[Target]) -> Market:
        context = PricingContext(
            self.gateway.registry,
            table=self.pricing.table,
            stablecoins=tuple(self.pricing.stablecoins),
            max_hops=self.pricing.max_hops,
        )
        source = build_price_source(self.pricing.sources, context)
        assets: dict[TokenKey, Asset] = {}
        pools: list[PoolState] = []
        blocks: dict[int, Mapping[str, Any]] = {}
        for chain_id in sorted({t.chain_id for t in targets}):
            if chain_id not in self.gateway.chain_ids:
                raise PlanningError(f"chain {chain_id} of a target is not configured")
            config = self.gateway.chain(chain_id).config
            held = await self.holdings.read(tenant_id, chain_id=chain_id, wallet=wallet.lower())
            balances = {
                h.token.address.lower(): int(h.wallet_balance)
                for h in held
                if h.wallet_address.lower() == wallet.lower()
            }
            if not held:
                raise PlanningError(f"wallet {wallet} is not a wallet of the tenant")
            block = await self.gateway.chain(chain_id).rpc.request(
                "eth_getBlockByNumber", [hex(held[0].block_number), False]
            )
            blocks[chain_id] = block
            chain_pools = await self._pools(config, held[0].block_number)
            pools.extend(chain_pools)
            context.book.apply(
                chain_id,
                held[0].block_number,
                (PoolReserves(p.address, p.token0, p.token1, p.reserve0, p.reserve1) for p in chain_pools),
            )
            decimals = {t.address.lower(): (t.symbol, t.decimals) for t in config.tokens}
            for target in (t for t in targets if t.chain_id == chain_id):
                if target.token not in decimals:
                    continue  # the planner names it (not a configured token)
                symbol, places = decimals[target.token]
                amount = balances.get(target.token, 0)
                valued = valuate(
                    source, chain_id, target.token, amount, places, at_block=held[0].block_number
                )
                assets[target.key] = Asset(
                    chain_id=chain_id,
                    token=target.token,
                    symbol=symbol,
                    decimals=places,
                    held=amount,
                    usd=valued.price.usd if isinstance(valued, Priced) else None,
                    unpriced_reason=valued.reason if isinstance(valued, Unpriced) else "",
                )
        return Market(assets, pools, blocks)

    async def _pools(self, config: ChainConfig, block: int) -> list[PoolState]:
        """Reserves of every pair of the chain's tokens on every DEX at ``block`` (pairs that do
        not exist answer no data and are left out)."""
        tokens = sorted({t.address.lower() for t in config.tokens})
        candidates: list[tuple[str, int, str, str, str]] = []
        for dex in config.dexes:
            for a, b in itertools.combinations(tokens, 2):
                t0, t1 = abi.sort_tokens(a, b)
                pair = abi.pair_address(dex.factory, dex.init_code_hash, t0, t1)
                candidates.append((dex.name, dex.fee_bps, pair, t0.lower(), t1.lower()))
        if not candidates:
            return []
        calls = [
            ("eth_call", [{"to": pair, "data": "0x" + abi.GET_RESERVES.hex()}, hex(block)])
            for _, _, pair, _, _ in candidates
        ]
        replies = await self.gateway.chain(config.chain_id).rpc.batch(calls)
        out: list[PoolState] = []
        for (name, fee, pair, t0, t1), reply in zip(candidates, replies, strict=True):
            if isinstance(reply, RpcError) or not isinstance(reply, str) or len(reply) < 2 + 64 * 2:
                continue
            r0, r1 = abi.decode_reserves(bytes.fromhex(reply[2:]))
            if r0 and r1:
                out.append(PoolState(config.chain_id, name, pair.lower(), t0, t1, r0, r1, fee))
        return out
