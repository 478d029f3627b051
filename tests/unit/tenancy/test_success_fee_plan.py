"""A plan's success fees and benchmark are validated field by field: every bad value is named."""

from __future__ import annotations

from mevaas.common.v1 import common_pb2 as S
from mevaas_core.validation import Validator
from mevaas_tenancy.domain.plans import standard_plan
from mevaas_tenancy.domain.validation import validate_plan


def violations(plan: S.Plan) -> set[str]:
    v = Validator()
    validate_plan(plan, "plan", v)
    return {f.field for f in v.violations}


def fee(kind: int, percent: str) -> S.SuccessFee:
    return S.SuccessFee(kind=kind, fee_percent=S.Decimal(value=percent))  # type: ignore[arg-type]


def test_a_hybrid_plan_with_success_fees_is_valid() -> None:
    plan = standard_plan(S.TIER_PROFESSIONAL)
    plan.success_fees.extend(
        [fee(S.SUCCESS_FEE_KIND_SUCCESS_BONUS, "25"), fee(S.SUCCESS_FEE_KIND_SHARPE_IMPROVEMENT, "15")]
    )
    plan.benchmark.CopyFrom(
        S.Benchmark(
            capital=S.Money(currency_code="USD", amount="10000000"),
            annual_return_percent=S.Decimal(value="5"),
            sharpe_ratio=S.Decimal(value="1.2"),
        )
    )
    assert violations(plan) == set()


def test_bad_success_fees_and_benchmark_are_named() -> None:
    plan = standard_plan(S.TIER_PROFESSIONAL)
    plan.success_fees.extend(
        [
            fee(S.SUCCESS_FEE_KIND_ALPHA, "120"),
            fee(S.SUCCESS_FEE_KIND_ALPHA, "10"),
            fee(S.SUCCESS_FEE_KIND_UNSPECIFIED, "10"),
        ]
    )
    assert violations(plan) == {
        "plan.success_fees[0].fee_percent.value",
        "plan.success_fees[0].kind",
        "plan.success_fees[1].kind",
        "plan.success_fees[2].kind",
        "plan.benchmark",
        "plan.benchmark.capital.amount",
    }
    plan.benchmark.CopyFrom(
        S.Benchmark(
            capital=S.Money(currency_code="EUR", amount="0"),
            annual_return_percent=S.Decimal(value="-150"),
            sharpe_ratio=S.Decimal(value="x"),
        )
    )
    assert {f for f in violations(plan) if f.startswith("plan.benchmark")} == {
        "plan.benchmark.capital.currency_code",
        "plan.benchmark.capital.amount",
        "plan.benchmark.annual_return_percent.value",
        "plan.benchmark.sharpe_ratio.value",
    }
