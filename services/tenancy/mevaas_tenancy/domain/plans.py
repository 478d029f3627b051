"""Standard plans per tier, from the brief's pricing (base fee + performance fee or tiered revenue
share, per-transaction fees) plus the entitlements the platform enforces. A tenant may be given a
custom plan; these are the defaults when none is supplied."""

from __future__ import annotations

from mevaas.common.v1 import common_pb2


def _money(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", amount=amount)


def _band(up_to: str, percent: str) -> common_pb2.RevenueShareBand:
    return common_pb2.RevenueShareBand(up_to_profit=up_to, fee_percent=common_pb2.Decimal(value=percent))


def standard_plan(tier: int) -> common_pb2.Plan:
    if tier == common_pb2.TIER_STARTER:
        return common_pb2.Plan(
            name="starter-standard",
            monthly_base_fee=_money("25000.00"),
            performance_fee_percent=common_pb2.Decimal(value="20"),
            protection_fee_per_transaction=_money("5.00"),
            execution_fee_per_transaction=_money("0"),
            rate_limit_per_second=20,
            rate_limit_burst=40,
            max_strategies=5,
            max_allocation=_money("1000000.00"),
            max_concurrent_executions=2,
        )
    if tier == common_pb2.TIER_PROFESSIONAL:
        return common_pb2.Plan(
            name="professional-standard",
            monthly_base_fee=_money("100000.00"),
            performance_fee_percent=common_pb2.Decimal(value="15"),
            protection_fee_per_transaction=_money("2.00"),
            execution_fee_per_transaction=_money("0"),
            rate_limit_per_second=100,
            rate_limit_burst=200,
            max_strategies=25,
            max_allocation=_money("25000000.00"),
            max_concurrent_executions=10,
        )
    return common_pb2.Plan(
        name="enterprise-standard",
        monthly_base_fee=_money("500000.00"),
        revenue_share_bands=[_band("1000000", "25"), _band("5000000", "20"), _band("", "15")],
        protection_fee_per_transaction=_money("1.00"),
        execution_fee_per_transaction=_money("0"),
        rate_limit_per_second=500,
        rate_limit_burst=1000,
        max_strategies=200,
        max_allocation=_money("500000000.00"),
        max_concurrent_executions=50,
    )
