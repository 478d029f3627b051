"""Erasure everywhere: when tenancy deletes a tenant (``tenant.<id>.deleted``), every service
erases or pseudonymises that tenant's rows in its own schema, keeping only what the retention
policy requires, and says so in an audit record (action: DeleteTenant's full name, actor: the
service) that lands in ListAuditRecords and in the compliance report's audit trail.

A service declares what happens to each of its tenant tables in an `ErasurePlan` (in its
store.py, next to its other SQL): erased (deleted), scrubbed (kept with personal or secret columns
overwritten) or kept as they are, each kept table with the reason. The runtime runs the plan in
one transaction scoped to the tenant by row-level security, so nothing of another tenant can be
touched, and redeliveries change nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_core import audit, outbox
from mevaas_core.bus import Bus, Delivery, Subscription
from mevaas_core.db import tenant_transaction

log = logging.getLogger("mevaas.erasure")

ACTION: Final = "/mevaas.tenancy.v1.TenantService/DeleteTenant"
TRADE_RETENTION: Final = (
    "trade record: kept for the trade retention period (compliance report, retention_policy)"
)
AUDIT_RETENTION: Final = (
    "audit record: kept for the audit retention period (compliance report, retention_policy)"
)


@dataclass(frozen=True)
class Erase:
    table: str
    # Extra condition on the tenant's rows (e.g. only published outbox rows).
    where: str = ""


@dataclass(frozen=True)
class Scrub:
    table: str
    # SET clause overwriting what must not survive (personal data, key material).
    set_clause: str
    reason: str


@dataclass(frozen=True)
class ErasurePlan:
    schema: str
    erase: tuple[Erase, ...]
    scrub: tuple[Scrub, ...] = ()
    # Tables whose rows are kept unchanged, and why.
    keep: dict[str, str] = field(default_factory=dict)

    def tables(self) -> set[str]:
        return {e.table for e in self.erase} | {s.table for s in self.scrub} | set(self.keep)


async def erase_tenant(pool: asyncpg.Pool, plan: ErasurePlan, tenant_id: str, service: str) -> dict[str, str]:
    """Run `plan` for `tenant_id`; returns what was erased and kept (the audit record's details)."""
    details: dict[str, str] = {}
    async with tenant_transaction(pool, tenant_id) as conn:
        for step in plan.erase:
            condition = f" AND ({step.where})" if step.where else ""
            status = await conn.execute(
                f"DELETE FROM {plan.schema}.{step.table} WHERE tenant_id::text = $1{condition}", tenant_id
            )
            details[f"erased.{step.table}"] = status.rsplit(" ", 1)[-1]
        for scrub in plan.scrub:
            status = await conn.execute(
                f"UPDATE {plan.schema}.{scrub.table} SET {scrub.set_clause} WHERE tenant_id::text = $1",
                tenant_id,
            )
            details[f"scrubbed.{scrub.table}"] = f"{status.rsplit(' ', 1)[-1]}: {scrub.reason}"
        for table, reason in plan.keep.items():
            kept = await conn.fetchval(
                f"SELECT count(*) FROM {plan.schema}.{table} WHERE tenant_id::text = $1", tenant_id
            )
            details[f"kept.{table}"] = f"{kept}: {reason}"
        call = audit.AuditCall(service, ACTION, request_id=f"erasure-{tenant_id}")
        record = audit.build(
            call, tenant_id=tenant_id, target=f"tenants/{tenant_id}", outcome=audit.SUCCEEDED, details=details
        )
        record.actor.CopyFrom(events_pb2.Actor(kind=events_pb2.ACTOR_KIND_SERVICE, id=service))
        record.event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mevaas:erasure:{service}:{tenant_id}"))
        record.occurred_at.FromDatetime(datetime.now(UTC))
        await outbox.enqueue(
            conn,
            plan.schema,
            subject=audit.subject_for(tenant_id),
            message=record,
            event_id=record.event_id,
            tenant_id=tenant_id,
        )
    log.info("erased tenant %s", tenant_id, extra={"tenant_id": tenant_id, **details})
    return details


async def follow_deletions(
    bus: Bus, pool: asyncpg.Pool, plan: ErasurePlan, service: str
) -> Subscription[events_pb2.TenantEvent]:
    """Erase each deleted tenant's data in this service (one durable consumer per service)."""

    async def on_deleted(event: events_pb2.TenantEvent, delivery: Delivery) -> None:
        tenant_id = event.tenant_id or delivery.tenant_id
        if event.kind == events_pb2.TENANT_EVENT_KIND_DELETED and tenant_id:
            await erase_tenant(pool, plan, tenant_id, service)

    return await bus.subscribe(
        "TENANT", f"{service}-erasure", "tenant.*.deleted", events_pb2.TenantEvent, on_deleted
    )
