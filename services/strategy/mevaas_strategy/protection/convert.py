"""Protection rows to messages."""

from __future__ import annotations

import asyncpg

from mevaas.strategy.v1 import strategy_pb2 as pb
from mevaas_strategy.convert import timestamp
from mevaas_strategy.protection.domain import STATE_TO_PROTO, format_health_factor


def hf(wad: int) -> str:
    return format_health_factor(wad)


def position(row: asyncpg.Record) -> pb.ProtectedPosition:
    registered = row["registered_health_factor"]
    return pb.ProtectedPosition(
        protection_id=row["protection_id"],
        chain_id=row["chain_id"],
        account=row["account"],
        trigger_health_factor=hf(int(row["trigger_health_factor"])),
        target_health_factor=hf(int(row["target_health_factor"])),
        emergency_enabled=row["emergency_enabled"],
        emergency_health_factor=hf(int(row["emergency_health_factor"])),
        collateral_asset=row["collateral_asset"],
        debt_asset=row["debt_asset"],
        state=STATE_TO_PROTO[row["state"]],
        registered_health_factor="" if registered is None else hf(int(registered)),
        executor_address=row["executor_address"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )
