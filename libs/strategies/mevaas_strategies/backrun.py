"""``backrun``: bid in the order-flow auction of protected transactions (pure).

A protected transaction opens an auction with a hint (`Hint`, from events.v1 ``OrderFlowHint``).
At the ``amounts`` level the hint carries the decoded swap, so the searcher knows the state right
after it exactly: the victim's pools with the victim's swap applied on the router's integer math
(`mevaas_chain.amm.sandwich.victim_result`). On that post-victim state the plugin sizes every
2-hop cycle from its base token through a pool the victim moved and another pool of the same pair
(both directions) with the exact closed-form optimum (`mevaas_chain.amm.arbitrage.optimize`),
capped at ``max_position`` (it trades from the executor's inventory; a capped input is priced
exactly on the same integer math), and bids the best one
whose share kept after the user's refund pays its gas.

Hints below ``amounts`` (none, to+selector, pool) leave the post-victim state unknown; the plugin
does not guess and bids nothing on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from mevaas.events.v1 import events_pb2
from mevaas_chain.amm.sandwich import VictimSwap, victim_result
from mevaas_chain.amm.v2 import SwapLeg
from mevaas_chain.pool_index import Pool
from mevaas_chain.registry import ChainRegistry
from mevaas_chain.swaps import RouterSwap
from mevaas_strategies.actions import Backrun, Hop, SwapCycle
from mevaas_strategies.arbitrage import gas_cost_in, gas_for, sized
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.plugins import Candidate, Changed, Violation
from mevaas_strategies.threats import PairBook

BPS = 10_000
# The refund transfer and the Backrun event on top of an inventory cycle.
GAS_REFUND_TRANSFER = 35_000


@dataclass(frozen=True, slots=True)
class Hint:
    chain_id: int
    tx_hash: str
    level: str
    swap: RouterSwap | None
    refund_bps: int
    # The user's gas cost in wei (refunded too when the backrun covers it).
    gas_cost_wei: int
    max_block_number: int


def hint_from_proto(message: events_pb2.OrderFlowHint) -> Hint:
    swap = None
    if message.HasField("swap"):
        s = message.swap
        swap = RouterSwap(
            router=s.router,
            function=s.function,
            path=tuple(s.path),
            exact_in=s.exact_in,
            amount=int(s.amount or 0),
            bound=int(s.bound or 0),
            recipient=s.recipient,
            deadline=s.deadline,
            eth_in=s.eth_in,
        )
    return Hint(
        chain_id=message.chain_id,
        tx_hash=message.tx_hash,
        level=message.level,
        swap=swap,
        refund_bps=message.refund_bps,
        gas_cost_wei=int(message.gas_cost_wei or 0),
        max_block_number=message.max_block_number,
    )


def post_victim_pools(swap: RouterSwap, book: PairBook, dex: str) -> list[Pool] | None:
    """The pools of the swap's path with the swap applied (None: unknown pool, or it reverts)."""
    pools = book.route(dex, swap.path)
    if pools is None:
        return None
    legs = []
    for pool, token in zip(pools, swap.path, strict=False):
        forward = pool.token0.lower() == token.lower()
        legs.append(
            SwapLeg(pool.reserve0, pool.reserve1, pool.fee_bps)
            if forward
            else SwapLeg(pool.reserve1, pool.reserve0, pool.fee_bps)
        )
    result = victim_result(VictimSwap(tuple(legs), swap.amount, swap.bound, swap.exact_in), legs)
    if result is None:
        return None
    after = []
    for pool, token, leg in zip(pools, swap.path, result[1], strict=False):
        forward = pool.token0.lower() == token.lower()
        r0, r1 = (leg.reserve_in, leg.reserve_out) if forward else (leg.reserve_out, leg.reserve_in)
        after.append(replace(pool, reserve0=r0, reserve1=r1))
    return after


