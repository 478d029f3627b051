"""Rows to messages (and a config's violations to the API's error), in one place."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.strategy.v1 import strategy_pb2
from mevaas_core.errors import FieldViolation, InvalidArgument
from mevaas_strategies.plugins import Violation


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def config(data: bytes) -> strategy_pb2.StrategyConfig:
    parsed = strategy_pb2.StrategyConfig()
    parsed.ParseFromString(bytes(data))
    return parsed


def strategy(row: asyncpg.Record) -> strategy_pb2.Strategy:
    return strategy_pb2.Strategy(
        strategy_id=row["strategy_id"],
        tenant_id=row["tenant_id"],
        version=row["version"],
        config=config(row["config"]),
        status=strategy_pb2.STRATEGY_STATUS_ACTIVE
        if row["status"] == "active"
        else strategy_pb2.STRATEGY_STATUS_DELETED,
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["version_created_at"]),
        updated_by=row["created_by"],
    )


def version(row: asyncpg.Record) -> strategy_pb2.StrategyVersion:
    return strategy_pb2.StrategyVersion(
        strategy_id=row["strategy_id"],
        version=row["version"],
        config=config(row["config"]),
        created_at=timestamp(row["created_at"]),
        created_by=row["created_by"],
        change_note=row["change_note"],
    )


def invalid(violations: list[Violation], prefix: str = "config.") -> InvalidArgument:
    return InvalidArgument([FieldViolation(prefix + v.field, v.description) for v in violations])


def violations(found: list[Violation]) -> list[strategy_pb2.ConfigViolation]:
    return [
        strategy_pb2.ConfigViolation(field=x.field, description=x.description, reason=x.reason) for x in found
    ]
