"""Validation of tenancy's own value shapes (slugs, plans), beyond the shared conventions."""

from __future__ import annotations

import re
from decimal import Decimal

from mevaas.common.v1 import common_pb2
from mevaas_core.validation import Validator

SLUG = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
HUNDRED = Decimal(100)
MAX_BPS = 10_000


def _money(money: common_pb2.Money, field: str, v: Validator, currency: str | None) -> None:
    if not money.amount and not money.currency_code:
        return
    v.pattern(money.currency_code, f"{field}.currency_code", CURRENCY, "an ISO 4217 code such as USD")
    if currency and money.currency_code and money.currency_code != currency:
        v.fail(f"{field}.currency_code", f"must match the plan currency {currency}")
    v.decimal(money.amount, f"{field}.amount", low=Decimal(0))


def validate_plan(plan: common_pb2.Plan, field: str, v: Validator) -> None:
    v.length(plan.name, f"{field}.name", 1, 64)
    currency = plan.monthly_base_fee.currency_code or None
    for name in (
        "monthly_base_fee",
        "protection_fee_per_transaction",
        "execution_fee_per_transaction",
        "max_allocation",
    ):
        _money(getattr(plan, name), f"{field}.{name}", v, currency)
    if plan.performance_fee_percent.value:
        v.decimal(
            plan.performance_fee_percent.value,
            f"{field}.performance_fee_percent.value",
            low=Decimal(0),
            high=HUNDRED,
        )
    previous = Decimal(0)
    bands = list(plan.revenue_share_bands)
    for index, band in enumerate(bands):
        where = f"{field}.revenue_share_bands[{index}]"
        v.decimal(band.fee_percent.value, f"{where}.fee_percent.value", low=Decimal(0), high=HUNDRED)
        if not band.up_to_profit:
            v.check(index == len(bands) - 1, f"{where}.up_to_profit", "only the last band may be unbounded")
            continue
        bound = v.decimal(band.up_to_profit, f"{where}.up_to_profit", low=Decimal(0))
        if bound is not None:
            v.check(bound > previous, f"{where}.up_to_profit", "bands must be strictly increasing")
            previous = bound
    kinds = [fee.kind for fee in plan.success_fees]
    for index, fee in enumerate(plan.success_fees):
        where = f"{field}.success_fees[{index}]"
        v.check(fee.kind != 0, f"{where}.kind", "is required")
        v.check(kinds.count(fee.kind) == 1, f"{where}.kind", "at most one success fee per kind")
        v.decimal(fee.fee_percent.value, f"{where}.fee_percent.value", low=Decimal(0), high=HUNDRED)
    if plan.success_fees or plan.HasField("benchmark"):
        where = f"{field}.benchmark"
        v.check(plan.HasField("benchmark"), where, "is required with success fees")
        _money(plan.benchmark.capital, f"{where}.capital", v, currency)
        amount = plan.benchmark.capital.amount
        v.check(
            amount.replace(".", "", 1).isdigit() and Decimal(amount) > 0,
            f"{where}.capital.amount",
            "must be > 0",
        )
        for name in ("annual_return_percent", "risk_free_annual_percent"):
            text = getattr(plan.benchmark, name).value
            if text:
                rate = v.decimal(text, f"{where}.{name}.value")
                v.check(rate is None or rate > -HUNDRED, f"{where}.{name}.value", "must be > -100")
        if plan.benchmark.sharpe_ratio.value:
            v.decimal(plan.benchmark.sharpe_ratio.value, f"{where}.sharpe_ratio.value", low=Decimal(0))
    v.check(plan.rate_limit_per_second > 0, f"{field}.rate_limit_per_second", "must be > 0")
    v.check(plan.max_strategies > 0, f"{field}.max_strategies", "must be > 0")
    v.check(plan.max_concurrent_executions > 0, f"{field}.max_concurrent_executions", "must be > 0")
    if plan.HasField("backrun_refund_bps"):
        v.check(
            plan.backrun_refund_bps <= MAX_BPS,
            f"{field}.backrun_refund_bps",
            "must be 0-10000 basis points (0-100%)",
        )
