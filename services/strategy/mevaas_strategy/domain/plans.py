"""The plan limits strategy enforces (max strategies, max allocation), from the tenant's Plan as the
latest `tenant.*` event carried it; before any event arrived, from the tier in the caller's token.

The tier fallback mirrors tenancy's standard plans (the values tenants get unless an operator gave
them a custom plan); services share no code with tenancy, only its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from mevaas.common.v1 import common_pb2


@dataclass(frozen=True, slots=True)
class PlanLimits:
    max_strategies: int
    # USD notional; None = unlimited.
    max_allocation_usd: Decimal | None
    source: str

    @classmethod
    def from_plan(cls, plan: common_pb2.Plan) -> PlanLimits:
        limit: Decimal | None = None
        if plan.max_allocation.amount:
            try:
                limit = Decimal(plan.max_allocation.amount)
            except InvalidOperation:
                limit = None
        return cls(plan.max_strategies or 0, limit, "plan")


STANDARD_BY_TIER = {
    "starter": PlanLimits(5, Decimal("1000000.00"), "tier"),
    "professional": PlanLimits(25, Decimal("25000000.00"), "tier"),
    "enterprise": PlanLimits(200, Decimal("500000000.00"), "tier"),
}


def limits_for_tier(tier: str) -> PlanLimits:
    """Standard limits of a tier; an unknown tier gets the smallest."""
    return STANDARD_BY_TIER.get(tier.lower(), STANDARD_BY_TIER["starter"])
