"""One audit trail: every mutating RPC of every service, and every denied call, leaves an
`AuditRecord` of one shape (actor, tenant, action = the RPC's full name, target, outcome,
request id) on ``audit.<tenant>.record``. Tenancy keeps them for ``ListAuditRecords``; analytics
puts them in the compliance report.

Two ways in, one shape:

* ``await audit.record(conn, schema, tenant_id=..., target=...)`` inside a handler's transaction
  writes the record into the service's outbox with the state change (it is published if and only
  if the change commits), and marks the call as recorded;
* the server interceptor (grpckit) writes, through an `AuditSink`, the record of every mutating
  call the handler did not record itself (its outcome: succeeded, failed with the error's code,
  or denied) and of every denied call (PERMISSION_DENIED, UNAUTHENTICATED), reads included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import asyncpg
from google.protobuf.message import Message

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import outbox
from mevaas_core.auth import PLATFORM_TENANT_ID, Principal

log = logging.getLogger("mevaas.audit")

SUCCEEDED: Final = events_pb2.AUDIT_OUTCOME_SUCCEEDED
DENIED: Final = events_pb2.AUDIT_OUTCOME_DENIED
FAILED: Final = events_pb2.AUDIT_OUTCOME_FAILED
# Read RPCs by name; anything else is a mutation unless its @rpc says otherwise.
READ_PREFIXES: Final = ("Get", "List", "Validate", "Inspect", "WhoAmI", "Compare", "Export")
MAX_PENDING: Final = 10_000
# A tenant id that can be one token of a NATS subject.
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def is_mutation(method_name: str) -> bool:
    return not method_name.startswith(READ_PREFIXES)


def subject_for(tenant_id: str) -> str:
    return f"audit.{tenant_id}.record"


@dataclass(slots=True)
class AuditCall:
    """What the interceptor knows of the call being served."""

    service: str
    method: str
    request_id: str
    principal: Principal | None = None
    recorded: bool = False


_call: ContextVar[AuditCall | None] = ContextVar("mevaas_audit_call", default=None)


def begin_call(call: AuditCall) -> object:
    return _call.set(call)


def end_call(token: object) -> None:
    _call.reset(token)  # type: ignore[arg-type]


def actor_of(principal: Principal | None, service: str) -> events_pb2.Actor:
    if principal is None:
        return events_pb2.Actor(kind=events_pb2.ACTOR_KIND_UNSPECIFIED, id="anonymous")
    kind = (
        events_pb2.ACTOR_KIND_PLATFORM_ADMIN if principal.is_platform_admin else events_pb2.ACTOR_KIND_API_KEY
    )
    if not principal.subject:
        kind, subject = events_pb2.ACTOR_KIND_SERVICE, service
    else:
        subject = principal.subject
    return events_pb2.Actor(
        kind=kind,
        id=subject,
        tenant_id=principal.tenant_id,
        roles=[common_pb2.Role.Value(f"ROLE_{r.value.upper()}") for r in sorted(principal.roles)],
    )


def build(
    call: AuditCall,
    *,
    tenant_id: str,
    target: str,
    outcome: events_pb2.AuditOutcome.ValueType,
    details: dict[str, str] | None = None,
    idempotency_key: str = "",
    occurred_at: datetime | None = None,
) -> events_pb2.AuditRecord:
    """The one shape of an audit record."""
    record = events_pb2.AuditRecord(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        actor=actor_of(call.principal, call.service),
        action=call.method,
        resource=target,
        outcome=outcome,
        details=details or {},
        idempotency_key=idempotency_key,
        service=call.service,
        request_id=call.request_id,
    )
    record.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    return record


async def record(
    conn: asyncpg.Connection,
    schema: str,
    *,
    tenant_id: str,
    target: str,
    details: dict[str, str] | None = None,
    idempotency_key: str = "",
    occurred_at: datetime | None = None,
    outcome: events_pb2.AuditOutcome.ValueType = SUCCEEDED,
    actor: events_pb2.Actor | None = None,
) -> events_pb2.AuditRecord:
    """Record the current RPC in the caller's transaction (the service's outbox): its success, or
    a failure the handler commits on purpose (a refused sign-in counts towards a lockout). `actor`
    names who acted when the token does not (a person signing in has none yet)."""
    call = _call.get()
    if call is None:
        raise RuntimeError("audit.record is for gRPC handlers; the interceptor starts the call")
    entry = build(
        call,
        tenant_id=tenant_id,
        target=target,
        outcome=outcome,
        details=details,
        idempotency_key=idempotency_key,
        occurred_at=occurred_at,
    )
    if actor is not None:
        entry.actor.CopyFrom(actor)
    await outbox.enqueue(
        conn,
        schema,
        subject=subject_for(tenant_id),
        message=entry,
        event_id=entry.event_id,
        tenant_id=tenant_id,
    )
    call.recorded = True
    return entry


def target_of(request: Message) -> str:
    """A resource name from the request's first non-empty `*_id` field (strategy_id -> "strategies/<id>")."""
    for field, value in request.ListFields():
        if field.name.endswith("_id") and isinstance(value, str) and value:
            noun = field.name[:-3]
            plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
            # Escaped: a refused request's id may hold a NUL, which PostgreSQL cannot store.
            return plural + "/" + value[:128].replace("\x00", "\\x00")
    return ""


