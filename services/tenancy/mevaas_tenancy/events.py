"""Tenancy's outgoing events. Each mutation writes its audit record and its `tenant.*` / `audit.*`
events into the outbox inside the mutation's own transaction (see mevaas_core.outbox)."""

from __future__ import annotations

import uuid

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import outbox
from mevaas_core.auth import Principal
from mevaas_tenancy import convert, store

SCHEMA = "tenancy"
SERVICE = "tenancy"

EVENT_SUBJECT_SUFFIX = {
    events_pb2.TENANT_EVENT_KIND_CREATED: "created",
    events_pb2.TENANT_EVENT_KIND_UPDATED: "updated",
    events_pb2.TENANT_EVENT_KIND_SUSPENDED: "suspended",
    events_pb2.TENANT_EVENT_KIND_RESUMED: "resumed",
    events_pb2.TENANT_EVENT_KIND_DELETED: "deleted",
    events_pb2.TENANT_EVENT_KIND_TIER_CHANGED: "tier_changed",
}


def actor_of(principal: Principal | None) -> events_pb2.Actor:
    if principal is None:
        return events_pb2.Actor(kind=events_pb2.ACTOR_KIND_SERVICE, id=SERVICE)
    kind = (
        events_pb2.ACTOR_KIND_PLATFORM_ADMIN if principal.is_platform_admin else events_pb2.ACTOR_KIND_API_KEY
    )
    return events_pb2.Actor(
        kind=kind,
        id=principal.subject,
        tenant_id=principal.tenant_id,
        roles=[convert.ROLES[r] for r in sorted(principal.roles)],
    )


async def record_audit(
    conn: asyncpg.Connection,
    principal: Principal | None,
    *,
    tenant_id: str,
    action: str,
    resource: str,
    details: dict[str, str] | None = None,
    idempotency_key: str = "",
) -> None:
    """Append the audit record and publish it on `audit.<tenant>.record` (via the outbox)."""
    actor = actor_of(principal)
    event_id = str(uuid.uuid4())
    row = await store.insert_audit_record(
        conn,
        event_id=event_id,
        tenant_id=tenant_id,
        actor_kind=events_pb2.ActorKind.Name(actor.kind),
        actor_id=actor.id,
        actor_tenant_id=actor.tenant_id,
        action=action,
        resource=resource,
        outcome="AUDIT_OUTCOME_SUCCEEDED",
        details=details or {},
        idempotency_key=idempotency_key,
    )
    record = events_pb2.AuditRecord(
        event_id=event_id,
        tenant_id=tenant_id,
        occurred_at=convert.timestamp(row["occurred_at"]),
        actor=actor,
        action=action,
        resource=resource,
        outcome=events_pb2.AUDIT_OUTCOME_SUCCEEDED,
        details=details or {},
        idempotency_key=idempotency_key,
        service=SERVICE,
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=f"audit.{tenant_id}.record",
        message=record,
        event_id=event_id,
        tenant_id=tenant_id,
    )


async def publish_tenant_event(
    conn: asyncpg.Connection,
    principal: Principal | None,
    kind: events_pb2.TenantEventKind.ValueType,
    tenant_row: asyncpg.Record,
    *,
    previous_tier: str = "",
    reason: str = "",
) -> None:
    owners = await conn.fetch(
        "SELECT user_id FROM tenancy.users WHERE tenant_id = $1 AND deleted_at IS NULL AND 'owner' = ANY(roles) "
        "ORDER BY user_id",
        tenant_row["tenant_id"],
    )
    branding_row = await store.get_branding(conn, tenant_row["tenant_id"])
    event_id = str(uuid.uuid4())
    event = events_pb2.TenantEvent(
        event_id=event_id,
        tenant_id=tenant_row["tenant_id"],
        occurred_at=convert.timestamp(tenant_row["updated_at"]),
        kind=kind,
        tenant=convert.tenant_snapshot(
            tenant_row,
            [r["user_id"] for r in owners],
            (branding_row["custom_domain"] or "") if branding_row else "",
        ),
        previous_tier=convert.TIERS.get(previous_tier, common_pb2.TIER_UNSPECIFIED),
        actor=actor_of(principal),
        reason=reason,
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=f"tenant.{tenant_row['tenant_id']}.{EVENT_SUBJECT_SUFFIX[kind]}",
        message=event,
        event_id=event_id,
        tenant_id=tenant_row["tenant_id"],
    )
