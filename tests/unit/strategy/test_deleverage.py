"""Deleverage sizing on a synthetic Aave position: the plan reaches the target with the least
repayment (one wei less does not), the post-state is the tokens' own burn arithmetic, and a
position whose collateral cannot pay reports why."""

from __future__ import annotations

from mevaas_chain.amm.v2 import min_amount_in
from mevaas_chain.lending.math import RAY, WAD, Position, Reserve, account_data
from mevaas_strategies.deleverage import (
    DeleveragePlan,
    Unprotectable,
    after_deleverage,
    plan_deleverage,
    size_pair,
)

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
NOW = 1_700_000_000


def config(ltv: int, threshold: int, bonus: int, decimals: int) -> int:
    return ltv | threshold << 16 | bonus << 32 | decimals << 48 | 1 << 56


RESERVES = {
    WETH: Reserve(
        WETH,
        0,
        config(8000, 8250, 10500, 18),
        RAY + 3 * 10**24,
        2 * 10**25,
        RAY + 5 * 10**24,
        4 * 10**25,
        NOW - 600,
        "0xa1",
        "0xd1",
    ),
    USDC: Reserve(
        USDC,
        1,
        config(7700, 8000, 10450, 6),
        RAY + 10**24,
        3 * 10**25,
        RAY + 2 * 10**24,
        5 * 10**25,
        NOW - 600,
        "0xa2",
        "0xd2",
    ),
}
PRICES = {WETH: 2_000 * 10**8, USDC: 10**8}
# 10 WETH of collateral, 15,000 USDC of debt: HF about 1.1.
POSITION = Position("0x" + "33" * 20, 1 << 1 | 1 << 2, {WETH: 10 * WAD}, {USDC: 15_000 * 10**6})
# A WETH/USDC pool deep enough that the swap costs little.
RESERVE_WETH, RESERVE_USDC = 5_000 * WAD, 10_000_000 * 10**6


def quote(collateral: str, debt: str, amount_out: int) -> int | None:
    assert (collateral, debt) == (WETH, USDC)
    if amount_out >= RESERVE_USDC:
        return None
    return min_amount_in(amount_out, RESERVE_WETH, RESERVE_USDC, 30)


def plan(target: int) -> DeleveragePlan | Unprotectable:
    return plan_deleverage(
        POSITION, RESERVES, PRICES, NOW, target_health_factor=target, flash_loan_premium=5, quote=quote
    )


def test_the_plan_reaches_the_target_with_the_least_repayment() -> None:
    before = account_data(POSITION, RESERVES, PRICES, NOW).health_factor
    target = 14 * WAD // 10
    sized = plan(target)
    assert isinstance(sized, DeleveragePlan)
    assert sized.health_factor_before == before < target
    assert sized.health_factor_after >= target
    assert sized.premium == (sized.repay * 5 + 5_000) // 10_000
    assert sized.collateral == quote(WETH, USDC, sized.repay + sized.premium) + 1  # type: ignore[operator]

    def hf_after(repay: int) -> int:
        quoted = quote(WETH, USDC, repay + (repay * 5 + 5_000) // 10_000)
        assert quoted is not None
        collateral = quoted + 1
        after = after_deleverage(
            POSITION,
            RESERVES,
            NOW,
            collateral_asset=WETH,
            collateral=collateral,
            debt_asset=USDC,
            repay=repay,
        )
        return account_data(after, RESERVES, PRICES, NOW).health_factor

    assert hf_after(sized.repay) == sized.health_factor_after
    assert hf_after(sized.repay - 1) < target
    # Selling collateral costs the pool's fee and the premium: a positive cost, under 1% here.
    repaid_value = sized.repay * PRICES[USDC] // 10**6
    assert 0 < sized.cost_base < repaid_value // 100


def test_the_post_state_burns_scaled_balances_at_the_normalised_indexes() -> None:
    repay, collateral = 1_000 * 10**6, WAD
    after = after_deleverage(
        POSITION, RESERVES, NOW, collateral_asset=WETH, collateral=collateral, debt_asset=USDC, repay=repay
    )
    debt_index = RESERVES[USDC].normalized_debt(NOW)
    income = RESERVES[WETH].normalized_income(NOW)
    assert after.scaled_debt[USDC] == 15_000 * 10**6 - (repay * RAY + debt_index // 2) // debt_index
    assert after.scaled_collateral[WETH] == 10 * WAD - (collateral * RAY + income // 2) // income
    assert after.configuration == POSITION.configuration
    # Repaying everything clears the borrowing bit: no debt, HF max.
    full = POSITION.debt_balance(RESERVES[USDC], NOW)
    cleared = after_deleverage(
        POSITION, RESERVES, NOW, collateral_asset=WETH, collateral=0, debt_asset=USDC, repay=full
    )
    assert not cleared.is_borrowing(RESERVES[USDC].id)


def test_unreachable_target_and_missing_route_are_reported() -> None:
    # A route that can only deliver 500 USDC repays too little to reach HF 1.4.
    shallow = size_pair(
        POSITION,
        RESERVES,
        PRICES,
        NOW,
        collateral_asset=WETH,
        debt_asset=USDC,
        target_health_factor=14 * WAD // 10,
        flash_loan_premium=5,
        quote=lambda c, d, a: quote(c, d, a) if a <= 500 * 10**6 else None,
    )
    assert shallow is Unprotectable.TARGET_UNREACHABLE
    no_route = size_pair(
        POSITION,
        RESERVES,
        PRICES,
        NOW,
        collateral_asset=WETH,
        debt_asset=USDC,
        target_health_factor=14 * WAD // 10,
        flash_loan_premium=5,
        quote=lambda c, d, a: None,
    )
    assert no_route is Unprotectable.NO_ROUTE
    assert (
        size_pair(
            POSITION,
            RESERVES,
            PRICES,
            NOW,
            collateral_asset=USDC,
            debt_asset=USDC,
            target_health_factor=14 * WAD // 10,
            flash_loan_premium=5,
            quote=quote,
        )
        is Unprotectable.NO_COLLATERAL
    )
