"""Deleverage sizing for leverage protection: the smallest debt repayment, paid for with the
position's own collateral, that brings an Aave V3 position back to a target health factor.

The executor runs it as one transaction: a ``flashLoanSimple`` of the debt asset repays ``repay``
on the account's behalf, the account's aTokens (approved to the executor) are withdrawn for
``collateral`` of the collateral asset, that is sold through the route for at least the loan plus
its premium, and the loan is paid back. Every step is simulated here with Aave's own integer math
(``mevaas_chain.lending.math``): the repay and the withdrawal burn scaled balances as the
VariableDebtToken and the AToken do (``amount.rayDiv(index)`` at the block's normalised index),
and the health factor afterwards is ``calculateUserAccountData`` on the resulting position, so
the predicted health factor is the pool's to the wei at the block time it is sized for.

The repayment is found by bisection over integers: the health factor after repaying ``r`` (and
withdrawing what buying ``r`` plus the premium costs) rises with ``r`` wherever the position is
worth protecting (the collateral sold weighs its liquidation threshold, under 1, against debt
that weighs 1), so the smallest ``r`` reaching the target is the least collateral given up. The
result is checked, not assumed: a pair whose full repayment cannot reach the target, or whose
withdrawal would leave the position under 1, is not offered.

Reviewed against Aave V3 1.19.3: ``Pool.repay`` burns ``amount.rayDiv(variableBorrowIndex)`` of
the debt token and ``AToken.transferFrom`` moves ``amount.rayDiv(liquidityIndex)`` scaled aTokens
(``after_deleverage``); the flash-loan premium is ``amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)``;
within one transaction both indexes are the block's normalised ones. The aToken round trip
(moved to the executor, withdrawn there) can lose a wei, hence ``ATOKEN_ROUNDING``. Of all (collateral, debt) pairs the
one that costs least (collateral value given up minus debt value repaid, at the oracle's prices)
wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from mevaas_chain.lending.math import (
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    WAD,
    Position,
    Reserve,
    account_data,
    percent_mul,
    ray_div,
)

# The amount of collateral (base units) a route needs to deliver ``amount_out`` of the debt asset,
# or None when no route can (not enough liquidity). Exact-output quotes of the real pools.
CollateralQuote = Callable[[str, str, int], int | None]
ATOKEN_ROUNDING = 1


class Unprotectable(Enum):
    """Why no deleverage can restore a position (the tenant is alerted with this)."""

    NO_DEBT = "no_debt"
    NO_COLLATERAL = "no_collateral"
    NO_ROUTE = "no_route"
    TARGET_UNREACHABLE = "target_unreachable"


@dataclass(frozen=True, slots=True)
class DeleveragePlan:
    account: str
    collateral_asset: str
    debt_asset: str
    # Debt repaid (base units of debt_asset), borrowed by the flash loan.
    repay: int
    # The flash loan's premium, owed on top of ``repay``.
    premium: int
    # Collateral withdrawn and sold for repay + premium (base units of collateral_asset).
    collateral: int
    health_factor_before: int
    health_factor_after: int
    # Collateral value given up minus debt value repaid, in the oracle's base currency.
    cost_base: int


def after_deleverage(
    position: Position,
    reserves: Mapping[str, Reserve],
    now: int,
    *,
    collateral_asset: str,
    collateral: int,
    debt_asset: str,
    repay: int,
) -> Position:
    """The position once ``repay`` of its debt is repaid and ``collateral`` withdrawn at time
    ``now``: scaled balances burnt as the tokens burn them, a reserve's bit cleared when its
    scaled balance reaches zero (as Pool.repay / Pool.withdraw do)."""
    debt_reserve, collateral_reserve = reserves[debt_asset], reserves[collateral_asset]
    scaled_debt = dict(position.scaled_debt)
    scaled_collateral = dict(position.scaled_collateral)
    configuration = position.configuration
    remaining_debt = scaled_debt.get(debt_asset, 0) - ray_div(repay, debt_reserve.normalized_debt(now))
    if remaining_debt <= 0:
        remaining_debt = 0
        configuration &= ~(1 << (2 * debt_reserve.id))
    scaled_debt[debt_asset] = remaining_debt
    remaining_collateral = scaled_collateral.get(collateral_asset, 0) - ray_div(
        collateral, collateral_reserve.normalized_income(now)
    )
    if remaining_collateral <= 0:
        remaining_collateral = 0
        configuration &= ~(1 << (2 * collateral_reserve.id + 1))
    scaled_collateral[collateral_asset] = remaining_collateral
    return replace(
        position, configuration=configuration, scaled_debt=scaled_debt, scaled_collateral=scaled_collateral
    )


@dataclass(frozen=True, slots=True)
class _Step:
    repay: int
    premium: int
    collateral: int
    health_factor: int


def size_pair(
    position: Position,
    reserves: Mapping[str, Reserve],
    prices: Mapping[str, int],
    now: int,
    *,
    collateral_asset: str,
    debt_asset: str,
    target_health_factor: int,
    flash_loan_premium: int,
    quote: CollateralQuote,
) -> DeleveragePlan | Unprotectable:
    """The least repayment of ``debt_asset`` with ``collateral_asset`` reaching the target."""
    debt_reserve, collateral_reserve = reserves[debt_asset], reserves[collateral_asset]
    total_debt = position.debt_balance(debt_reserve, now)
    if total_debt == 0 or not position.is_borrowing(debt_reserve.id):
        return Unprotectable.NO_DEBT
    available = position.collateral_balance(collateral_reserve, now)
    if available == 0 or not position.is_collateral(collateral_reserve.id):
        return Unprotectable.NO_COLLATERAL
    before = account_data(position, reserves, prices, now).health_factor

    def step(repay: int) -> _Step | None:
        premium = percent_mul(repay, flash_loan_premium)
        if collateral_asset == debt_asset:
            quoted: int | None = repay + premium
        else:
            quoted = quote(collateral_asset, debt_asset, repay + premium)
        # The aTokens moved to the executor are withdrawn as rayMul(rayDiv(c, i), i), which may
        # be one wei under c: one wei more is moved so the sale never falls short of the loan.
        needed = None if quoted is None else quoted + ATOKEN_ROUNDING
        if needed is None or needed > available:
            return None
        after = after_deleverage(
            position,
            reserves,
            now,
            collateral_asset=collateral_asset,
            collateral=needed,
            debt_asset=debt_asset,
            repay=repay,
        )
        return _Step(repay, premium, needed, account_data(after, reserves, prices, now).health_factor)

    # The largest repayment the collateral can pay for: bisect on affordability first.
    low, high = 0, total_debt
    while low < high:
        mid = (low + high + 1) // 2
        if step(mid) is None:
            high = mid - 1
        else:
            low = mid
    max_repay = low
    if max_repay == 0:
        return Unprotectable.NO_ROUTE
    top = step(max_repay)
    if top is None or top.health_factor < target_health_factor:
        return Unprotectable.TARGET_UNREACHABLE
    low, high = 1, max_repay
    while low < high:
        mid = (low + high) // 2
        candidate = step(mid)
        if candidate is not None and candidate.health_factor >= target_health_factor:
            high = mid
        else:
            low = mid + 1
    best = step(low) if low < max_repay else top
    if best is None or best.health_factor < max(target_health_factor, HEALTH_FACTOR_LIQUIDATION_THRESHOLD):
        return Unprotectable.TARGET_UNREACHABLE
    c_unit = 10**collateral_reserve.params.decimals
    d_unit = 10**debt_reserve.params.decimals
    cost = best.collateral * prices[collateral_asset] // c_unit - best.repay * prices[debt_asset] // d_unit
    return DeleveragePlan(
        account=position.user,
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        repay=best.repay,
        premium=best.premium,
        collateral=best.collateral,
        health_factor_before=before,
        health_factor_after=best.health_factor,
        cost_base=cost,
    )


def plan_deleverage(
    position: Position,
    reserves: Mapping[str, Reserve],
    prices: Mapping[str, int],
    now: int,
    *,
    target_health_factor: int,
    flash_loan_premium: int,
    quote: CollateralQuote,
    collateral_asset: str = "",
    debt_asset: str = "",
) -> DeleveragePlan | Unprotectable:
    """The cheapest (collateral, debt) pair's plan, or why none reaches the target; a given
    ``collateral_asset`` / ``debt_asset`` is the only one considered."""
    if target_health_factor <= WAD:
        raise ValueError("the target health factor must be above 1")
    plans: list[DeleveragePlan] = []
    reasons: list[Unprotectable] = []
    for debt in sorted(reserves.values(), key=lambda r: r.id):
        if not position.is_borrowing(debt.id) or (debt_asset and debt.asset.lower() != debt_asset.lower()):
            continue
        for collateral in sorted(reserves.values(), key=lambda r: r.id):
            if not position.is_collateral(collateral.id):
                continue
            if collateral_asset and collateral.asset.lower() != collateral_asset.lower():
                continue
            sized = size_pair(
                position,
                reserves,
                prices,
                now,
                collateral_asset=collateral.asset,
                debt_asset=debt.asset,
                target_health_factor=target_health_factor,
                flash_loan_premium=flash_loan_premium,
                quote=quote,
            )
            if isinstance(sized, DeleveragePlan):
                plans.append(sized)
            else:
                reasons.append(sized)
    if plans:
        return min(plans, key=lambda p: (p.cost_base, p.collateral_asset, p.debt_asset))
    if not reasons:
        return Unprotectable.NO_DEBT if not position.has_debt else Unprotectable.NO_COLLATERAL
    # The most telling reason: a pair that had a route but could not reach the target.
    for reason in (Unprotectable.TARGET_UNREACHABLE, Unprotectable.NO_ROUTE, Unprotectable.NO_COLLATERAL):
        if reason in reasons:
            return reason
    return reasons[0]
