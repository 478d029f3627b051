"""Tenancy's outgoing events. Each mutation writes its audit record and its `tenant.*` / `audit.*`
events into the outbox inside the mutation's own transaction (see mevaas_core.outbox)."""

from __future__ import annotations

import uuid

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import audit, outbox, revocation
from mevaas_core.auth import Principal
from mevaas_core.bus import Delivery
from mevaas_core.db import platform_transaction
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
    *,
    tenant_id: str,
    resource: str,
    details: dict[str, str] | None = None,
    idempotency_key: str = "",
    outcome: events_pb2.AuditOutcome.ValueType = audit.SUCCEEDED,
    actor: events_pb2.Actor | None = None,
) -> None:
    """Record the current RPC in its transaction: into the trail at once (so ListAuditRecords
    shows it on return) and on audit.<tenant>.record through the outbox, like every service."""
    entry = await audit.record(
        conn,
        SCHEMA,
        tenant_id=tenant_id,
        target=resource,
        details=details,
        idempotency_key=idempotency_key,
        outcome=outcome,
        actor=actor,
    )
    await store.insert_audit_record(conn, entry)


async def keep_audit_record(pool: asyncpg.Pool, record: events_pb2.AuditRecord, delivery: Delivery) -> None:
    """Every service's audit records (audit.*.record) join the one trail ListAuditRecords reads."""
    if not record.tenant_id:
        record.tenant_id = delivery.tenant_id
    async with platform_transaction(pool) as conn:
        await store.insert_audit_record(conn, record)


async def publish_tenant_event(
    conn: asyncpg.Connection,
    principal: Principal | None,
    kind: events_pb2.TenantEventKind.ValueType,
    tenant_row: asyncpg.Record,
    *,
    previous_tier: str = "",
    reason: str = "",
) -> None:
    owners = await store.owner_ids(conn, tenant_row["tenant_id"])
    branding_row = await store.get_branding(conn, tenant_row["tenant_id"])
    event_id = str(uuid.uuid4())
    event = events_pb2.TenantEvent(
        event_id=event_id,
        tenant_id=tenant_row["tenant_id"],
        occurred_at=convert.timestamp(tenant_row["updated_at"]),
        kind=kind,
        tenant=convert.tenant_snapshot(
            tenant_row,
            owners,
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


async def publish_revocation(
    conn: asyncpg.Connection, tenant_id: str, kind: revocation.Kind, subject_id: str, reason: str
) -> None:
    """Tell every service to refuse the tokens of (kind, subject_id) issued until now (the
    transaction's time: a token issued after the commit is newer)."""
    event_id = str(uuid.uuid4())
    now = await store.clock_now(conn)
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=revocation.subject_for(tenant_id),
        message=revocation.revocation_event(event_id, tenant_id, kind, subject_id, reason, at=now),
        event_id=event_id,
        tenant_id=tenant_id,
    )
