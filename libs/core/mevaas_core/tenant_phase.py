"""A tenant's onboarding phase (and status), asked of tenancy over NATS request/reply
(`subjects.TENANCY_ONBOARDING_STATE`) and cached per process until the tenant's next `tenant.*`
event, so an allowed call costs a dictionary lookup once the tenant is known; a refusal is asked
of tenancy again before it is given (the tenant may have advanced a moment ago).

Every process follows TENANT itself (an ordered consumer, not a shared durable: each replica keeps
its own cache, so each must see every event); an event's snapshot replaces the entry at once. A
lookup that was in flight while an event arrived does not overwrite what the event said. Entries
also expire after ``ttl_s``, in case the feed missed something (a reconnect, a stream purge).

Nothing is assumed when tenancy cannot answer: no responders, a timeout or an error is
UNAVAILABLE for the caller, never a silent "allowed"."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import onboarding, subjects
from mevaas_core.bus import Bus, BusError, NoRespondersError, RemoteError
from mevaas_core.bus.follow import Follower, follow
from mevaas_core.errors import FailedPrecondition, NotFound, Unavailable

_STATUS_NAMES = {common_pb2.TENANT_STATUS_SUSPENDED: "suspended", common_pb2.TENANT_STATUS_DELETED: "deleted"}


@dataclass(frozen=True, slots=True)
class TenantStanding:
    phase: str  # an onboarding.PHASES name ("" when tenancy sent an unknown value)
    status: common_pb2.TenantStatus.ValueType
    # The tenant's plan and tier (what execution prices a protected transaction with).
    plan: common_pb2.Plan | None = None
    tier: int = 0


class PhaseGate(Protocol):
    async def require(self, tenant_id: str, capability: onboarding.Capability) -> None:
        """Return if the tenant's onboarding phase allows ``capability`` now, else raise
        FAILED_PRECONDITION naming the phase (UNAVAILABLE when nobody can tell)."""

    async def standing(self, tenant_id: str, *, fresh: bool = False) -> TenantStanding:
        """The tenant's phase, status, plan and tier (NOT_FOUND / UNAVAILABLE as ``require``)."""


class TenantPhases:
    """The cache, the tenancy lookup behind it and the gate callers use (``require``)."""

    def __init__(
        self,
        bus: Bus,
        subject: str = subjects.TENANCY_ONBOARDING_STATE,
        *,
        timeout_s: float = 2.0,
        ttl_s: float = 300.0,
    ) -> None:
        self._bus = bus
        self._subject = subject
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, TenantStanding]] = {}
        # Bumped by every event of the tenant: a lookup that started before keeps its answer to itself.
        self._versions: dict[str, int] = {}
        self._follower: Follower | None = None

    async def start(self) -> None:
        self._follower = await follow(self._bus, "TENANT", "tenant.>", events_pb2.TenantEvent, self.on_event)

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    async def on_event(self, event: events_pb2.TenantEvent) -> None:
        tenant_id = event.tenant_id or event.tenant.tenant_id
        if not tenant_id:
            return
        self._versions[tenant_id] = self._versions.get(tenant_id, 0) + 1
        if event.HasField("tenant"):
            standing = TenantStanding(
                onboarding.PHASE_OF_PROTO.get(event.tenant.onboarding_phase, ""),
                event.tenant.status,
                event.tenant.plan if event.tenant.HasField("plan") else None,
                event.tenant.tier,
            )
            self._entries[tenant_id] = (time.monotonic(), standing)
        else:
            self._entries.pop(tenant_id, None)

    async def standing(self, tenant_id: str, *, fresh: bool = False) -> TenantStanding:
        """The tenant's phase and status, from the cache (unless ``fresh``) or from tenancy. Raises
        NotFound for a tenant tenancy does not know, Unavailable when tenancy does not answer."""
        cached = self._entries.get(tenant_id)
        if not fresh and cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        version = self._versions.get(tenant_id, 0)
        try:
            reply = await self._bus.request(
                self._subject,
                common_pb2.OnboardingStateRequest(),
                common_pb2.OnboardingStateResponse,
                tenant_id=tenant_id,
                timeout=self._timeout_s,
            )
        except NoRespondersError:
            raise Unavailable(
                "the tenancy service is not reachable, so the tenant's onboarding phase is unknown; try again"
            ) from None
        except RemoteError as exc:
            if exc.code == 404:
                raise NotFound("tenant", tenant_id) from None
            raise Unavailable(f"the tenant's onboarding phase lookup failed: {exc.message}") from None
        except BusError as exc:
            raise Unavailable(f"the tenant's onboarding phase lookup failed: {exc}") from None
        standing = TenantStanding(
            onboarding.PHASE_OF_PROTO.get(reply.onboarding_phase, ""),
            reply.status,
            reply.plan if reply.HasField("plan") else None,
            reply.tier,
        )
        if self._versions.get(tenant_id, 0) == version:
            self._entries[tenant_id] = (time.monotonic(), standing)
        return standing

    async def require(self, tenant_id: str, capability: onboarding.Capability) -> None:
        """Return if the tenant may use ``capability`` now; else FAILED_PRECONDITION naming the
        phase and the way forward (or UNAVAILABLE / NOT_FOUND from ``standing``)."""
        standing = await self.standing(tenant_id)
        if self._refused(standing, capability):
            # Only a refusal is asked again: the tenant may have advanced a moment ago, before its
            # event got here. An allowed answer cannot go stale the other way (phases only move
            # forward; a suspension also revokes the tenant's tokens).
            standing = await self.standing(tenant_id, fresh=True)
        if standing.status != common_pb2.TENANT_STATUS_ACTIVE:
            state = _STATUS_NAMES.get(standing.status, "not active")
            raise FailedPrecondition(f"the tenant is {state}", subject=f"tenants/{tenant_id}")
        message = onboarding.refusal(standing.phase, capability)
        if message is not None:
            raise FailedPrecondition(message, subject=f"tenants/{tenant_id}", violation_type="ONBOARDING")

    @staticmethod
    def _refused(standing: TenantStanding, capability: onboarding.Capability) -> bool:
        return standing.status != common_pb2.TENANT_STATUS_ACTIVE or not onboarding.allows(
            standing.phase, capability
        )
