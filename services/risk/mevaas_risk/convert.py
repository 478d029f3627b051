"""Rows of the risk schema as the API's messages."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.risk.v1 import risk_pb2


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def limits_record(row: asyncpg.Record | None, strategy_id: str) -> risk_pb2.LimitsRecord:
    if row is None:
        return risk_pb2.LimitsRecord(strategy_id=strategy_id, limits=common_pb2.RiskLimits())
    return risk_pb2.LimitsRecord(
        strategy_id=strategy_id,
        limits=common_pb2.RiskLimits.FromString(bytes(row["limits"])),
        version=row["version"],
        updated_at=timestamp(row["updated_at"]),
        updated_by=row["updated_by"],
    )


def kill_switch(row: asyncpg.Record | None, strategy_id: str = "") -> risk_pb2.KillSwitch:
    if row is None:
        return risk_pb2.KillSwitch(engaged=False, strategy_id=strategy_id)
    return risk_pb2.KillSwitch(
        engaged=row["engaged"],
        reason=row["reason"],
        changed_by=row["changed_by"],
        changed_at=timestamp(row["changed_at"]),
        strategy_id=row["strategy_id"],
    )


def breach(row: asyncpg.Record) -> events_pb2.RiskBreach:
    message = events_pb2.RiskBreach(
        event_id=row["breach_id"],
        tenant_id=row["tenant_id"],
        occurred_at=timestamp(row["occurred_at"]),
        breach_id=row["breach_id"],
        strategy_id=row["strategy_id"],
        kind=events_pb2.BreachKind.Value(row["kind"]),
        limit_value=row["limit_value"],
        observed_value=row["observed_value"],
        action=events_pb2.BreachAction.Value(row["action"]),
        message=row["message"],
        execution_id=row["execution_id"],
        opportunity_id=row["opportunity_id"],
    )
    if row["denomination"]:
        message.denomination.CopyFrom(common_pb2.Token.FromString(bytes(row["denomination"])))
    return message
