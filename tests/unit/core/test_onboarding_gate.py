"""The onboarding table (mevaas_core.onboarding) and the cached phase lookup in front of it
(mevaas_core.tenant_phase): what each phase allows, the refusal a client reads, one request per
tenant until a tenant event, an event beating an answer that was in flight, and no answer meaning
UNAVAILABLE. The lookup's transport here is a stand-in with `request` only; the real one (NATS,
tenancy answering, JetStream events invalidating) runs in tests/integration/execution/
test_onboarding_gate.py."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import onboarding
from mevaas_core.bus import NoRespondersError, RemoteError, RequestTimeoutError
from mevaas_core.errors import FailedPrecondition, NotFound, Unavailable
from mevaas_core.onboarding import Capability
from mevaas_core.tenant_phase import TenantPhases

DISCOVERY, SETUP, DEPLOYMENT = (
    common_pb2.ONBOARDING_PHASE_DISCOVERY,
    common_pb2.ONBOARDING_PHASE_SETUP,
    common_pb2.ONBOARDING_PHASE_DEPLOYMENT,
)


def test_every_phase_is_in_the_table_and_what_a_phase_allows_a_later_one_keeps() -> None:
    assert set(onboarding.ALLOWED) == set(onboarding.PHASES)
    for earlier, later in zip(onboarding.PHASES, onboarding.PHASES[1:], strict=False):
        assert onboarding.ALLOWED[earlier] <= onboarding.ALLOWED[later]
    assert set(onboarding.PHASE_OF_PROTO.values()) == set(onboarding.PHASES)
    assert set(onboarding.PROTO_OF_PHASE) == set(onboarding.PHASES)


def test_no_live_trading_before_deployment() -> None:
    for capability in Capability:
        assert onboarding.first_phase_allowing(capability) == "deployment"
        assert not onboarding.allows("discovery", capability)
        assert not onboarding.allows("setup", capability)
        assert all(onboarding.allows(p, capability) for p in ("deployment", "optimization", "live"))


def test_a_refusal_names_the_phase_what_it_refuses_and_the_way_forward() -> None:
    message = onboarding.refusal("discovery", Capability.LIVE_SESSION)
    assert message is not None
    assert "onboarding phase 'discovery'" in message
    assert "live execution sessions" in message
    assert "from phase 'deployment' on" in message
    assert "discovery -> setup -> deployment" in message and "AdvanceOnboarding" in message
    setup = onboarding.refusal("setup", Capability.REBALANCE)
    assert setup is not None and "'setup'" in setup and "setup -> deployment" in setup
    assert onboarding.refusal("deployment", Capability.LIVE_SESSION) is None
    unknown = onboarding.refusal("", Capability.LIVE_SESSION)
    assert unknown is not None and "unknown" in unknown


class Tenancy:
    """Answers like tenancy would; counts the requests; can hold one answer back or fail."""

    def __init__(self) -> None:
        self.phases: dict[str, Any] = {}
        self.statuses: dict[str, Any] = {}
        self.requests = 0
        self.hold: asyncio.Event | None = None
        self.error: Exception | None = None

    async def request(self, subject: str, message: Any, response_type: Any, **kw: Any) -> Any:
        self.requests += 1
        tenant_id = kw["tenant_id"]
        answer = common_pb2.OnboardingStateResponse(
            onboarding_phase=self.phases.get(tenant_id, DISCOVERY),
            status=self.statuses.get(tenant_id, common_pb2.TENANT_STATUS_ACTIVE),
        )
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        return answer


def event(
    tenant_id: str, phase: Any, status: Any = common_pb2.TENANT_STATUS_ACTIVE
) -> events_pb2.TenantEvent:
    return events_pb2.TenantEvent(
        tenant_id=tenant_id,
        kind=events_pb2.TENANT_EVENT_KIND_UPDATED,
        tenant=events_pb2.TenantSnapshot(tenant_id=tenant_id, onboarding_phase=phase, status=status),
    )


async def test_refused_in_discovery_naming_the_phase_then_allowed_from_the_event_without_asking() -> None:
    tenancy = Tenancy()
    phases = TenantPhases(tenancy)  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition) as refused:
        await phases.require("t1", Capability.LIVE_SESSION)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "'discovery'" in refused.value.message and refused.value.violation_type == "ONBOARDING"
    assert refused.value.subject == "tenants/t1"
    await phases.on_event(event("t1", DEPLOYMENT))
    asked = tenancy.requests
    for _ in range(3):
        await phases.require("t1", Capability.LIVE_SESSION)
        await phases.require("t1", Capability.REBALANCE)
    assert tenancy.requests == asked  # allowed from the event's snapshot, never asked again


async def test_an_allowed_answer_is_asked_once_and_a_cached_refusal_is_asked_again() -> None:
    tenancy = Tenancy()
    tenancy.phases["t1"] = DEPLOYMENT
    phases = TenantPhases(tenancy)  # type: ignore[arg-type]
    for _ in range(3):
        await phases.require("t1", Capability.LIVE_SESSION)
    assert tenancy.requests == 1
    # The cache says setup (an event), tenancy already says deployment (its next event is late).
    tenancy.phases["t2"] = DEPLOYMENT
    await phases.on_event(event("t2", SETUP))
    await phases.require("t2", Capability.LIVE_SESSION)
    assert tenancy.requests == 2
    await phases.require("t2", Capability.LIVE_SESSION)
    assert tenancy.requests == 2  # the fresh answer was kept


async def test_an_event_during_a_lookup_wins_over_the_older_answer() -> None:
    tenancy = Tenancy()
    tenancy.hold = asyncio.Event()
    phases = TenantPhases(tenancy)  # type: ignore[arg-type]
    pending = asyncio.create_task(phases.standing("t1"))  # tenancy read "discovery"...
    await asyncio.sleep(0)
    await phases.on_event(event("t1", SETUP))  # ...then the tenant advanced
    tenancy.hold.set()
    assert (await pending).phase == "discovery"  # the caller gets what it asked for
    assert (await phases.standing("t1")).phase == "setup"  # the cache kept the event's
    assert tenancy.requests == 1


async def test_a_suspended_tenant_is_refused_and_entries_expire() -> None:
    tenancy = Tenancy()
    tenancy.phases["t1"] = DEPLOYMENT
    phases = TenantPhases(tenancy, ttl_s=0.0)  # type: ignore[arg-type]
    await phases.on_event(event("t1", DEPLOYMENT, common_pb2.TENANT_STATUS_SUSPENDED))
    await phases.require("t1", Capability.LIVE_SESSION)  # expired at once: tenancy says active
    assert tenancy.requests == 1
    tenancy.statuses["t1"] = common_pb2.TENANT_STATUS_SUSPENDED
    phases = TenantPhases(tenancy)  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="the tenant is suspended"):
        await phases.require("t1", Capability.LIVE_SESSION)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoRespondersError(), Unavailable),
        (RequestTimeoutError(), Unavailable),
        (RemoteError(500, "internal error"), Unavailable),
        (RemoteError(404, "unknown tenant"), NotFound),
    ],
)
async def test_no_answer_is_never_allowed(error: Exception, expected: type[Exception]) -> None:
    tenancy = Tenancy()
    tenancy.error = error
    phases = TenantPhases(tenancy)  # type: ignore[arg-type]
    with pytest.raises(expected):
        await phases.require("t1", Capability.LIVE_SESSION)
    tenancy.error = None
    tenancy.phases["t1"] = DEPLOYMENT
    await phases.require("t1", Capability.LIVE_SESSION)  # nothing was cached from the failure
