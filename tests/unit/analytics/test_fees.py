"""Invoices of every pricing structure, with exact Decimal line items and tier boundaries."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas_analytics.domain.fees import (
    MonthlyUsage,
    Pricing,
    compute_invoice,
    round_fraction,
    to_proto_line,
)

D = Decimal
BASE = analytics_pb2.LINE_ITEM_KIND_BASE_FEE
PERF = analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE
SHARE = analytics_pb2.LINE_ITEM_KIND_REVENUE_SHARE
PROT = analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE
EXEC = analytics_pb2.LINE_ITEM_KIND_EXECUTION_FEE


def usd(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", amount=amount)


def flat_plan(percent: str = "20", protection: str = "5.00", execution: str = "0") -> Pricing:
    return Pricing.from_plan(
        common_pb2.Plan(
            name="starter-standard",
            monthly_base_fee=usd("25000.00"),
            performance_fee_percent=common_pb2.Decimal(value=percent),
            protection_fee_per_transaction=usd(protection),
            execution_fee_per_transaction=usd(execution),
        )
    )


def tiered_plan() -> Pricing:
    def band(up_to: str, percent: str) -> common_pb2.RevenueShareBand:
        return common_pb2.RevenueShareBand(up_to_profit=up_to, fee_percent=common_pb2.Decimal(value=percent))

    return Pricing.from_plan(
        common_pb2.Plan(
            name="enterprise-standard",
            monthly_base_fee=usd("500000.00"),
            # Ignored: bands replace the flat fee.
            performance_fee_percent=common_pb2.Decimal(value="99"),
            revenue_share_bands=[band("1000000", "25"), band("5000000", "20"), band("", "15")],
            protection_fee_per_transaction=usd("1.00"),
        )
    )


def usage(profit: str, ytd: str = "0", protected: int = 0, executed: int = 0) -> MonthlyUsage:
    return MonthlyUsage(
        profit=Fraction(Decimal(profit)),
        year_to_date_before=D(ytd),
        protected_transactions=protected,
        executed_transactions=executed,
    )


def lines(invoice_lines: tuple[object, ...]) -> list[tuple[int, Decimal, Decimal | None, Decimal]]:
    return [(li.kind, li.quantity, li.rate_percent, li.amount) for li in invoice_lines]  # type: ignore[attr-defined]


def test_base_plus_flat_performance_fee_and_protection_fees() -> None:
    # 12345.675 is valued to the cent half-even (7 is odd -> up): 12345.68; 20 % = 2469.136 -> 2469.14.
    invoice = compute_invoice(flat_plan(), usage("12345.675", protected=7))
    assert invoice.profit_base == D("12345.68")
    assert lines(invoice.line_items) == [
        (BASE, D(1), None, D("25000.00")),
        (PERF, D("12345.68"), D(20), D("2469.14")),
        (PROT, D(7), None, D("35.00")),
    ]
    assert invoice.subtotal == D("27504.14")
    assert invoice.tax == D("0.00")
    assert invoice.total == D("27504.14")


@pytest.mark.parametrize(
    ("profit", "fee"),
    [
        ("1000.10", "150.02"),  # 150.015: 1 is odd -> rounds up
        ("1000.30", "150.04"),  # 150.045: 4 is even -> stays (half-up would give 150.05)
        ("0.03", "0.00"),  # 0.0045 -> below half
    ],
)
def test_line_items_round_half_even_to_cents(profit: str, fee: str) -> None:
    invoice = compute_invoice(flat_plan("15"), usage(profit))
    assert invoice.line_items[1].amount == D(fee)


def test_execution_fee_per_transaction_and_tax() -> None:
    invoice = compute_invoice(
        flat_plan(percent="0", protection="2.50", execution="0.75"),
        usage("100", protected=3, executed=5),
        tax_percent=D("8.25"),
    )
    assert lines(invoice.line_items) == [
        (BASE, D(1), None, D("25000.00")),
        (PROT, D(3), None, D("7.50")),
        (EXEC, D(5), None, D("3.75")),
    ]
    assert invoice.subtotal == D("25011.25")
    # 25011.25 * 8.25 % = 2063.428125 -> 2063.43
    assert invoice.tax == D("2063.43")
    assert invoice.total == D("27074.68")


def test_negative_month_bills_only_fixed_fees() -> None:
    invoice = compute_invoice(flat_plan(), usage("-5000.00", protected=1))
    assert invoice.profit_base == D(0)
    assert [li.kind for li in invoice.line_items] == [BASE, PROT]
    tiered = compute_invoice(tiered_plan(), usage("-1", ytd="2000000"))
    assert [li.kind for li in tiered.line_items] == [BASE]


def test_profit_exactly_at_first_band_boundary_is_one_band() -> None:
    invoice = compute_invoice(tiered_plan(), usage("1000000.00"))
    assert lines(invoice.line_items)[1:] == [(SHARE, D("1000000.00"), D(25), D("250000.00"))]
    assert invoice.total == D("750000.00")


def test_one_cent_over_the_first_band_is_split_exactly() -> None:
    invoice = compute_invoice(tiered_plan(), usage("1000000.01"))
    assert lines(invoice.line_items)[1:] == [
        (SHARE, D("1000000.00"), D(25), D("250000.00")),
        # 0.01 * 20 % = 0.002 -> 0.00, but the band is touched so its line is shown.
        (SHARE, D("0.01"), D(20), D("0.00")),
    ]


def test_next_month_starts_in_second_band_from_year_to_date() -> None:
    invoice = compute_invoice(tiered_plan(), usage("0.05", ytd="1000000.00"))
    assert lines(invoice.line_items)[1:] == [(SHARE, D("0.05"), D(20), D("0.01"))]  # 0.010


def test_month_crossing_five_million_is_split() -> None:
    invoice = compute_invoice(tiered_plan(), usage("1000000.00", ytd="4500000.00", protected=10))
    assert lines(invoice.line_items) == [
        (BASE, D(1), None, D("500000.00")),
        (SHARE, D("500000.00"), D(20), D("100000.00")),
        (SHARE, D("500000.00"), D(15), D("75000.00")),
        (PROT, D(10), None, D("10.00")),
    ]
    assert invoice.total == D("675010.00")


def test_month_spanning_all_three_bands() -> None:
    invoice = compute_invoice(tiered_plan(), usage("6000000.00", ytd="0"))
    assert lines(invoice.line_items)[1:] == [
        (SHARE, D("1000000.00"), D(25), D("250000.00")),
        (SHARE, D("4000000.00"), D(20), D("800000.00")),
        (SHARE, D("1000000.00"), D(15), D("150000.00")),
    ]


def test_month_above_all_bounds_uses_last_band_only() -> None:
    invoice = compute_invoice(tiered_plan(), usage("333.33", ytd="7000000"))
    # 333.33 * 15 % = 49.9995 -> 50.00
    assert lines(invoice.line_items)[1:] == [(SHARE, D("333.33"), D(15), D("50.00"))]


def test_month_inside_first_band_after_earlier_months() -> None:
    invoice = compute_invoice(tiered_plan(), usage("200000", ytd="900000"))
    assert lines(invoice.line_items)[1:] == [
        (SHARE, D("100000.00"), D(25), D("25000.00")),
        (SHARE, D("100000.00"), D(20), D("20000.00")),
    ]


def test_round_fraction_is_half_even_for_both_signs() -> None:
    assert round_fraction(Fraction(1, 200), "USD") == D("0.00")
    assert round_fraction(Fraction(3, 200), "USD") == D("0.02")
    assert round_fraction(Fraction(-1, 200), "USD") == D("0.00")
    assert round_fraction(Fraction(-3, 200), "USD") == D("-0.02")
    assert round_fraction(Fraction(1, 3), "USD") == D("0.33")
    assert round_fraction(Fraction(5, 2), "JPY") == D("2")


def test_proto_line_item() -> None:
    invoice = compute_invoice(flat_plan(), usage("10"))
    item = to_proto_line(invoice.line_items[1], "USD")
    assert item.kind == PERF
    assert item.quantity.value == "10.00"
    assert item.rate_percent.value == "20"
    assert item.amount == usd("2.00")
    assert not item.HasField("unit_price")
    base = to_proto_line(invoice.line_items[0], "USD")
    assert base.unit_price == usd("25000.00")