def tenant_of_principal(principal: Principal | None) -> str:
    """Anonymous callers' records belong to the platform."""
    return PLATFORM_TENANT_ID if principal is None else principal.tenant_id


def tenant_of(request: Message, principal: Principal | None) -> str:
    """The tenant a call acted on: the one a platform admin names, else the caller's own."""
    named = getattr(request, "tenant_id", "")
    if (
        principal is not None
        and principal.is_platform_admin
        and isinstance(named, str)
        and _SUBJECT_TOKEN.match(named)
    ):
        return named
    return tenant_of_principal(principal)


def submit_outside_grpc(
    sink: AuditSink,
    *,
    service: str,
    action: str,
    principal: Principal | None,
    target: str,
    outcome: events_pb2.AuditOutcome.ValueType,
    request_id: str = "",
    details: dict[str, str] | None = None,
) -> events_pb2.AuditRecord:
    """The record of a call served outside gRPC (the Protect RPC's JSON-RPC), same shape, sent in
    the background like the interceptor's."""
    call = AuditCall(service, action, request_id or str(uuid.uuid4()), principal)
    entry = build(
        call,
        tenant_id=tenant_of_principal(principal),
        target=target[:256].replace("\x00", "\\x00"),
        outcome=outcome,
        details=details,
    )
    sink.submit(entry)
    return entry


class Publisher(Protocol):
    async def publish(self, subject: str, message: Message, *, msg_id: str, tenant_id: str) -> object: ...


class AuditSink:
    """Publishes the interceptor's records in the background: the caller never waits for the bus,
    and at most MAX_PENDING records are in flight (beyond that they are dropped, loudly)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._pending: set[asyncio.Task[None]] = set()

    def submit(self, entry: events_pb2.AuditRecord) -> None:
        if len(self._pending) >= MAX_PENDING:
            log.error("audit backlog full; dropped the record of %s", entry.action)
            return
        task = asyncio.create_task(self._publish(entry))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, entry: events_pb2.AuditRecord) -> None:
        for attempt in range(5):
            try:
                await self._publisher.publish(
                    subject_for(entry.tenant_id), entry, msg_id=entry.event_id, tenant_id=entry.tenant_id
                )
                return
            except Exception:
                if attempt == 4:
                    log.exception("audit record of %s could not be published", entry.action)
                    return
                await asyncio.sleep(0.2 * (attempt + 1))

    async def drain(self, timeout: float = 5.0) -> None:
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._pending, return_exceptions=True), timeout)
