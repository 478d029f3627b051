"""`dex_arbitrage` and `flash_arbitrage`: 2- and 3-hop cycles through the strategy's base token
on the base token's chain, across the pools of its DEXes and tokens, sized exactly (`mevaas_chain.amm.arbitrage.optimize`).

Own capital (`dex_arbitrage`) caps the input at `max_position`: profit is concave in the input, so
the capped optimum is the cap itself, recomputed with the contracts' integer math. Flash arbitrage
borrows the input through the first pair's flash swap, so it takes the uncapped optimum and is
flagged `flash` for the executor's `executeFlash`.

Incremental: cycles are enumerated once per pool set (shared through `MarketView.memo` by every
strategy with the same chain, base token, tokens, DEXes and hop limit) and indexed by pool; a block
re-evaluates only the cycles through its changed pools, and the optimum of a route at given
reserves is computed once per block for all strategies (`MarketView.per_block`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import ClassVar

from mevaas_chain.amm.arbitrage import ArbitrageResult, optimize
from mevaas_chain.amm.arbitrage import Pool as GraphPool
from mevaas_chain.amm.cycles import Cycle, CycleIndex, PoolGraph, enumerate_cycles
from mevaas_chain.amm.v2 import InsufficientInputAmount, InsufficientLiquidity, SwapLeg, amounts_out
from mevaas_chain.registry import ChainRegistry
from mevaas_strategy.domain.market import ChainMarket, MarketView
from mevaas_strategy.domain.model import StrategySpec, TokenRef
from mevaas_strategy.domain.plugins import Candidate, CandidateHop, Changed, Violation

# Gas of one executor transaction: call and transfer overhead plus one V2 swap per hop; a flash
# swap adds the callback and repayment.
GAS_BASE = 50_000
GAS_PER_HOP = 60_000
GAS_FLASH = 40_000


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
        pools = [market.pools[h.pool.address] for h in cycle.hops]
        legs = [
            SwapLeg(*pool.reserves_for(hop.token_in), pool.fee_bps)
            for pool, hop in zip(pools, cycle.hops, strict=True)
        ]
        sizing = sized(market_view, legs, None if self.flash else spec.max_position)
        if sizing is None:
            return None
        amount_in, amounts = sizing
        gas = gas_for(len(legs), flash=self.flash)
        gas_cost = gas_cost_in(market_view, market, cycle.base, gas)
        if gas_cost is None:
            return None
        profit = amounts[-1] - amount_in
        if profit - gas_cost <= 0 or profit - gas_cost < spec.min_profit:
            return None
        hops = tuple(
            CandidateHop(
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
        return Candidate(
            chain_id=market.chain_id,
            chain_ids=(market.chain_id,),
            hops=hops,
            amount_in=amount_in,
            expected_profit=profit,
            profit_token=TokenRef(market.chain_id, cycle.base),
            gas_estimate=gas,
            gas_price=market.gas_price,
            gas_cost=gas_cost,
            flash=self.flash,
        )


class DexArbitrage(_CycleArbitrage):
    type_name = "dex_arbitrage"
    flash = False


class FlashArbitrage(_CycleArbitrage):
    type_name = "flash_arbitrage"
    flash = True
