"""Monthly invoices computed exactly in Decimal from a tenant's plan, usage and profit.

Billing rules:

* Periods are UTC calendar months; the revenue-share year is the UTC calendar year, so the
  cumulative profit that places a month in the bands restarts every 1 January.
* The profit base of a month is the tenant's realised profit net of gas (ExecutionResult
  `realized_profit` of included and reverted executions), each execution valued in USD when it
  happened with the platform's price source (see `valuation`, docs/pricing.md), summed exactly
  and rounded half-even to the currency's minor unit ONCE per month. Profit in a token that
  could not be priced is in no fee base: it gets an UNPRICED_PROFIT line per token (its amount in
  token units, flagged, no money amount), never a silent 0. A month whose
  profit is negative bills no performance fee or revenue share and earns no credit: the
  cumulative profit of the year only grows by billed (positive) months.
* Flat performance fee: `profit_base * performance_fee_percent / 100`. Tiered revenue share
  (replaces the flat fee when the plan has bands): the month's profit occupies
  [ytd_before, ytd_before + profit_base) of the year's cumulative profit; every band that range
  touches gives one line with the exact overlap as quantity and the band's percent as rate, so a
  month straddling a boundary is split exactly.
* Success fees (`success_fees`): each of the plan's success fees gives a line whose quantity is
  its measure of the month against the plan's benchmark, rounded to the minor unit, billed at
  its percent only when positive; the success bonus is measured after the month's performance
  fee / revenue-share lines.
* Per-transaction fees: `count * unit_price` for the tenant's clients' protected transactions
  (the Protect RPC and SubmitProtectedTransaction; each one accepted, not refused at ingress; the
  tenant's own strategy bundles are executed strategy transactions, not protected ones), for
  those of them sent in fair-ordering mode (the fair-ordering fee, on top: the plan's, else the
  tier's standard `mevaas_core.protection_fees.FAIR_ORDERING_FEES`, the brief's $0.50-2.00), and for executed strategy
  transactions. A protected transaction is billed at the fee execution priced it with when it
  accepted it (the plan in force then), not the plan at invoice time: one line per unit price;
  only those not priced then are billed at the plan's price now.
* Leverage protection (`leverage_fees`): the yearly percent of the protected positions' priced
  collateral value, pro-rated: quantity = USD-years of protected value in the period (rounded
  half-even to the minor unit), amount = quantity * percent / 100. The percent is the tier's
  `LEVERAGE_PROTECTION_PERCENT` (the brief's 5-15% a year). Collateral the price source cannot
  price gets its own LEVERAGE_PROTECTION_FEE line per token: unpriced, quantity in whole-token-
  years (8 decimals), token_amount its base units in the latest snapshot, no amount.
* Every line amount is rounded half-even (banker's rounding) to the minor unit at the line level;
  subtotal is the sum of rounded lines, tax is `subtotal * tax_percent / 100` rounded the same
  way, total = subtotal + tax. Every revenue-share band touched gets its line even when its
  amount rounds to zero; per-transaction lines appear only when both count and price are non-zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas_analytics.domain import success_fees
from mevaas_analytics.domain.leverage_fees import LeverageAccrual
from mevaas_analytics.domain.success_fees import Benchmark
from mevaas_core.protection_fees import fair_ordering_fee

# The brief's "Leverage_Optimization: 5-15% of position value annually", by tier (percent a year).
LEVERAGE_PROTECTION_PERCENT: dict[int, Decimal] = {
    common_pb2.TIER_STARTER: Decimal(15),
    common_pb2.TIER_PROFESSIONAL: Decimal(10),
    common_pb2.TIER_ENTERPRISE: Decimal(5),
}
TOKEN_YEAR_DIGITS = 8

# ISO 4217 minor units of the currencies plans are priced in; anything else has 2.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3}
HUNDRED = Decimal(100)


def minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_EVEN)


def round_fraction(value: Fraction, currency: str) -> Decimal:
    """An exact rational rounded half-even to the currency's minor unit (no float, no context
    precision involved)."""
    return round_digits(value, MINOR_UNITS.get(currency, 2))


def round_digits(value: Fraction, digits: int) -> Decimal:
    """An exact rational rounded half-even to ``digits`` decimals."""
    scaled = value * 10**digits
    quotient, remainder = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-digits)


@dataclass(frozen=True)
class Band:
    """Revenue share band: applies to cumulative yearly profit up to `up_to` (None = unbounded)."""

    up_to: Decimal | None
    percent: Decimal


@dataclass(frozen=True)
class Pricing:
    name: str
    currency: str
    monthly_base_fee: Decimal
    performance_fee_percent: Decimal
    bands: tuple[Band, ...]
    protection_fee: Decimal
    execution_fee: Decimal
    # (SuccessFeeKind, percent) in plan order.
    success_fees: tuple[tuple[int, Decimal], ...] = ()
    benchmark: Benchmark | None = None
    fair_ordering_fee: Decimal = Decimal(0)
    leverage_protection_percent: Decimal = Decimal(0)

    @classmethod
    def from_plan(cls, plan: common_pb2.Plan, tier: int = 0) -> Pricing:
        currency = plan.monthly_base_fee.currency_code or "USD"

        def money(value: common_pb2.Money) -> Decimal:
            return Decimal(value.amount or "0")

        bands = tuple(
            Band(Decimal(b.up_to_profit) if b.up_to_profit else None, Decimal(b.fee_percent.value or "0"))
            for b in plan.revenue_share_bands
        )
        return cls(
            name=plan.name,
            currency=currency,
            monthly_base_fee=money(plan.monthly_base_fee),
            performance_fee_percent=Decimal(plan.performance_fee_percent.value or "0"),
            bands=bands,
            protection_fee=money(plan.protection_fee_per_transaction),
            fair_ordering_fee=fair_ordering_fee(plan, tier),
            execution_fee=money(plan.execution_fee_per_transaction),
            leverage_protection_percent=LEVERAGE_PROTECTION_PERCENT.get(tier, Decimal(0)),
            success_fees=tuple((f.kind, Decimal(f.fee_percent.value or "0")) for f in plan.success_fees),
            benchmark=Benchmark(
                capital=money(plan.benchmark.capital),
                annual_return_percent=Decimal(plan.benchmark.annual_return_percent.value or "0"),
                risk_free_annual_percent=Decimal(plan.benchmark.risk_free_annual_percent.value or "0"),
                sharpe_ratio=Decimal(plan.benchmark.sharpe_ratio.value or "0"),
            )
            if plan.HasField("benchmark")
            else None,
        )


@dataclass(frozen=True)
class UnpricedProfit:
    """Realised profit of the month in one token the price source could not price."""

    token: common_pb2.Token
    amount: int


@dataclass(frozen=True)
class MonthlyUsage:
    """What a tenant did in one billing month."""

    # Realised profit of the month valued in the plan currency, exact (may be negative).
    profit: Fraction
    # Billed profit bases of the earlier months of the same billing year (plan currency).
    year_to_date_before: Decimal
    protected_transactions: int
    executed_transactions: int
    # Of protected_transactions, those sent in fair-ordering mode.
    fair_ordering_transactions: int = 0
    unpriced: tuple[UnpricedProfit, ...] = ()
    # Priced realised profit per UTC day of the period (success fees); empty = none billed.
    daily_profit: tuple[Fraction, ...] = ()
    # Protected positions' value over the period (leverage protection); None = none protected.
    leverage: LeverageAccrual | None = None
    # Of protected_transactions / fair_ordering_transactions, those execution priced when it
    # accepted them: (currency, unit price then, count). The rest (not priced then, or priced in
    # another currency than the plan's now) are billed at the plan's price now.
    protection_recorded: tuple[tuple[str, Decimal, int], ...] = ()
    fair_ordering_recorded: tuple[tuple[str, Decimal, int], ...] = ()


@dataclass(frozen=True)
class LineItem:
    kind: int
    description: str
    quantity: Decimal
    # None only on an unpriced line (nothing billed, nothing counted as 0).
    amount: Decimal | None
    unit_price: Decimal | None = None
    rate_percent: Decimal | None = None
    unpriced: UnpricedProfit | None = None
    success_fee_kind: int = 0


@dataclass(frozen=True)
class InvoiceAmounts:
    currency: str
    profit_base: Decimal
    line_items: tuple[LineItem, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def revenue_share_lines(
    bands: Sequence[Band], year_to_date_before: Decimal, profit_base: Decimal, currency: str
) -> list[LineItem]:
    """One line per band touched by [ytd_before, ytd_before + profit_base)."""
    lines: list[LineItem] = []
    start, end = year_to_date_before, year_to_date_before + profit_base
    lower = Decimal(0)
    for band in bands:
        upper = band.up_to
        overlap_low = max(start, lower)
        overlap_high = end if upper is None else min(end, upper)
        if overlap_high > overlap_low:
            quantity = overlap_high - overlap_low
            bound = "above" if upper is None else "up to"
            limit = f"{lower if upper is None else upper:,f}"
            lines.append(
                LineItem(
                    kind=analytics_pb2.LINE_ITEM_KIND_REVENUE_SHARE,
                    description=f"Revenue share {band.percent}% of yearly profit {bound} {limit} {currency}",
                    quantity=quantity,
                    rate_percent=band.percent,
                    amount=round_money(quantity * band.percent / HUNDRED, currency),
                )
            )
        if upper is None:
            break
        lower = upper
    return lines


def success_fee_lines(
    pricing: Pricing, usage: MonthlyUsage, profit_lines: Sequence[LineItem]
) -> list[LineItem]:
    """One line per success fee of the plan with a positive measure (see `success_fees`)."""
    if not pricing.success_fees or pricing.benchmark is None or not usage.daily_profit:
        return []
    profit_fees = sum(
        (
            line.amount
            for line in profit_lines
            if line.amount is not None
            and line.kind
            in (analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE, analytics_pb2.LINE_ITEM_KIND_REVENUE_SHARE)
        ),
        Decimal(0),
    )
    period = success_fees.Period(usage.daily_profit, pricing.benchmark, profit_fees)
    currency = pricing.currency
    lines: list[LineItem] = []
    for kind, percent in pricing.success_fees:
        measure_of = success_fees.MEASURES.get(kind)
        if measure_of is None:
            continue
        value = measure_of(period)
        measure = (
            round_fraction(value, currency) if isinstance(value, Fraction) else round_money(value, currency)
        )
        if measure > 0 and percent:
            lines.append(
                LineItem(
                    kind=analytics_pb2.LINE_ITEM_KIND_SUCCESS_FEE,
                    description=f"Success fee {percent}% of {success_fees.KIND_LABELS[kind]}",
                    quantity=measure,
                    rate_percent=percent,
                    amount=round_money(measure * percent / HUNDRED, currency),
                    success_fee_kind=kind,
                )
            )
    return lines


def whole_tokens(amount: int, decimals: int) -> Decimal:
    """Base units as whole tokens, exactly, without trailing zeros (normalize() would round to
    the context's 28 digits)."""
    while decimals and amount % 10 == 0 and amount:
        amount, decimals = amount // 10, decimals - 1
    return Decimal(f"{amount}E-{decimals}") if amount else Decimal(0)


def unpriced_line(unpriced: UnpricedProfit) -> LineItem:
    token = unpriced.token
    name = token.symbol or f"{token.chain_id}:{token.address}"
    return LineItem(
        kind=analytics_pb2.LINE_ITEM_KIND_UNPRICED_PROFIT,
        description=f"Realised profit in {name} (chain {token.chain_id}): no price, not billed",
        quantity=whole_tokens(unpriced.amount, token.decimals),
        amount=None,
        unpriced=unpriced,
    )


def leverage_lines(pricing: Pricing, accrual: LeverageAccrual | None) -> list[LineItem]:
    """The leverage-protection fee line and one unpriced line per token it could not value."""
    if accrual is None or not pricing.leverage_protection_percent:
        return []
    currency, percent = pricing.currency, pricing.leverage_protection_percent
    lines: list[LineItem] = []
    quantity = round_fraction(accrual.usd_years, currency)
    if quantity:
        lines.append(
            LineItem(
                kind=analytics_pb2.LINE_ITEM_KIND_LEVERAGE_PROTECTION_FEE,
                description=(
                    f"Leverage protection {percent}% a year of protected collateral value "
                    f"({len(accrual.protections)} position(s); quantity in {currency}-years)"
                ),
                quantity=quantity,
                rate_percent=percent,
                amount=round_money(quantity * percent / HUNDRED, currency),
            )
        )
    for (chain_id, _), unpriced in sorted(accrual.unpriced.items()):
        token = unpriced.token
        name = token.symbol or f"{chain_id}:{token.address}"
        lines.append(
            LineItem(
                kind=analytics_pb2.LINE_ITEM_KIND_LEVERAGE_PROTECTION_FEE,
                description=(
                    f"Leverage protection of collateral in {name} (chain {chain_id}): no price "
                    f"({unpriced.reason}), not billed; quantity in token-years"
                ),
                quantity=round_digits(unpriced.token_years, TOKEN_YEAR_DIGITS),
                amount=None,
                unpriced=UnpricedProfit(token, unpriced.last_amount),
            )
        )
    return lines


def compute_invoice(
    pricing: Pricing, usage: MonthlyUsage, *, tax_percent: Decimal = Decimal(0)
) -> InvoiceAmounts:
    currency = pricing.currency
    profit_base = max(Decimal(0), round_fraction(usage.profit, currency))
    lines: list[LineItem] = [
        LineItem(
            kind=analytics_pb2.LINE_ITEM_KIND_BASE_FEE,
            description="Monthly base fee",
            quantity=Decimal(1),
            unit_price=pricing.monthly_base_fee,
            amount=round_money(pricing.monthly_base_fee, currency),
        )
    ]
    if pricing.bands:
        lines += revenue_share_lines(pricing.bands, usage.year_to_date_before, profit_base, currency)
    elif pricing.performance_fee_percent and profit_base:
        lines.append(
            LineItem(
                kind=analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE,
                description=f"Performance fee {pricing.performance_fee_percent}% of realised profit",
                quantity=profit_base,
                rate_percent=pricing.performance_fee_percent,
                amount=round_money(profit_base * pricing.performance_fee_percent / HUNDRED, currency),
            )
        )
    lines += success_fee_lines(pricing, usage, lines)
    for kind, label, count, price in (
        *(
            (analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE, "Protected transactions", n, unit)
            for unit, n in by_unit_price(
                usage.protected_transactions, usage.protection_recorded, pricing.protection_fee, currency
            )
        ),
        *(
            (analytics_pb2.LINE_ITEM_KIND_FAIR_ORDERING_FEE, "Fair-ordering transactions", n, unit)
            for unit, n in by_unit_price(
                usage.fair_ordering_transactions,
                usage.fair_ordering_recorded,
                pricing.fair_ordering_fee,
                currency,
            )
        ),
        (
            analytics_pb2.LINE_ITEM_KIND_EXECUTION_FEE,
            "Executed strategy transactions",
            usage.executed_transactions,
            pricing.execution_fee,
        ),
    ):
        if count and price:
            lines.append(
                LineItem(
                    kind=kind,
                    description=label,
                    quantity=Decimal(count),
                    unit_price=price,
                    amount=round_money(Decimal(count) * price, currency),
                )
            )
    lines += leverage_lines(pricing, usage.leverage)
    lines += [unpriced_line(u) for u in usage.unpriced]
    subtotal = sum((line.amount for line in lines if line.amount is not None), Decimal(0))
    subtotal = round_money(subtotal, currency)
    tax = round_money(subtotal * tax_percent / HUNDRED, currency)
    return InvoiceAmounts(
        currency=currency,
        profit_base=profit_base,
        line_items=tuple(lines),
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
    )


def by_unit_price(
    count: int, recorded: Sequence[tuple[str, Decimal, int]], price_now: Decimal, currency: str
) -> list[tuple[Decimal, int]]:
    """``count`` transactions grouped by the unit price they are billed at: the one recorded when
    each was accepted (in the invoice's currency), the rest at the plan's price now; one line per
    price, so a plan change within the month splits the line exactly."""
    groups: dict[Decimal, int] = defaultdict(int)
    for recorded_currency, unit, n in recorded:
        if recorded_currency == currency:
            groups[unit] += n
            count -= n
    if count > 0:
        groups[price_now] += count
    return sorted(groups.items(), reverse=True)


def decimal_text(value: Decimal) -> str:
    """`common.v1.Decimal` text: plain notation, no exponent, no trailing-zero noise beyond the
    value's own scale."""
    text = format(value, "f")
    return "0" if text in {"-0", "-0.00"} else text


def to_proto_line(line: LineItem, currency: str) -> analytics_pb2.InvoiceLineItem:
    item = analytics_pb2.InvoiceLineItem(
        kind=line.kind,  # type: ignore[arg-type]
        description=line.description,
        quantity=common_pb2.Decimal(value=decimal_text(line.quantity)),
        success_fee_kind=line.success_fee_kind,  # type: ignore[arg-type]
    )
    if line.amount is not None:
        item.amount.CopyFrom(common_pb2.Money(currency_code=currency, amount=decimal_text(line.amount)))
    if line.unpriced is not None:
        item.unpriced = True
        item.token.CopyFrom(line.unpriced.token)
        item.token_amount = str(line.unpriced.amount)
    if line.unit_price is not None:
        item.unit_price.CopyFrom(
            common_pb2.Money(currency_code=currency, amount=decimal_text(line.unit_price))
        )
    if line.rate_percent is not None:
        item.rate_percent.CopyFrom(common_pb2.Decimal(value=decimal_text(line.rate_percent)))
    return item
