"""Billing of clients' protected transactions: the fair-ordering fee by tier (or the plan's own),
accepted transactions only, and refunds paid valued with the one price source (or unpriced)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics.billing.invoices import MonthAccumulator, add_protected, add_refunds, refunds_proto
from mevaas_analytics.domain.fees import MonthlyUsage, Pricing, compute_invoice
from mevaas_analytics.store.protected import protected_rows
from mevaas_chain.pricing import PricingContext, build_price_source, parse_price_table
from mevaas_chain.pricing.pools import TokenInfo
from mevaas_chain.registry import ChainRegistry

WETH = "0x" + "ee" * 20
ODD = "0x" + "0d" * 20
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def plan(fair: str | None = None) -> common_pb2.Plan:
    out = common_pb2.Plan(
        name="p",
        monthly_base_fee=common_pb2.Money(currency_code="USD", amount="0"),
        protection_fee_per_transaction=common_pb2.Money(currency_code="USD", amount="1.00"),
    )
    if fair is not None:
        out.fair_ordering_fee_per_transaction.CopyFrom(common_pb2.Money(currency_code="USD", amount=fair))
    return out


def fee_lines(pricing: Pricing, protected: int, fair: int) -> list[tuple[int, str, str]]:
    usage = MonthlyUsage(Fraction(0), Decimal(0), protected, 0, fair_ordering_transactions=fair)
    return [
        (line.kind, str(line.quantity), str(line.amount))
        for line in compute_invoice(pricing, usage).line_items
        if line.kind != analytics_pb2.LINE_ITEM_KIND_BASE_FEE
    ]


def test_the_fair_ordering_fee_is_the_tiers_unless_the_plan_sets_one() -> None:
    fair = analytics_pb2.LINE_ITEM_KIND_FAIR_ORDERING_FEE
    protection = analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE
    assert fee_lines(Pricing.from_plan(plan(), common_pb2.TIER_STARTER), 3, 2) == [
        (protection, "3", "3.00"),
        (fair, "2", "4.00"),
    ]
    assert fee_lines(Pricing.from_plan(plan(), common_pb2.TIER_PROFESSIONAL), 3, 2)[1] == (fair, "2", "2.00")
    assert fee_lines(Pricing.from_plan(plan(), common_pb2.TIER_ENTERPRISE), 3, 3)[1] == (fair, "3", "1.50")
    assert fee_lines(Pricing.from_plan(plan("0.75"), common_pb2.TIER_STARTER), 1, 1)[1] == (fair, "1", "0.75")
    # A plan that sets the fee to 0 bills none (an explicit choice, not the tier's default).
    assert fee_lines(Pricing.from_plan(plan("0"), common_pb2.TIER_STARTER), 1, 1) == [
        (protection, "1", "1.00")
    ]


def test_only_accepted_protected_transactions_count() -> None:
    months: dict[datetime, MonthAccumulator] = {}
    unpriced = {"fee_currency": "", "protection_fee": None, "fair_ordering_fee": None}
    rows: list[Any] = [
        {"accepted": True, "fair_ordering": False, "received_at": datetime(2026, 1, 5, tzinfo=UTC)},
        {"accepted": True, "fair_ordering": True, "received_at": datetime(2026, 1, 31, 23, tzinfo=UTC)},
        {"accepted": False, "fair_ordering": True, "received_at": datetime(2026, 1, 6, tzinfo=UTC)},
        {"accepted": True, "fair_ordering": True, "received_at": datetime(2026, 2, 1, tzinfo=UTC)},
    ]
    rows = [{**row, **unpriced} for row in rows]
    add_protected(months, rows)
    assert (months[JAN].protected, months[JAN].fair_ordering) == (2, 1)
    assert (
        months[datetime(2026, 2, 1, tzinfo=UTC)].protected,
        months[datetime(2026, 2, 1, tzinfo=UTC)].fair_ordering,
    ) == (1, 1)


def test_refunds_are_valued_with_the_price_source_or_flagged_unpriced() -> None:
    prices = build_price_source(
        ["fixed"], PricingContext(ChainRegistry(), table=parse_price_table(f"31337:{WETH}=2000"))
    )
    tokens = {(31337, WETH): TokenInfo("WETH", 18), (31337, ODD): TokenInfo("ODD", 6)}

    def refund(token: str, amount: int, gas: int) -> dict[str, Any]:
        return {
            "chain_id": 31337,
            "refund_token": token,
            "refund_amount": Decimal(amount),
            "gas_refund": Decimal(gas),
            "refunded_at": datetime(2026, 1, 9, tzinfo=UTC),
            "block_number": 12,
        }

    months: dict[datetime, MonthAccumulator] = {}
    rows: list[Any] = [
        refund(WETH, 9 * 10**15, 10**15),
        refund(WETH, 3 * 10**15, 0),
        refund(ODD, 5_000_000, 0),
    ]
    add_refunds(months, rows, prices, tokens)
    odd, weth = refunds_proto(months[JAN].refunds, tokens, "USD")
    # 0.012 WETH at 2000 USD = 24.00, exactly.
    assert (weth.symbol, weth.count, weth.amount, weth.gas_refund, weth.quantity.value) == (
        "WETH",
        2,
        str(12 * 10**15),
        str(10**15),
        "0.012",
    )
    assert weth.value.amount == "24.00" and not weth.unpriced
    assert months[JAN].sources == {"fixed:config"}
    assert (odd.symbol, odd.quantity.value, odd.unpriced, odd.HasField("value")) == ("ODD", "5", True, False)
    assert "31337" in odd.unpriced_reason


def recorded(fair: bool, currency: str, protection: str, fair_fee: str, day: int = 5) -> Any:
    return {
        "accepted": True,
        "fair_ordering": fair,
        "received_at": datetime(2026, 1, day, tzinfo=UTC),
        "fee_currency": currency,
        "protection_fee": Decimal(protection),
        "fair_ordering_fee": Decimal(fair_fee),
    }


def test_the_fee_recorded_at_acceptance_is_billed_not_the_plan_at_invoice_time() -> None:
    """Two transactions accepted under an earlier plan (protection 0.40, fair-ordering 0.90), one
    under the plan now (1.00, the starter tier's 2.00), one execution could not price then and
    one priced in EUR while the plan now bills USD: those two are billed at the plan's price now."""
    months: dict[datetime, MonthAccumulator] = {}
    rows: list[Any] = [
        recorded(True, "USD", "0.40", "0.90"),
        recorded(False, "USD", "0.40", "0"),
        recorded(True, "USD", "1.00", "2.00", day=20),
        {**recorded(True, "", "0", "0"), "protection_fee": None, "fair_ordering_fee": None},
        recorded(False, "EUR", "0.10", "0"),
        {**recorded(True, "USD", "0.40", "0.90"), "accepted": False},
    ]
    add_protected(months, rows)
    usage = months[JAN].usage(JAN, Decimal(0), datetime(2026, 3, 1, tzinfo=UTC))
    lines = [
        (line.kind, str(line.quantity), str(line.unit_price), str(line.amount))
        for line in compute_invoice(Pricing.from_plan(plan(), common_pb2.TIER_STARTER), usage).line_items
        if line.kind != analytics_pb2.LINE_ITEM_KIND_BASE_FEE
    ]
    protection, fair = (
        analytics_pb2.LINE_ITEM_KIND_PROTECTION_FEE,
        analytics_pb2.LINE_ITEM_KIND_FAIR_ORDERING_FEE,
    )
    assert lines == [
        (protection, "3", "1.00", "3.00"),
        (protection, "2", "0.40", "0.80"),
        (fair, "2", "2.00", "4.00"),
        (fair, "1", "0.90", "0.90"),
    ]


def test_a_transaction_priced_free_at_acceptance_stays_free() -> None:
    """A plan that charged nothing when it was accepted bills nothing for it, even at a dearer plan now."""
    months: dict[datetime, MonthAccumulator] = {}
    add_protected(months, [recorded(True, "USD", "0", "0")])
    usage = months[JAN].usage(JAN, Decimal(0), datetime(2026, 3, 1, tzinfo=UTC))
    amounts = compute_invoice(Pricing.from_plan(plan(), common_pb2.TIER_STARTER), usage)
    assert [line.kind for line in amounts.line_items] == [analytics_pb2.LINE_ITEM_KIND_BASE_FEE]


def test_the_ingested_row_keeps_the_fee_split_as_execution_recorded_it() -> None:
    event = events_pb2.ProtectedTransactionEvent(
        tenant_id="t",
        protected_transaction_id="p",
        status="received",
        protection_fee=common_pb2.Money(currency_code="USD", amount="4.50"),
        fair_ordering_fee=common_pb2.Money(currency_code="USD", amount="1.50"),
    )
    ((_, params),) = protected_rows(event)
    assert params[-3:] == (Decimal("3.00"), Decimal("1.50"), "USD")
    event.ClearField("protection_fee")
    event.ClearField("fair_ordering_fee")
    ((_, params),) = protected_rows(event)
    assert params[-3:] == (None, None, "")
