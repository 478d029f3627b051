"""The fee of one protected transaction a tenant's client sends (the Protect RPC or
SubmitProtectedTransaction), from the tenant's plan: one definition, used by execution when it
accepts the transaction (ProtectedTransaction.protection_fee) and by analytics when it bills it.

A transaction accepted (not refused at ingress) costs the plan's
``protection_fee_per_transaction``; in fair-ordering mode also ``fair_ordering_fee_per_transaction``,
or, for a plan that sets none, the tier's standard fair-ordering fee (the brief's "Fair_Ordering:
$0.50-2.00 per transaction")."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mevaas.common.v1 import common_pb2

FAIR_ORDERING_FEES: dict[int, Decimal] = {
    common_pb2.TIER_STARTER: Decimal("2.00"),
    common_pb2.TIER_PROFESSIONAL: Decimal("1.00"),
    common_pb2.TIER_ENTERPRISE: Decimal("0.50"),
}


@dataclass(frozen=True, slots=True)
class ProtectionFee:
    protection: Decimal
    fair_ordering: Decimal
    currency: str

    @property
    def amount(self) -> Decimal:
        return self.protection + self.fair_ordering


def fair_ordering_fee(plan: common_pb2.Plan, tier: int) -> Decimal:
    if plan.HasField("fair_ordering_fee_per_transaction"):
        return Decimal(plan.fair_ordering_fee_per_transaction.amount or "0")
    return FAIR_ORDERING_FEES.get(tier, Decimal(0))


def protection_fee(plan: common_pb2.Plan, tier: int, *, fair: bool) -> ProtectionFee:
    return ProtectionFee(
        protection=Decimal(plan.protection_fee_per_transaction.amount or "0"),
        fair_ordering=fair_ordering_fee(plan, tier) if fair else Decimal(0),
        # One currency for every amount of a plan (common.proto), as analytics bills it.
        currency=plan.monthly_base_fee.currency_code or "USD",
    )
