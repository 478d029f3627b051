"""Aave V3's own integer math, transcribed from ``@aave/core-v3`` (1.19.3) so that the platform's
numbers are the protocol's to the wei: ``WadRayMath`` and ``PercentageMath`` (half-up rounding),
``MathUtils`` (linear income, third-order compounded debt), ``ReserveLogic.getNormalized*``,
``GenericLogic.calculateUserAccountData`` and ``LiquidationLogic``'s close factor and collateral
sizing. Every function here is pure; the Solidity it mirrors is named in its docstring.
``steady_liquidation`` is ours: the liquidation size whose outcome does not depend on the block
time it lands at.

Not modelled: e-mode categories and stable-rate debt (the devnet enables neither; Aave has
deprecated stable borrowing), isolation mode and the price oracle sentinel (L2 only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WAD = 10**18
HALF_WAD = WAD // 2
RAY = 10**27
HALF_RAY = RAY // 2
PERCENTAGE_FACTOR = 10**4
HALF_PERCENTAGE_FACTOR = PERCENTAGE_FACTOR // 2
SECONDS_PER_YEAR = 365 * 24 * 3600
MAX_UINT = 2**256 - 1
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD
CLOSE_FACTOR_HF_THRESHOLD = 95 * WAD // 100
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5_000
MAX_LIQUIDATION_CLOSE_FACTOR = 10_000


def wad_mul(a: int, b: int) -> int:
    return (a * b + HALF_WAD) // WAD


def wad_div(a: int, b: int) -> int:
    return (a * WAD + b // 2) // b


def ray_mul(a: int, b: int) -> int:
    return (a * b + HALF_RAY) // RAY


def ray_div(a: int, b: int) -> int:
    return (a * RAY + b // 2) // b


def percent_mul(value: int, percentage: int) -> int:
    return (value * percentage + HALF_PERCENTAGE_FACTOR) // PERCENTAGE_FACTOR


def percent_div(value: int, percentage: int) -> int:
    return (value * PERCENTAGE_FACTOR + percentage // 2) // percentage


def linear_interest(rate: int, last_update: int, now: int) -> int:
    """MathUtils.calculateLinearInterest."""
    return RAY + rate * (now - last_update) // SECONDS_PER_YEAR


def compounded_interest(rate: int, last_update: int, now: int) -> int:
    """MathUtils.calculateCompoundedInterest (binomial expansion to the third term)."""
    exp = now - last_update
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate) // SECONDS_PER_YEAR
    second_term = exp * exp_minus_one * base_power_two // 2
    third_term = exp * exp_minus_one * exp_minus_two * base_power_three // 6
    return RAY + rate * exp // SECONDS_PER_YEAR + second_term + third_term


@dataclass(frozen=True)
class ReserveParams:
    """The ReserveConfiguration bitmap, decoded (ReserveConfiguration.sol's bit layout)."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    decimals: int
    active: bool
    frozen: bool
    borrowing_enabled: bool
    paused: bool
    reserve_factor: int
    liquidation_protocol_fee: int
    emode_category: int

    @classmethod
    def decode(cls, data: int) -> ReserveParams:
        def bits(start: int, width: int) -> int:
            return (data >> start) & ((1 << width) - 1)

        return cls(
            ltv=bits(0, 16),
            liquidation_threshold=bits(16, 16),
            liquidation_bonus=bits(32, 16),
            decimals=bits(48, 8),
            active=bool(bits(56, 1)),
            frozen=bool(bits(57, 1)),
            borrowing_enabled=bool(bits(58, 1)),
            paused=bool(bits(60, 1)),
            reserve_factor=bits(64, 16),
            liquidation_protocol_fee=bits(152, 16),
            emode_category=bits(168, 8),
        )


@dataclass(frozen=True)
class Reserve:
    """One reserve as the Pool stores it (``getReserveData``)."""

    asset: str
    id: int
    configuration: int
    liquidity_index: int
    liquidity_rate: int
    variable_borrow_index: int
    variable_borrow_rate: int
    last_update: int
    a_token: str
    variable_debt_token: str

    @property
    def params(self) -> ReserveParams:
        return ReserveParams.decode(self.configuration)

    def normalized_income(self, now: int) -> int:
        """ReserveLogic.getNormalizedIncome at block time ``now``."""
        if self.last_update == now:
            return self.liquidity_index
        return ray_mul(linear_interest(self.liquidity_rate, self.last_update, now), self.liquidity_index)

    def normalized_debt(self, now: int) -> int:
        """ReserveLogic.getNormalizedDebt at block time ``now``."""
        if self.last_update == now:
            return self.variable_borrow_index
        return ray_mul(
            compounded_interest(self.variable_borrow_rate, self.last_update, now), self.variable_borrow_index
        )


@dataclass(frozen=True)
class Position:
    """A user's Aave position: its UserConfiguration bitmap and scaled balances per asset."""

    user: str
    configuration: int
    scaled_collateral: Mapping[str, int]
    scaled_debt: Mapping[str, int]

    def is_collateral(self, reserve_id: int) -> bool:
        return bool((self.configuration >> (2 * reserve_id + 1)) & 1)

    def is_borrowing(self, reserve_id: int) -> bool:
        return bool((self.configuration >> (2 * reserve_id)) & 1)

    @property
    def has_debt(self) -> bool:
        return any(self.scaled_debt.values())

    def collateral_balance(self, reserve: Reserve, now: int) -> int:
        """AToken.balanceOf: scaled balance times the normalised income."""
        return ray_mul(self.scaled_collateral.get(reserve.asset, 0), reserve.normalized_income(now))

    def debt_balance(self, reserve: Reserve, now: int) -> int:
        """VariableDebtToken.balanceOf."""
        scaled = self.scaled_debt.get(reserve.asset, 0)
        return ray_mul(scaled, reserve.normalized_debt(now)) if scaled else 0


@dataclass(frozen=True)
class AccountData:
    """What ``Pool.getUserAccountData`` returns (base currency = the oracle's, 8-decimal USD)."""

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    liquidation_threshold: int
    ltv: int
    health_factor: int

    @property
    def liquidatable(self) -> bool:
        return self.health_factor < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


def account_data(
    position: Position, reserves: Mapping[str, Reserve], prices: Mapping[str, int], now: int
) -> AccountData:
    """GenericLogic.calculateUserAccountData + calculateAvailableBorrows, in reserve-id order."""
    if position.configuration == 0:
        return AccountData(0, 0, 0, 0, 0, MAX_UINT)
    collateral = debt = avg_ltv = avg_threshold = 0
    for reserve in sorted(reserves.values(), key=lambda r: r.id):
        collateral_on = position.is_collateral(reserve.id)
        borrowing = position.is_borrowing(reserve.id)
        if not (collateral_on or borrowing):
            continue
        params = reserve.params
        unit = 10**params.decimals
        price = prices[reserve.asset]
        if params.liquidation_threshold != 0 and collateral_on:
            value = position.collateral_balance(reserve, now) * price // unit
            collateral += value
            avg_ltv += value * params.ltv
            avg_threshold += value * params.liquidation_threshold
        if borrowing:
            debt += position.debt_balance(reserve, now) * price // unit
    avg_ltv = avg_ltv // collateral if collateral else 0
    avg_threshold = avg_threshold // collateral if collateral else 0
    hf = MAX_UINT if debt == 0 else wad_div(percent_mul(collateral, avg_threshold), debt)
    available = percent_mul(collateral, avg_ltv)
    return AccountData(collateral, debt, max(0, available - debt), avg_threshold, avg_ltv, hf)


def max_liquidatable_debt(total_debt: int, health_factor: int) -> int:
    """LiquidationLogic._calculateDebt's cap: the close factor's share of the debt (half of it,
    all of it once the health factor is at or under 0.95)."""
    close_factor = (
        DEFAULT_LIQUIDATION_CLOSE_FACTOR
        if health_factor > CLOSE_FACTOR_HF_THRESHOLD
        else MAX_LIQUIDATION_CLOSE_FACTOR
    )
    return percent_mul(total_debt, close_factor)


@dataclass(frozen=True)
class Liquidation:
    """What ``liquidationCall`` does with a position: the debt it repays, the collateral the
    liquidator receives, and the protocol's fee (collateral sent to the treasury)."""

    user: str
    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    collateral_to_liquidator: int
    protocol_fee: int
    health_factor: int

    @property
    def outcome(self) -> tuple[int, int, int]:
        """What the call moves: debt repaid, collateral to the liquidator, the protocol's fee."""
        return (self.debt_to_cover, self.collateral_to_liquidator, self.protocol_fee)


def liquidation(
    position: Position,
    reserves: Mapping[str, Reserve],
    prices: Mapping[str, int],
    now: int,
    *,
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int = MAX_UINT,
) -> Liquidation | None:
    """LiquidationLogic.executeLiquidationCall's arithmetic (None where validation would revert:
    HF not under 1, no such debt, collateral not enabled or with a zero threshold)."""
    hf = account_data(position, reserves, prices, now).health_factor
    collateral, debt = reserves[collateral_asset], reserves[debt_asset]
    if hf >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return None
    if not position.is_collateral(collateral.id) or collateral.params.liquidation_threshold == 0:
        return None
    total_debt = position.debt_balance(debt, now)
    if total_debt == 0:
        return None
    actual_debt = min(debt_to_cover, max_liquidatable_debt(total_debt, hf))
    user_collateral = position.collateral_balance(collateral, now)
    c_params, d_params = collateral.params, debt.params
    c_unit, d_unit = 10**c_params.decimals, 10**d_params.decimals
    c_price, d_price = prices[collateral_asset], prices[debt_asset]
    bonus = c_params.liquidation_bonus
    base_collateral = d_price * actual_debt * c_unit // (c_price * d_unit)
    max_collateral = percent_mul(base_collateral, bonus)
    if max_collateral > user_collateral:
        collateral_amount = user_collateral
        debt_needed = percent_div(c_price * collateral_amount * d_unit // (d_price * c_unit), bonus)
    else:
        collateral_amount, debt_needed = max_collateral, actual_debt
    fee = 0
    if c_params.liquidation_protocol_fee != 0:
        bonus_collateral = collateral_amount - percent_div(collateral_amount, bonus)
        fee = percent_mul(bonus_collateral, c_params.liquidation_protocol_fee)
    return Liquidation(
        user=position.user,
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        debt_to_cover=debt_needed,
        collateral_to_liquidator=collateral_amount - fee,
        protocol_fee=fee,
        health_factor=hf,
    )


def steady_liquidation(
    position: Position,
    reserves: Mapping[str, Reserve],
    prices: Mapping[str, int],
    since: int,
    *,
    window: int,
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int = MAX_UINT,
) -> Liquidation | None:
    """The largest liquidation requesting at most ``debt_to_cover`` whose outcome (debt repaid,
    collateral to the liquidator, protocol fee) is the same at every block time from ``since``
    to ``since + window``, and which repays in full the debt it requests (so the request is its
    own ``debt_to_cover``). None when no amount is (the position is not liquidatable throughout).

    Why: where ``liquidationCall`` would seize more than the borrower's collateral it takes the
    whole balance instead and works the debt back from it (``percentDiv``). That balance grows
    with the liquidity index every second, and the debt so worked out, requested again, rounds to
    a collateral just under or over the balance: the outcome moves by a wei or more between the
    block it was predicted at and the one it lands in. Staying under the cap and the close factor
    at every second of the window, the pool repays exactly the request and pays the collateral
    that prices and the bonus give, whatever the block's time.

    A binary search over the request with ``liquidation``'s exact arithmetic, steady meaning the
    same outcome at both ends of the window; the answer is then checked at every second of it
    rather than trusting that the balance and the close factor move one way only."""
    end = since + window

    def outcome(debt: int, now: int) -> tuple[int, int, int] | None:
        sized = liquidation(
            position,
            reserves,
            prices,
            now,
            collateral_asset=collateral_asset,
            debt_asset=debt_asset,
            debt_to_cover=debt,
        )
        return None if sized is None else sized.outcome

    def steady(debt: int) -> bool:
        first = outcome(debt, since)
        return first is not None and first[0] == debt and first == outcome(debt, end)

    if outcome(debt_to_cover, since) is None:
        return None
    # Up to the close factor's cap, not the debt worked back from the collateral where that caps
    # the call: requesting a little more than that still stays under the balance.
    hf = account_data(position, reserves, prices, since).health_factor
    total_debt = position.debt_balance(reserves[debt_asset], since)
    # Invariant: ``low`` is steady (0 stands for no liquidation), ``high`` is not (or is the
    # largest request the pool takes and steady itself, when no search is needed).
    low, high = 0, min(debt_to_cover, max_liquidatable_debt(total_debt, hf))
    if steady(high):
        low = high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if steady(middle) else (low, middle)
    if low == 0:
        return None
    sized = liquidation(
        position,
        reserves,
        prices,
        since,
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        debt_to_cover=low,
    )
    if sized is None or any(outcome(low, now) != sized.outcome for now in range(since + 1, end)):
        return None
    return sized
