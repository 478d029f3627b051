"""Monthly invoices computed exactly in Decimal from a tenant's plan, usage and profit.

Billing rules:

* Periods are UTC calendar months; the revenue-share year is the UTC calendar year, so the
  cumulative profit that places a month in the bands restarts every 1 January.
* The profit base of a month is the tenant's realised profit net of gas (ExecutionResult
  `realized_profit` of included and reverted executions), valued in the plan currency (see
  `valuation`) and rounded half-even to the currency's minor unit ONCE per month. A month whose
  profit is negative bills no performance fee or revenue share and earns no credit: the
  cumulative profit of the year only grows by billed (positive) months.
* Flat performance fee: `profit_base * performance_fee_percent / 100`. Tiered revenue share
  (replaces the flat fee when the plan has bands): the month's profit occupies
  [ytd_before, ytd_before + profit_base) of the year's cumulative profit; every band that range
  touches gives one line with the exact overlap as quantity and the band's percent as rate, so a
  month straddling a boundary is split exactly.
* Per-transaction fees: `count * unit_price` for protected (private) transactions and for
  executed strategy transactions.
* Every line amount is rounded half-even (banker's rounding) to the minor unit at the line level;
  subtotal is the sum of rounded lines, tax is `subtotal * tax_percent / 100` rounded the same
  way, total = subtotal + tax. Every revenue-share band touched gets its line even when its
  amount rounds to zero; per-transaction lines appear only when both count and price are non-zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2

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
    digits = MINOR_UNITS.get(currency, 2)
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

    @classmethod
    def from_plan(cls, plan: common_pb2.Plan) -> Pricing:
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
            execution_fee=money(plan.execution_fee_per_transaction),
        )


@dataclass(frozen=True)
class MonthlyUsage:
    """What a tenant did in one billing month."""

    # Realised profit of the month valued in the plan currency, exact (may be negative).
    profit: Fraction
    # Billed profit bases of the earlier months of the same billing year (plan currency).
    year_to_date_before: Decimal
    protected_transactions: int
    executed_transactions: int


@dataclass(frozen=True)
class LineItem:
    kind: int
    description: str
    quantity: Decimal
    amount: Decimal
    unit_price: Decimal | None = None
    rate_percent: Decimal | None = None


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
    for kind, label, count, price in (
        (
            analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE,
            "Protected transactions",
            usage.protected_transactions,
            pricing.protection_fee,
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
    subtotal = sum((line.amount for line in lines), Decimal(0))
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
        amount=common_pb2.Money(currency_code=currency, amount=decimal_text(line.amount)),
    )
    if line.unit_price is not None:
        item.unit_price.CopyFrom(
            common_pb2.Money(currency_code=currency, amount=decimal_text(line.unit_price))
        )
    if line.rate_percent is not None:
        item.rate_percent.CopyFrom(common_pb2.Decimal(value=decimal_text(line.rate_percent)))
    return item
