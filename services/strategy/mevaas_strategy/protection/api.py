"""LeverageProtectionService: validate, call one command, convert. WatchProtectionAlerts streams
the tenant's alerts from the bus (a core subscription on protect.<tenant>.leverage) until the
client goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2 as pb
from mevaas.strategy.v1 import strategy_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.bus import Bus
from mevaas_core.errors import Unavailable
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, rpc
from mevaas_core.pagination import keyset_page, page_after
from mevaas_core.validation import Validator
from mevaas_strategy.protection import convert
from mevaas_strategy.protection.alerts import alert_subject
from mevaas_strategy.protection.commands import ProtectionCommands
from mevaas_strategy.protection.domain import (
    Levels,
    check_levels,
    default_emergency,
    parse_health_factor,
)

Ctx = Any
WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
READERS = tuple(ALL_TENANT_ROLES)
# Alerts buffered per watcher; a watcher that falls further behind loses the oldest.
WATCH_BUFFER = 256


def _levels(v: Validator, trigger: str, target: str, emergency: str, enabled: bool) -> Levels | None:
    trigger_wad = parse_health_factor(v, trigger, "trigger_health_factor")
    target_wad = parse_health_factor(v, target, "target_health_factor")
    emergency_wad = parse_health_factor(v, emergency, "emergency_health_factor") if emergency else None
    if trigger_wad is None or target_wad is None or (emergency and emergency_wad is None):
        return None
    levels = Levels(trigger_wad, target_wad, emergency_wad or default_emergency(trigger_wad), enabled)
    check_levels(v, levels)
    return levels


class ProtectionServicer(strategy_pb2_grpc.LeverageProtectionServiceServicer):
    def __init__(self, commands: ProtectionCommands, bus: Bus | None) -> None:
        self._commands = commands
        self._bus = bus

    @rpc(*WRITERS)
    async def ProtectPosition(
        self, request: pb.ProtectPositionRequest, context: Ctx
    ) -> pb.ProtectPositionResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(request.chain_id > 0, "chain_id", "is required")
        v.address(request.account, "account")
        for field in ("collateral_asset", "debt_asset"):
            if getattr(request, field):
                v.address(getattr(request, field), field)
        levels = _levels(
            v,
            request.trigger_health_factor,
            request.target_health_factor,
            request.emergency_health_factor,
            request.emergency_enabled,
        )
        v.raise_if_any()
        assert levels is not None
        return await self._commands.protect(current_principal(), request, levels)

    @rpc(*READERS)
    async def GetProtectedPosition(
        self, request: pb.GetProtectedPositionRequest, context: Ctx
    ) -> pb.GetProtectedPositionResponse:
        v = Validator()
        v.required(request.protection_id, "protection_id")
        v.raise_if_any()
        row = await self._commands.get(current_principal().tenant_id, request.protection_id)
        return pb.GetProtectedPositionResponse(position=convert.position(row))

    @rpc(*READERS)
    async def ListProtectedPositions(
        self, request: pb.ListProtectedPositionsRequest, context: Ctx
    ) -> pb.ListProtectedPositionsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        filters = str(int(request.include_removed))
        after = page_after(request.page.page_token, filters)
        rows = await self._commands.list_page(
            current_principal().tenant_id,
            include_removed=request.include_removed,
            after=after,
            limit=size + 1,
        )
        page, token = keyset_page(rows, size, "created_at", "protection_id", filters)
        response = pb.ListProtectedPositionsResponse(positions=[convert.position(r) for r in page])
        if token:
            response.page.next_page_token = token
        return response

    @rpc(*WRITERS)
    async def UpdateProtectedPosition(
        self, request: pb.UpdateProtectedPositionRequest, context: Ctx
    ) -> pb.UpdateProtectedPositionResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.required(request.protection_id, "protection_id")
        v.check(
            request.state
            in (pb.PROTECTION_STATE_UNSPECIFIED, pb.PROTECTION_STATE_ACTIVE, pb.PROTECTION_STATE_PAUSED),
            "state",
            "must be ACTIVE or PAUSED (UnprotectPosition removes)",
        )
        v.check(request.emergency in pb.EmergencyLevel.values(), "emergency", "is not an EmergencyLevel")
        for field in ("trigger_health_factor", "target_health_factor", "emergency_health_factor"):
            if getattr(request, field):
                parse_health_factor(v, getattr(request, field), field)
        v.raise_if_any()

        def merged(row: asyncpg.Record) -> Levels:
            checked = Validator()
            enabled = row["emergency_enabled"]
            if request.emergency != pb.EMERGENCY_LEVEL_UNSPECIFIED:
                enabled = request.emergency == pb.EMERGENCY_LEVEL_ON
            levels = _levels(
                checked,
                request.trigger_health_factor or convert.hf(int(row["trigger_health_factor"])),
                request.target_health_factor or convert.hf(int(row["target_health_factor"])),
                request.emergency_health_factor or convert.hf(int(row["emergency_health_factor"])),
                enabled,
            )
            checked.raise_if_any()
            assert levels is not None
            return levels

        return await self._commands.update(current_principal(), request, merged)

    @rpc(*WRITERS)
    async def UnprotectPosition(
        self, request: pb.UnprotectPositionRequest, context: Ctx
    ) -> pb.UnprotectPositionResponse:
        v = Validator()
        v.required(request.protection_id, "protection_id")
        v.raise_if_any()
        return await self._commands.unprotect(current_principal(), request.protection_id)

    @rpc(*READERS, mutates=False)
    async def WatchProtectionAlerts(
        self, request: pb.WatchProtectionAlertsRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchProtectionAlertsResponse]:
        if self._bus is None:
            raise Unavailable("alerts need the message bus")
        tenant_id = current_principal().tenant_id
        if request.protection_id:
            await self._commands.get(tenant_id, request.protection_id)
        queue: asyncio.Queue[events_pb2.ProtectionAlert] = asyncio.Queue(WATCH_BUFFER)

        async def on_message(msg: Any) -> None:
            alert = events_pb2.ProtectionAlert.FromString(msg.data)
            if alert.tenant_id != tenant_id:
                return
            if request.protection_id and alert.protection_id != request.protection_id:
                return
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(alert)

        subscription = await self._bus.nc.subscribe(alert_subject(tenant_id), cb=on_message)
        try:
            while True:
                yield pb.WatchProtectionAlertsResponse(alert=await queue.get())
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
