"""`dex_arbitrage` and `flash_arbitrage`: 2- and 3-hop cycles through the strategy's base token
on the base token's chain, across the pools of its DEXes and tokens, sized exactly (`mevaas_chain.amm.arbitrage.optimize`).

Own capital (`dex_arbitrage`) caps the input at `max_position`: profit is concave in the input, so
the capped optimum is the cap itself, recomputed with the contracts' integer math. Flash arbitrage
borrows, so it takes the uncapped optimum and is a `SwapCycle` flagged `flash`, financed by the
cheapest of the flash providers that can lend it (`flash_providers.choose`: the first pair's flash
swap for `executeFlash`, an Aave V3 flash loan for `executeFlashLoan`, a configured V3 pool's flash
for `executeFlashV3`, the Balancer vault for `executeFlashBalancer`); its expected profit is net
of that provider's fee and its gas includes the provider's callback.

Incremental: cycles are enumerated once per pool set (shared through `MarketView.memo` by every
strategy with the same chain, base token, tokens, DEXes and hop limit) and indexed by pool; a block
re-evaluates only the cycles through its changed pools, and the optimum of a route at given
reserves is computed once per block for all strategies (`MarketView.per_block`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from mevaas_chain.amm.arbitrage import ArbitrageResult, optimize
from mevaas_chain.amm.arbitrage import Pool as GraphPool
from mevaas_chain.amm.cycles import Cycle, CycleIndex, PoolGraph, enumerate_cycles
from mevaas_chain.amm.v2 import InsufficientInputAmount, InsufficientLiquidity, SwapLeg, amounts_out
from mevaas_chain.registry import ChainRegistry
from mevaas_strategies.actions import Hop, SwapCycle
from mevaas_strategies.flash_providers import V2_FLASH_SWAP_GAS, choose
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.plugins import Candidate, Changed, Violation

# Gas of one executor transaction: call and transfer overhead plus one V2 swap per hop; a flash
# swap adds the callback and repayment.
GAS_BASE = 50_000
GAS_PER_HOP = 60_000
GAS_FLASH = V2_FLASH_SWAP_GAS


@dataclass(frozen=True, slots=True)
class CycleTerms:
    """What admits a cycle to a cycle strategy: a cycle from `base` of at most `max_hops` pools, each of
    a DEX in `dexes` (empty: any) pairing two of `tokens`, and how the strategy sizes it."""

    chain_id: int
    base: str
    tokens: frozenset[str]
    dexes: frozenset[str]
    max_hops: int
    flash: bool
    # Input cap (own capital); None when flash-financed.
    cap: int | None
    min_profit: int


def gas_for(hops: int, *, flash: bool) -> int:
    return GAS_BASE + GAS_PER_HOP * hops + (GAS_FLASH if flash else 0)


def gas_cost_in(view: MarketView, market: ChainMarket, token: str, gas: int) -> int | None:
    """gas * gas price converted to `token` base units, rounded up; None without a price."""
    key = ("native_rate", market.chain_id, token)
    if key not in view.per_block:
        view.per_block[key] = market.native_to_token(token)
    rate: Fraction | None = view.per_block[key]
    if rate is None:
        return None
    return math.ceil(gas * market.gas_price * rate)


def optimum(market_view: MarketView, legs: Sequence[SwapLeg]) -> ArbitrageResult | None:
    """The uncapped exact optimum of a route, computed once per distinct legs per block."""
    key = ("optimum", tuple(legs))
    if key not in market_view.per_block:
        market_view.per_block[key] = optimize(legs)
    result: ArbitrageResult | None = market_view.per_block[key]
    return result


def sized(
    market_view: MarketView, legs: Sequence[SwapLeg], cap: int | None
) -> tuple[int, tuple[int, ...]] | None:
    """(amount_in, per-hop amounts) of the best input up to `cap`, if it makes a profit."""
    best = optimum(market_view, legs)
    if best is None:
        return None
    if cap is None or best.amount_in <= cap:
        return best.amount_in, best.amounts
    try:
        amounts = amounts_out(cap, legs)
    except (InsufficientInputAmount, InsufficientLiquidity):
        return None
    if amounts[-1] <= cap:
        return None
    return cap, tuple(amounts)


class _CycleArbitrage:
    type_name: ClassVar[str]
    flash: ClassVar[bool]
    reads_lending: ClassVar[bool] = False

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    @classmethod
    def validate(cls, spec: StrategySpec, chains: ChainRegistry) -> list[Violation]:
        violations: list[Violation] = []
        if spec.max_hops > 3:
            violations.append(
                Violation(
                    "parameters.max_hops", "routes of more than 3 hops are not supported", "UNSUPPORTED"
                )
            )
        if spec.base_token.chain_id not in spec.chain_ids:
            violations.append(
                Violation("allocation.token.chain_id", "must be one of parameters.chain_ids", "UNKNOWN_CHAIN")
            )
        return violations

    def _cycles(self, market_view: MarketView, market: ChainMarket) -> tuple[list[Cycle], CycleIndex]:
        spec = self.spec
        tokens = spec.tokens_on(market.chain_id)
        key = ("cycles", market.chain_id, market.epoch, spec.base_token, tokens, spec.dexes, spec.max_hops)
        cached = market_view.memo.get(key)
        if cached is None:
            graph = PoolGraph.of(
                GraphPool(p.address, p.token0, p.token1, 0, 0, p.fee_bps)
                for p in market.pools.values()
                if (not spec.dexes or p.dex in spec.dexes) and p.token0 in tokens and p.token1 in tokens
            )
            cycles = enumerate_cycles(graph, [spec.base_token.address], min(spec.max_hops, 3))
            cached = (cycles, CycleIndex(cycles))
            market_view.memo[key] = cached
        result: tuple[list[Cycle], CycleIndex] = cached
        return result

    def on_market_update(self, market: MarketView, changed: Changed) -> list[Candidate]:
        chain = market.chain(self.spec.base_token.chain_id)
        if chain is None:
            return []
        cycles, index = self._cycles(market, chain)
        if changed is None:
            ids: Sequence[int] = range(len(cycles))
        else:
            touched = changed.get(chain.chain_id)
            if not touched:
                return []
            ids = index.affected(touched)
        found: list[Candidate] = []
        for cycle_id in ids:
            candidate = self._evaluate(market, chain, cycles[cycle_id])
            if candidate is not None:
                found.append(candidate)
        return found

    def _evaluate(self, market_view: MarketView, market: ChainMarket, cycle: Cycle) -> Candidate | None:
        spec = self.spec
        candidate = cycle_candidate(
            market_view, market, cycle, flash=self.flash, cap=None if self.flash else spec.max_position
        )
        if candidate is None or candidate.net_profit < spec.min_profit:
            return None
        return candidate

    def cycle_terms(self) -> CycleTerms | None:
        """What admits a cycle to this strategy (shared market evaluation, `mevaas_strategies.shared`)."""
        spec = self.spec
        if spec.max_hops < 2:
            return None  # enumerate_cycles refuses it; keep that behaviour on the per-strategy path
        return CycleTerms(
            chain_id=spec.base_token.chain_id,
            base=spec.base_token.address,
            tokens=spec.tokens_on(spec.base_token.chain_id),
            dexes=spec.dexes,
            max_hops=min(spec.max_hops, 3),
            flash=self.flash,
            cap=None if self.flash else spec.max_position,
            min_profit=spec.min_profit,
        )


def cycle_candidate(
    market_view: MarketView, market: ChainMarket, cycle: Cycle, *, flash: bool, cap: int | None
) -> Candidate | None:
    """The candidate of one cycle at the market's reserves, input capped at `cap`, if its profit net of
    gas is positive (before any strategy's own `min_profit`)."""
    pools = [market.pools[h.pool.address] for h in cycle.hops]
    legs = [
        SwapLeg(*pool.reserves_for(hop.token_in), pool.fee_bps)
        for pool, hop in zip(pools, cycle.hops, strict=True)
    ]
    sizing = sized(market_view, legs, cap)
    if sizing is None:
        return None
    amount_in, amounts = sizing
    hops = tuple(
        Hop(
            market.chain_id,
            pool.address,
            pool.dex,
            hop.token_in,
            hop.token_out,
            amounts[i],
            amounts[i + 1],
            pool.fee_bps,
        )
        for i, (pool, hop) in enumerate(zip(pools, cycle.hops, strict=True))
    )
    gas = gas_for(len(legs), flash=False)
    fee, provider, lender = 0, "", ""
    if flash:
        choice = choose(market, hops, lambda extra: gas_cost_in(market_view, market, cycle.base, extra))
        if choice.quote is None:
            return None
        fee, provider, lender = choice.quote.fee, choice.quote.provider, choice.quote.lender
        gas += choice.quote.gas
    gas_cost = gas_cost_in(market_view, market, cycle.base, gas)
    if gas_cost is None:
        return None
    profit = amounts[-1] - amount_in - fee
    if profit - gas_cost <= 0:
        return None
    return Candidate(
        chain_id=market.chain_id,
        chain_ids=(market.chain_id,),
        action=SwapCycle(hops, amount_in, flash, provider, fee, lender),
        expected_profit=profit,
        profit_token=TokenRef(market.chain_id, cycle.base),
        gas_estimate=gas,
        gas_price=market.gas_price,
        gas_cost=gas_cost,
    )


class DexArbitrage(_CycleArbitrage):
    type_name = "dex_arbitrage"
    flash = False


class FlashArbitrage(_CycleArbitrage):
    type_name = "flash_arbitrage"
    flash = True
