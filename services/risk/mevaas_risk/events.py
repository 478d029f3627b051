"""Risk's NATS side: the handlers of opp.*, exec.*.result and tenant.* events, and the events risk
emits.

Delivery choices:
* RiskDecision (hot path) is published directly after the decision's transaction commits, with
  `Nats-Msg-Id: decision:<opportunity_id>`; the opportunity is acked only after that publish. A
  crash in between redelivers the opportunity, which finds the stored decision and publishes the
  very same payload again (deduplicated by JetStream within its window; execution is idempotent
  per opportunity beyond it).
* Breaches, kill-switch changes and audit records go through the transactional outbox
  (mevaas_core.outbox): written in the transaction of the change, published by the relay.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import outbox
from mevaas_core.auth import Principal, Role
from mevaas_core.bus import Bus, Delivery
from mevaas_core.db import platform_transaction
from mevaas_risk import store
from mevaas_risk.domain.checks import Breach

if TYPE_CHECKING:
    from mevaas_risk.engine import RiskEngine

log = logging.getLogger("mevaas.risk")

SCHEMA = "risk"
SERVICE = "risk"
PLATFORM_SUBJECT_TENANT = "_platform"

ROLES = {
    Role.OWNER: common_pb2.ROLE_OWNER,
    Role.ADMIN: common_pb2.ROLE_ADMIN,
    Role.TRADER: common_pb2.ROLE_TRADER,
    Role.VIEWER: common_pb2.ROLE_VIEWER,
    Role.COMPLIANCE: common_pb2.ROLE_COMPLIANCE,
    Role.PLATFORM_ADMIN: common_pb2.ROLE_PLATFORM_ADMIN,
}
TENANT_STATUS = {
    common_pb2.TENANT_STATUS_ACTIVE: "active",
    common_pb2.TENANT_STATUS_SUSPENDED: "suspended",
    common_pb2.TENANT_STATUS_DELETED: "deleted",
}


def decision_subject(tenant_id: str) -> str:
    return f"risk.{tenant_id}.decision"


def decision_msg_id(opportunity_id: str) -> str:
    return f"decision:{opportunity_id}"


def _timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def actor_of(principal: Principal) -> events_pb2.Actor:
    kind = (
        events_pb2.ACTOR_KIND_PLATFORM_ADMIN if principal.is_platform_admin else events_pb2.ACTOR_KIND_API_KEY
    )
    return events_pb2.Actor(
        kind=kind,
        id=principal.subject,
        tenant_id=principal.tenant_id,
        roles=[ROLES[r] for r in sorted(principal.roles)],
    )


def breach_event(
    tenant_id: str,
    breach: Breach,
    message: str,
    occurred_at: datetime,
    *,
    action: events_pb2.BreachAction.ValueType,
    opportunity_id: str = "",
    execution_id: str = "",
) -> events_pb2.RiskBreach:
    breach_id = str(uuid.uuid4())
    event = events_pb2.RiskBreach(
        event_id=breach_id,
        tenant_id=tenant_id,
        occurred_at=_timestamp(occurred_at),
        breach_id=breach_id,
        strategy_id=breach.strategy_id,
        kind=breach.kind,
        limit_value=breach.limit_value,
        observed_value=breach.observed_value,
        action=action,
        message=message,
        execution_id=execution_id,
        opportunity_id=opportunity_id,
    )
    if breach.denomination is not None:
        event.denomination.CopyFrom(breach.denomination.to_proto())
    return event


async def enqueue_breach(conn: asyncpg.Connection, event: events_pb2.RiskBreach) -> None:
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=f"risk.{event.tenant_id}.breach",
        message=event,
        event_id=event.breach_id,
        tenant_id=event.tenant_id,
    )


async def enqueue_kill_switch_changed(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    tenant_id: str,
    strategy_id: str,
    engaged: bool,
    reason: str,
    occurred_at: datetime,
) -> None:
    """`tenant_id` is the platform's for the platform-wide switch: the event then names no tenant
    and goes out on risk._platform.killswitch."""
    event_id = str(uuid.uuid4())
    platform = tenant_id == store.PLATFORM_SWITCH_TENANT
    event = events_pb2.KillSwitchChanged(
        event_id=event_id,
        tenant_id="" if platform else tenant_id,
        occurred_at=_timestamp(occurred_at),
        engaged=engaged,
        reason=reason,
        actor=actor_of(principal),
        strategy_id=strategy_id,
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=f"risk.{PLATFORM_SUBJECT_TENANT if platform else tenant_id}.killswitch",
        message=event,
        event_id=event_id,
        tenant_id=PLATFORM_SUBJECT_TENANT if platform else tenant_id,
    )


class RiskHandlers:
    """The service's consumers. Each handler is idempotent (see engine and store)."""

    def __init__(self, engine: RiskEngine, bus: Bus) -> None:
        self._engine = engine
        self._bus = bus

    async def on_opportunity(self, opp: events_pb2.Opportunity, delivery: Delivery) -> None:
        if not opp.tenant_id:
            opp.tenant_id = delivery.tenant_id
        if not opp.opportunity_id:
            log.warning("opportunity without opportunity_id on %s ignored", delivery.subject)
            return
        outcome = await self._engine.decide(opp)
        decision = outcome.decision
        await self._bus.publish(
            decision_subject(decision.tenant_id),
            decision,
            msg_id=decision_msg_id(decision.opportunity_id),
            tenant_id=decision.tenant_id,
        )

    async def on_execution_result(self, result: events_pb2.ExecutionResult, delivery: Delivery) -> None:
        if not result.tenant_id:
            result.tenant_id = delivery.tenant_id
        await self._engine.apply_result(result)

    async def on_tenant_event(self, event: events_pb2.TenantEvent, delivery: Delivery) -> None:
        snapshot = event.tenant
        tenant_id = snapshot.tenant_id or event.tenant_id
        if not tenant_id:
            return
        async with platform_transaction(self._engine.pool) as conn:
            await store.upsert_tenant(
                conn,
                tenant_id=tenant_id,
                status=TENANT_STATUS.get(snapshot.status, "active"),
                plan=snapshot.plan.SerializeToString(deterministic=True),
                version=snapshot.version,
            )
