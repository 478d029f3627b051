"""What each onboarding phase allows: the one table every service gates capabilities by.

Onboarding is the brief's one-way pipeline (discovery -> setup -> deployment -> optimization ->
live; tenancy owns the phase and its transitions). A tenant still in discovery or setup is
designing and configuring: it may create strategies, wallets and limits, run backtests (the
platform's paper trading) and use MEV protection for its own signed transactions, but the platform
signs and submits nothing with its keys. Trading for real starts with deployment (the brief's
"live environment activation").

Only what a phase may refuse is listed here; everything else is allowed in every phase
(docs/onboarding.md says what and why). Callers ask `refusal(phase, capability)` and turn a
refusal into FAILED_PRECONDITION; the phase itself comes from tenancy (mevaas_core.tenant_phase).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from mevaas.common.v1 import common_pb2

PHASES: tuple[str, ...] = ("discovery", "setup", "deployment", "optimization", "live")


class Capability(enum.Enum):
    """Something a tenant does that its onboarding phase gates (the value says what, for messages)."""

    LIVE_SESSION = "live execution sessions (signing and submitting transactions)"
    REBALANCE = "portfolio rebalances (trades signed with the tenant's keys)"


_LIVE = frozenset({Capability.LIVE_SESSION, Capability.REBALANCE})

# The table: phase -> what it allows of the gated capabilities.
ALLOWED: Mapping[str, frozenset[Capability]] = {
    "discovery": frozenset(),
    "setup": frozenset(),
    "deployment": _LIVE,
    "optimization": _LIVE,
    "live": _LIVE,
}

# The proto enum <-> the phase names tenancy stores.
PHASE_OF_PROTO: Mapping[common_pb2.OnboardingPhase.ValueType, str] = {
    common_pb2.ONBOARDING_PHASE_DISCOVERY: "discovery",
    common_pb2.ONBOARDING_PHASE_SETUP: "setup",
    common_pb2.ONBOARDING_PHASE_DEPLOYMENT: "deployment",
    common_pb2.ONBOARDING_PHASE_OPTIMIZATION: "optimization",
    common_pb2.ONBOARDING_PHASE_LIVE: "live",
}
PROTO_OF_PHASE: Mapping[str, common_pb2.OnboardingPhase.ValueType] = {
    name: value for value, name in PHASE_OF_PROTO.items()
}


def first_phase_allowing(capability: Capability) -> str:
    return next(phase for phase in PHASES if capability in ALLOWED[phase])


def allows(phase: str, capability: Capability) -> bool:
    return capability in ALLOWED.get(phase, frozenset())


def refusal(phase: str, capability: Capability) -> str | None:
    """None when ``phase`` allows ``capability``; else the message a client sees: the phase, what
    it does not allow, and how to get there."""
    if allows(phase, capability):
        return None
    target = first_phase_allowing(capability)
    if phase in PHASES:
        steps = " -> ".join(PHASES[PHASES.index(phase) : PHASES.index(target) + 1])
        how = f"advance the tenant's onboarding ({steps}) with TenantService.AdvanceOnboarding"
    else:
        how = "the tenant's onboarding phase is unknown; ask the platform team"
    return (
        f"the tenant is in onboarding phase {phase!r}, which does not allow {capability.value}; "
        f"they are allowed from phase {target!r} on: {how}"
    )
