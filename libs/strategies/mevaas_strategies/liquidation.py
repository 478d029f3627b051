"""The ``liquidation`` strategy: Aave V3 positions under health factor 1, liquidated for profit.

For every borrower whose health factor at the next block's time (the head's timestamp plus the
chain's block time, since the transaction lands there and debt keeps accruing) is under 1, every
(collateral, debt) pair of its position is sized exactly as ``LiquidationLogic`` would: the close
factor (50%, all of it below HF 0.95), the collateral's liquidation bonus, the protocol's fee on
that bonus, the collateral the borrower has (``mevaas_chain.lending.math``). The size is the
steady one (``steady_liquidation``): the same debt repaid, collateral paid and fee at every block
time from the head's to ``STEADY_WINDOW_S`` later, so what lands is what was predicted to the
wei; where the whole collateral would cap the call (its balance grows every second, and the
pool works the debt back from it) that means just under the balance. The seized
collateral is priced by selling it back into the debt asset through the best Uniswap V2 route
(one pool, or two through the wrapped native), and the candidate's profit is what the executor
ends up holding more of the debt asset, net of gas. The best pair per borrower is proposed.

Financing: the strategy's allocation is inventory in its base token, so a debt in the base token
is repaid from the executor's balance (``max_position`` caps it); any other debt is borrowed
inside the transaction, by whichever leaves more profit net of gas: the pool's own
``flashLoanSimple`` (repaid with its premium, ``percentMul`` of the amount) or a Uniswap V2
flash swap on the route's last pool (the pool lends the debt, is paid in its other token what
``getAmountIn`` asks, and what is left of that is sold through the same pool afterwards).
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

from mevaas_chain.amm.v2 import get_amount_in, get_amount_out
from mevaas_chain.lending.math import Liquidation as Sizing
from mevaas_chain.lending.math import Position, account_data, percent_mul, steady_liquidation
from mevaas_chain.pool_index import Pool
from mevaas_chain.registry import ChainRegistry
from mevaas_strategies.actions import Hop, Liquidation
from mevaas_strategies.arbitrage import gas_cost_in
from mevaas_strategies.market import ChainMarket, LendingState, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.plugins import Candidate, Changed, Violation

# liquidationCall (~300k on Aave V3 with two reserves touched) plus the swap back and transfers.
LIQUIDATION_GAS = 450_000
SWAP_HOP_GAS = 90_000
# flashLoanSimple: the loan's transfers, the callback, the premium's accounting.
FLASH_LOAN_GAS = 80_000
# The pair's flash callback and the second sale through the same pair.
FLASH_SWAP_GAS = 130_000
# How long after its sizing a liquidation may land and still move exactly the predicted amounts:
# execution's delay, its simulation and a few blocks of inclusion. A longer window costs nothing
# (the caps are tightest at its start) but drops positions that climb back over 1 within it.
STEADY_WINDOW_S = 60


class LiquidationStrategy:
    type_name: ClassVar[str] = "liquidation"
    reads_lending: ClassVar[bool] = True

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    @classmethod
    def validate(cls, spec: StrategySpec, chains: ChainRegistry) -> list[Violation]:
        return []

    def on_market_update(self, market: MarketView, changed: Changed) -> list[Candidate]:
        found: list[Candidate] = []
        for chain_id in self.spec.chain_ids or (self.spec.base_token.chain_id,):
            chain = market.chain(chain_id)
            if chain is None or chain.lending is None:
                continue
            lending = chain.lending
            now = lending.block_timestamp + max(1, int(chain.block_time_s))
            for position in lending.positions.values():
                if not position.has_debt:
                    continue
                if not account_data(position, lending.reserves, lending.prices, now).liquidatable:
                    continue
                # Sized steady from the head's time (from the next block's when only that is
                # under 1): Aave repays exactly the requested amount and pays the collateral
                # prices and the bonus give, whichever block of the window it lands in.
                sized_at = (
                    lending.block_timestamp
                    if account_data(
                        position, lending.reserves, lending.prices, lending.block_timestamp
                    ).liquidatable
                    else now
                )
                best = self._best(market, chain, lending, position, sized_at)
                if best is not None:
                    found.append(best)
        return found

    def _best(
        self, view: MarketView, chain: ChainMarket, lending: LendingState, position: Position, now: int
    ) -> Candidate | None:
        allowed = self.spec.tokens_on(chain.chain_id)
        best: Candidate | None = None
        for debt_asset in position.scaled_debt:
            if allowed and debt_asset not in allowed:
                continue
            cap = (
                self.spec.max_position
                if self.spec.max_position and debt_asset == self.spec.base_token.address
                else None
            )
            for collateral_asset in position.scaled_collateral:
                sizing = steady_liquidation(
                    position,
                    lending.reserves,
                    lending.prices,
                    now,
                    window=STEADY_WINDOW_S,
                    collateral_asset=collateral_asset,
                    debt_asset=debt_asset,
                    **({"debt_to_cover": cap} if cap else {}),
                )
                if sizing is None or sizing.collateral_to_liquidator == 0:
                    continue
                candidate = self._price(view, chain, lending, sizing)
                if candidate is not None and (best is None or candidate.net_profit > best.net_profit):
                    best = candidate
        return best

    def _price(
        self, view: MarketView, chain: ChainMarket, lending: LendingState, sizing: Sizing
    ) -> Candidate | None:
        hops = best_route(
            chain,
            sizing.collateral_asset,
            sizing.debt_asset,
            sizing.collateral_to_liquidator,
            self.spec.dexes,
        )
        if hops is None:
            return None
        best: tuple[int, str, int, int, int] | None = None  # net, financing, profit, gas, gas cost
        for financing, profit, extra_gas in self._financings(chain, lending, sizing, hops):
            gas = LIQUIDATION_GAS + SWAP_HOP_GAS * len(hops) + extra_gas
            gas_cost = gas_cost_in(view, chain, sizing.debt_asset, gas)
            if gas_cost is None:
                continue
            if best is None or profit - gas_cost > best[0]:
                best = (profit - gas_cost, financing, profit, gas, gas_cost)
        if best is None:
            return None
        net, financing, profit, gas, gas_cost = best
        if net <= 0 or net < self.spec.min_profit:
            return None
        return Candidate(
            chain_id=chain.chain_id,
            chain_ids=(chain.chain_id,),
            action=Liquidation(
                chain_id=chain.chain_id,
                protocol=lending.protocol,
                pool=lending.pool,
                borrower=sizing.user,
                collateral_asset=sizing.collateral_asset,
                debt_asset=sizing.debt_asset,
                debt_to_cover=sizing.debt_to_cover,
                expected_collateral=sizing.collateral_to_liquidator,
                health_factor=sizing.health_factor,
                collateral_swap=hops,
                financing=financing,
            ),
            expected_profit=profit,
            profit_token=TokenRef(chain.chain_id, sizing.debt_asset),
            gas_estimate=gas,
            gas_price=chain.gas_price,
            gas_cost=gas_cost,
        )

    def _financings(
        self, chain: ChainMarket, lending: LendingState, sizing: Sizing, hops: tuple[Hop, ...]
    ) -> list[tuple[str, int, int]]:
        """(financing, profit in the debt asset before gas, its extra gas) of each way to pay."""
        debt = sizing.debt_to_cover
        if sizing.debt_asset == self.spec.base_token.address:
            return [("inventory", hops[-1].amount_out - debt, 0)]
        options: list[tuple[str, int, int]] = []
        if lending.flash_loan_premium is not None:
            premium = percent_mul(debt, lending.flash_loan_premium)
            options.append(("flash_loan", hops[-1].amount_out - debt - premium, FLASH_LOAN_GAS))
        swapped = flash_swap_profit(chain, hops, sizing.collateral_to_liquidator, debt)
        if swapped is not None:
            options.append(("flash_swap", swapped, FLASH_SWAP_GAS))
        return options


def flash_swap_profit(chain: ChainMarket, hops: tuple[Hop, ...], collateral: int, debt: int) -> int | None:
    """What a flash-swap-financed liquidation leaves in the debt asset, exactly as the executor
    runs it: the last pool lends ``debt``; the collateral, sold along the earlier hops, pays it
    ``getAmountIn(debt)``; what is left is sold through that pool at its new reserves. None when
    the proceeds cannot pay the pool."""
    last = hops[-1]
    pool = chain.pools.get(last.pool)
    if pool is None:
        return None
    proceeds = hops[-2].amount_out if len(hops) > 1 else collateral
    reserve_in, reserve_out = pool.reserves_for(last.token_in)
    if debt >= reserve_out:
        return None
    owed = get_amount_in(debt, reserve_in, reserve_out, pool.fee_bps)
    if proceeds < owed:
        return None
    leftover = proceeds - owed
    return get_amount_out(leftover, reserve_in + owed, reserve_out - debt, pool.fee_bps) if leftover else 0


def best_route(
    chain: ChainMarket, token_in: str, token_out: str, amount_in: int, dexes: frozenset[str]
) -> tuple[Hop, ...] | None:
    """The single-pool or two-pool (through the wrapped native) route selling ``amount_in`` of
    ``token_in`` for the most ``token_out``, with exact Uniswap V2 amounts."""
    routes: list[list[str]] = [[token_in, token_out]]
    middle = chain.wrapped_native
    if middle is not None and middle not in (token_in, token_out):
        routes.append([token_in, middle, token_out])
    best: tuple[Hop, ...] | None = None
    for path in routes:
        hops: list[Hop] = []
        amount = amount_in
        for a, b in pairwise(path):
            # A hop that yields nothing ends the route (the next hop's quote would revert).
            pool = _best_pool(chain, a, b, amount, dexes) if amount > 0 else None
            if pool is None:
                break
            reserve_in, reserve_out = pool.reserves_for(a)
            out = get_amount_out(amount, reserve_in, reserve_out, pool.fee_bps)
            hops.append(Hop(chain.chain_id, pool.address, pool.dex, a, b, amount, out, pool.fee_bps))
            amount = out
        else:
            if best is None or hops[-1].amount_out > best[-1].amount_out:
                best = tuple(hops)
    return best


def _best_pool(chain: ChainMarket, a: str, b: str, amount: int, dexes: frozenset[str]) -> Pool | None:
    best: tuple[int, Pool] | None = None
    for pool in chain.pools.values():
        if {pool.token0, pool.token1} != {a, b} or (dexes and pool.dex not in dexes):
            continue
        reserve_in, reserve_out = pool.reserves_for(a)
        if reserve_in == 0 or reserve_out == 0:
            continue
        out = get_amount_out(amount, reserve_in, reserve_out, pool.fee_bps)
        if best is None or out > best[0]:
            best = (out, pool)
    return best[1] if best else None