class BackrunStrategy:
    type_name: ClassVar[str] = "backrun"
    reads_lending: ClassVar[bool] = False

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    @classmethod
    def validate(cls, spec: StrategySpec, chains: ChainRegistry) -> list[Violation]:
        return []

    def on_market_update(self, market: MarketView, changed: Changed) -> list[Candidate]:
        # Bids only in auctions (on_hint): a block alone is nothing to back-run.
        return []

    def on_hint(self, view: MarketView, hint: Hint, routers: Mapping[str, str]) -> list[Candidate]:
        market = view.chain(hint.chain_id)
        swap = hint.swap
        if market is None or swap is None or hint.chain_id not in self.spec.chain_ids:
            return []
        dex = routers.get(swap.router.lower())
        if dex is None:
            return []
        book = PairBook(market.pools.values())
        moved = post_victim_pools(swap, book, dex)
        if moved is None:
            return []
        best: Candidate | None = None
        for candidate in self._cycles(view, market, moved, hint):
            if best is None or candidate.net_profit > best.net_profit:
                best = candidate
        return [best] if best is not None else []

    def _cycles(
        self, view: MarketView, market: ChainMarket, moved: list[Pool], hint: Hint
    ) -> list[Candidate]:
        base = self.spec.base_token.address
        moved_by_address = {p.address: p for p in moved}
        found = []
        for pool in moved:
            if base.lower() not in (pool.token0.lower(), pool.token1.lower()):
                continue
            pair = {pool.token0.lower(), pool.token1.lower()}
            others = [
                p
                for p in market.pools.values()
                if {p.token0.lower(), p.token1.lower()} == pair
                and p.address not in moved_by_address
                and (not self.spec.dexes or p.dex in self.spec.dexes)
            ]
            for other in others:
                for first, second in ((pool, other), (other, pool)):
                    candidate = self._size(view, market, first, second, hint)
                    if candidate is not None:
                        found.append(candidate)
        return found

    def _size(
        self, view: MarketView, market: ChainMarket, first: Pool, second: Pool, hint: Hint
    ) -> Candidate | None:
        base = next(
            t for t in (first.token0, first.token1) if t.lower() == self.spec.base_token.address.lower()
        )
        mid = first.token1 if first.token0 == base else first.token0
        legs = [
            SwapLeg(*first.reserves_for(base), first.fee_bps),
            SwapLeg(*second.reserves_for(mid), second.fee_bps),
        ]
        # The exact optimum, capped at max_position (the executor's inventory pays it).
        sizing = sized(view, legs, self.spec.max_position or None)
        if sizing is None:
            return None
        amount_in, amounts = sizing
        profit = amounts[-1] - amount_in
        gas = gas_for(2, flash=False) + GAS_REFUND_TRANSFER
        gas_cost = gas_cost_in(view, market, base, gas)
        if gas_cost is None:
            return None
        refund = profit * hint.refund_bps // BPS
        kept = profit - refund
        # Execution pays the exact gas on chain, and only in the wrapped native coin.
        native = market.wrapped_native is not None and base.lower() == market.wrapped_native.lower()
        gas_refund = hint.gas_cost_wei if native else 0
        # Gasless: the user's gas is refunded only from what the searcher keeps beyond its own gas.
        if kept - gas_refund - gas_cost < self.spec.min_profit:
            gas_refund = 0
        if kept - gas_refund - gas_cost <= 0 or kept - gas_refund - gas_cost < self.spec.min_profit:
            return None
        hops = (
            Hop(market.chain_id, first.address, first.dex, base, mid, amounts[0], amounts[1], first.fee_bps),
            Hop(
                market.chain_id, second.address, second.dex, mid, base, amounts[1], amounts[2], second.fee_bps
            ),
        )
        return Candidate(
            chain_id=market.chain_id,
            chain_ids=(market.chain_id,),
            action=Backrun(
                market.chain_id, hint.tx_hash, SwapCycle(hops, amount_in), hint.refund_bps, gas_refund
            ),
            expected_profit=kept - gas_refund,
            profit_token=TokenRef(market.chain_id, base),
            gas_estimate=gas,
            gas_price=market.gas_price,
            gas_cost=gas_cost,
        )
