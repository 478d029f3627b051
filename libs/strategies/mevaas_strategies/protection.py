"""Leverage protection, the pure part of the monitor: a registered position below its trigger
health factor becomes a typed ``Deleverage`` action sized (``deleverage.plan_deleverage``) to
bring it back to its target, or the reason nothing can.

The health factor is read at ``at``, the time the transaction is expected to land (the monitor
passes the deadline block's time), since debt accrues per second. The collateral is sold through
the route that needs the least of it for the loan plus its premium (one pool, or two through the
wrapped native: ``collateral_quote``); the action's route is then the best route for what the
executor will actually sell (``best_route``), so its output is never below what was quoted.

Below the rule's emergency level (when it is on) the action is marked ``emergency``: execution
runs it even while the account's sessions are paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from mevaas_chain.amm.v2 import InsufficientLiquidity, min_amount_in
from mevaas_chain.lending.math import account_data
from mevaas_strategies.actions import Deleverage, Hop
from mevaas_strategies.deleverage import (
    ATOKEN_ROUNDING,
    CollateralQuote,
    DeleveragePlan,
    Unprotectable,
    plan_deleverage,
)
from mevaas_strategies.liquidation import SWAP_HOP_GAS, best_route
from mevaas_strategies.market import ChainMarket

# flashLoanSimple + repay on behalf + the aToken pull + withdraw + the checks and transfers.
DELEVERAGE_GAS = 650_000


@dataclass(frozen=True, slots=True)
class ProtectionRule:
    """One registered protection: the account (checksummed) on one chain and its levels (WAD)."""

    protection_id: str
    tenant_id: str
    chain_id: int
    account: str
    trigger_health_factor: int
    target_health_factor: int
    emergency_health_factor: int
    emergency_enabled: bool
    # Only this reserve is sold / repaid ("" = any of the position's).
    collateral_asset: str = ""
    debt_asset: str = ""


@dataclass(frozen=True, slots=True)
class Trigger:
    """A rule whose account is below its trigger: the action to run, or why there is none."""

    rule: ProtectionRule
    health_factor: int
    emergency: bool
    action: Deleverage | None
    unprotectable: Unprotectable | None
    gas_estimate: int


def collateral_quote(chain: ChainMarket, dexes: frozenset[str] = frozenset()) -> CollateralQuote:
    """Exact-output quotes on the chain's Uniswap V2 pools: the least collateral any one- or
    two-pool route (through the wrapped native) needs to deliver ``amount_out`` of the debt."""

    def quote(collateral: str, debt: str, amount_out: int) -> int | None:
        paths = [[collateral, debt]]
        middle = chain.wrapped_native
        if middle is not None and middle not in (collateral, debt):
            paths.append([collateral, middle, debt])
        best: int | None = None
        for path in paths:
            needed: int | None = amount_out
            for a, b in reversed(list(pairwise(path))):
                needed = _least_in(chain, a, b, needed, dexes) if needed is not None else None
            if needed is not None and (best is None or needed < best):
                best = needed
        return best

    return quote


def _least_in(chain: ChainMarket, a: str, b: str, amount_out: int, dexes: frozenset[str]) -> int | None:
    best: int | None = None
    for pool in chain.pools.values():
        if {pool.token0, pool.token1} != {a, b} or (dexes and pool.dex not in dexes):
            continue
        reserve_in, reserve_out = pool.reserves_for(a)
        try:
            needed = min_amount_in(amount_out, reserve_in, reserve_out, pool.fee_bps)
        except InsufficientLiquidity:
            continue
        if best is None or needed < best:
            best = needed
    return best


def health_factor(rule: ProtectionRule, chain: ChainMarket, at: int) -> int | None:
    """The account's health factor at ``at`` (None: the chain has no lending market, or the
    account no position there)."""
    lending = chain.lending
    if lending is None:
        return None
    position = lending.positions.get(rule.account)
    if position is None:
        return None
    return account_data(position, lending.reserves, lending.prices, at).health_factor


def evaluate(rule: ProtectionRule, chain: ChainMarket, at: int) -> Trigger | None:
    """None while the account is at or above its trigger (or has no debt)."""
    lending = chain.lending
    if lending is None:
        return None
    position = lending.positions.get(rule.account)
    if position is None or not position.has_debt:
        return None
    hf = account_data(position, lending.reserves, lending.prices, at).health_factor
    if hf >= rule.trigger_health_factor:
        return None
    emergency = rule.emergency_enabled and hf < rule.emergency_health_factor
    if lending.flash_loan_premium is None:
        return Trigger(rule, hf, emergency, None, Unprotectable.NO_ROUTE, 0)
    sized = plan_deleverage(
        position,
        lending.reserves,
        lending.prices,
        at,
        target_health_factor=rule.target_health_factor,
        flash_loan_premium=lending.flash_loan_premium,
        quote=collateral_quote(chain),
        collateral_asset=rule.collateral_asset,
        debt_asset=rule.debt_asset,
    )
    if not isinstance(sized, DeleveragePlan):
        return Trigger(rule, hf, emergency, None, sized, 0)
    hops: tuple[Hop, ...] = ()
    if sized.collateral_asset != sized.debt_asset:
        # The executor sells what it withdrew: at least the quote (collateral - rounding slack).
        route = best_route(
            chain, sized.collateral_asset, sized.debt_asset, sized.collateral - ATOKEN_ROUNDING, frozenset()
        )
        if route is None or route[-1].amount_out < sized.repay + sized.premium:
            return Trigger(rule, hf, emergency, None, Unprotectable.NO_ROUTE, 0)
        hops = route
    action = Deleverage(
        chain_id=chain.chain_id,
        protocol=lending.protocol,
        pool=lending.pool,
        account=rule.account,
        collateral_asset=sized.collateral_asset,
        debt_asset=sized.debt_asset,
        collateral_amount=sized.collateral,
        repay_amount=sized.repay,
        flash_loan_premium=sized.premium,
        health_factor=hf,
        target_health_factor=rule.target_health_factor,
        expected_health_factor=sized.health_factor_after,
        protection_id=rule.protection_id,
        emergency=emergency,
        collateral_a_token=lending.reserves[sized.collateral_asset].a_token,
        collateral_swap=hops,
    )
    return Trigger(rule, hf, emergency, action, None, DELEVERAGE_GAS + SWAP_HOP_GAS * len(hops))
