"""The fee of one protected transaction (mevaas_core.protection_fees), shared by execution (what it
answers) and analytics (what it bills)."""

from __future__ import annotations

from decimal import Decimal

from mevaas.common.v1 import common_pb2
from mevaas_analytics.domain.fees import Pricing
from mevaas_core.protection_fees import protection_fee


def _plan(protection: str, fair: str | None = None, currency: str = "USD") -> common_pb2.Plan:
    plan = common_pb2.Plan(
        name="p",
        monthly_base_fee=common_pb2.Money(currency_code=currency, amount="1000.00"),
        protection_fee_per_transaction=common_pb2.Money(currency_code=currency, amount=protection),
    )
    if fair is not None:
        plan.fair_ordering_fee_per_transaction.CopyFrom(common_pb2.Money(currency_code=currency, amount=fair))
    return plan


def test_a_private_transaction_costs_the_plan_s_protection_fee() -> None:
    fee = protection_fee(_plan("2.00"), common_pb2.TIER_PROFESSIONAL, fair=False)
    assert (fee.protection, fee.fair_ordering, fee.amount, fee.currency) == (
        Decimal("2.00"),
        Decimal(0),
        Decimal("2.00"),
        "USD",
    )


def test_fair_ordering_adds_the_tier_s_standard_fee_unless_the_plan_sets_one() -> None:
    expected = {
        common_pb2.TIER_STARTER: Decimal("7.00"),
        common_pb2.TIER_PROFESSIONAL: Decimal("6.00"),
        common_pb2.TIER_ENTERPRISE: Decimal("5.50"),
    }
    for tier, amount in expected.items():
        assert protection_fee(_plan("5.00"), tier, fair=True).amount == amount
    fee = protection_fee(_plan("0.35", fair="0.15", currency="EUR"), common_pb2.TIER_STARTER, fair=True)
    assert (fee.amount, fee.fair_ordering, fee.currency) == (Decimal("0.50"), Decimal("0.15"), "EUR")


def test_analytics_bills_the_same_fees() -> None:
    for plan, tier in (
        (_plan("2.00"), common_pb2.TIER_PROFESSIONAL),
        (_plan("1", "0.25"), common_pb2.TIER_STARTER),
    ):
        pricing = Pricing.from_plan(plan, tier)
        fee = protection_fee(plan, tier, fair=True)
        assert (pricing.protection_fee, pricing.fair_ordering_fee) == (fee.protection, fee.fair_ordering)
