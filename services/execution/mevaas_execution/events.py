"""Execution's outgoing events, all through the transactional outbox (written in the same
transaction as the state change they describe, so a committed change always yields its event):

* ``exec.<tenant>.session`` ExecutionSessionEvent, Nats-Msg-Id ``<session_id>:<sequence>``;
* ``exec.<tenant>.result`` ExecutionResult, Nats-Msg-Id ``<execution_id>:<status>``;
* ``exec.<tenant>.position`` OpenPosition (an alert), Nats-Msg-Id ``position:<execution_id>:<leg>``.

Results go through the outbox too although they are on the hot path: the latency that matters
ends at submission, and a result lost in a crash would leak risk's reservation forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core import outbox
from mevaas_core.auth import Principal
from mevaas_execution import convert
from mevaas_execution.domain.sessions import STATE_TO_PROTO

SCHEMA = "execution"
SERVICE = "execution"


def session_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.session"


def result_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.result"


def position_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.position"


def actor_of(principal: Principal | None) -> events_pb2.Actor:
    if principal is None:
        return events_pb2.Actor(kind=events_pb2.ACTOR_KIND_SERVICE, id=SERVICE)
    kind = (
        events_pb2.ACTOR_KIND_PLATFORM_ADMIN if principal.is_platform_admin else events_pb2.ACTOR_KIND_API_KEY
    )
    return events_pb2.Actor(kind=kind, id=principal.subject, tenant_id=principal.tenant_id)


async def publish_session_event(
    conn: asyncpg.Connection, row: asyncpg.Record, previous_state: str, actor: events_pb2.Actor
) -> None:
    event = events_pb2.ExecutionSessionEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=row["tenant_id"],
        occurred_at=convert.timestamp(row["updated_at"]),
        session_id=row["session_id"],
        strategy_id=row["strategy_id"],
        strategy_version=row["strategy_version"],
        state=STATE_TO_PROTO[row["state"]],
        previous_state=STATE_TO_PROTO.get(previous_state, common_pb2.EXECUTION_STATE_UNSPECIFIED),
        reason=row["state_reason"],
        actor=actor,
        wallet_address=convert.checksum(row["wallet_address"]),
        chain_ids=list(row["chain_ids"]),
        sequence=row["sequence"],
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=session_subject(row["tenant_id"]),
        message=event,
        event_id=f"{row['session_id']}:{row['sequence']}",
        tenant_id=row["tenant_id"],
    )


async def publish_result(conn: asyncpg.Connection, row: asyncpg.Record) -> None:
    status = "submitted" if row["status"] == "signed" else row["status"]
    event = convert.result_event(row, str(uuid.uuid4()))
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=result_subject(row["tenant_id"]),
        message=event,
        event_id=f"{row['execution_id']}:{status}",
        tenant_id=row["tenant_id"],
    )


async def publish_open_position(
    conn: asyncpg.Connection, execution: asyncpg.Record, unwind: Mapping[str, Any]
) -> None:
    """The alert for one unwind that did not land: the position it was to close stays open."""
    leg_index = int(unwind["unwinds"])
    event = execution_pb2.OpenPosition(
        event_id=str(uuid.uuid4()),
        tenant_id=execution["tenant_id"],
        occurred_at=convert.timestamp(datetime.now(UTC)),
        execution_id=execution["execution_id"],
        session_id=execution["session_id"],
        strategy_id=execution["strategy_id"],
        leg_index=leg_index,
        chain_id=int(unwind["chain_id"]),
        wallet_address=convert.checksum(execution["wallet_address"]),
        token_address=convert.checksum(unwind["token_in"]),
        amount=str(unwind["amount_in"]),
        reason=f"unwind {unwind['status']}" + (f": {unwind['error']}" if unwind["error"] else ""),
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=position_subject(execution["tenant_id"]),
        message=event,
        event_id=f"position:{execution['execution_id']}:{leg_index}",
        tenant_id=execution["tenant_id"],
    )
