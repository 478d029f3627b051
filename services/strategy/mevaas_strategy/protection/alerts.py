"""Leverage protection's alerts: one ``ProtectionAlert`` per trigger, unprotectable position,
landed deleverage and failed one, published on ``protect.<tenant>.leverage`` (the PROTECT
stream) with a deterministic id, so two replicas raising the same alert publish it once."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from mevaas.events.v1 import events_pb2
from mevaas_strategies.opportunity import timestamp
from mevaas_strategies.protection import ProtectionRule


def alert_subject(tenant_id: str) -> str:
    return f"protect.{tenant_id}.leverage"


def position_subject(tenant_id: str) -> str:
    return f"protect.{tenant_id}.position"


def alert(
    kind: events_pb2.ProtectionAlertKind.ValueType,
    rule: ProtectionRule,
    *,
    health_factor: int | None,
    block_number: int,
    emergency: bool = False,
    reason: str = "",
    deleverage: events_pb2.DeleverageAction | None = None,
    opportunity_id: str = "",
    execution_id: str = "",
    tx_hash: str = "",
) -> events_pb2.ProtectionAlert:
    key = f"{rule.protection_id}|{kind}|{block_number}|{opportunity_id}|{execution_id}"
    alert_id = str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))
    message = events_pb2.ProtectionAlert(
        alert_id=alert_id,
        tenant_id=rule.tenant_id,
        occurred_at=timestamp(datetime.now(UTC)),
        protection_id=rule.protection_id,
        chain_id=rule.chain_id,
        account=rule.account,
        kind=kind,
        health_factor="" if health_factor is None else str(health_factor),
        trigger_health_factor=str(rule.trigger_health_factor),
        target_health_factor=str(rule.target_health_factor),
        emergency=emergency,
        block_number=block_number,
        opportunity_id=opportunity_id,
        execution_id=execution_id,
        tx_hash=tx_hash,
        reason=reason,
    )
    if deleverage is not None:
        message.deleverage.CopyFrom(deleverage)
    return message
