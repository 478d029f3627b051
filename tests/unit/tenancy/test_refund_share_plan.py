"""A plan's backrun refund share (basis points) is validated by name: 0-10000, unset = default."""

from __future__ import annotations

from mevaas.common.v1 import common_pb2 as S
from mevaas_core.validation import Validator
from mevaas_tenancy.domain.plans import standard_plan
from mevaas_tenancy.domain.validation import validate_plan


def violations(plan: S.Plan, field: str = "plan") -> dict[str, str]:
    v = Validator()
    validate_plan(plan, field, v)
    return {f.field: f.description for f in v.violations}


def test_unset_and_the_bounds_are_valid() -> None:
    plan = standard_plan(S.TIER_PROFESSIONAL)
    assert not plan.HasField("backrun_refund_bps") and violations(plan) == {}
    for bps in (0, 5_000, 10_000):
        plan.backrun_refund_bps = bps
        assert plan.HasField("backrun_refund_bps") and violations(plan) == {}


def test_a_share_above_100_percent_is_named() -> None:
    plan = standard_plan(S.TIER_PROFESSIONAL)
    plan.backrun_refund_bps = 10_001
    assert violations(plan) == {"plan.backrun_refund_bps": "must be 0-10000 basis points (0-100%)"}
    assert set(violations(plan, "tenant.plan")) == {"tenant.plan.backrun_refund_bps"}
