"""RiskService servicer: each handler validates the request, calls one command (commands.py) and
converts the answer (convert.py)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.risk.v1 import risk_pb2, risk_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.errors import FieldViolation, InvalidArgument
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, require_tenant_scope, rpc
from mevaas_core.pagination import decode_page_token, encode_page_token
from mevaas_core.validation import Validator
from mevaas_risk import convert
from mevaas_risk.commands import RiskCommands
from mevaas_risk.domain.limits import validate_mask
from mevaas_risk.engine import utc_today

Ctx = Any
READERS = tuple(ALL_TENANT_ROLES)
LIMIT_WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
SWITCH_WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
STRATEGY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_HORIZON_DAYS = 30
DEFAULT_LOOKBACK_DAYS = 250
MAX_LOOKBACK_DAYS = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A breach token's moment is microseconds since EPOCH; past datetime's year 9999 it cannot be one.
_TOKEN_MOMENT_LIMIT = (datetime(9999, 12, 31, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def _strategy_id(value: str, v: Validator, field: str = "strategy_id") -> None:
    if value:
        v.pattern(value, field, STRATEGY_ID, "1-128 letters, digits, '_', '.', ':' or '-'")


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, commands: RiskCommands) -> None:
        self._commands = commands

    # ------------------------------------------------------------------------------------ limits

    @rpc(*READERS)
    async def GetLimits(self, request: risk_pb2.GetLimitsRequest, context: Ctx) -> risk_pb2.GetLimitsResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        view = await self._commands.get_limits(require_tenant_scope(request.tenant_id), request.strategy_id)
        return risk_pb2.GetLimitsResponse(
            record=convert.limits_record(view.row, request.strategy_id), effective=view.effective.to_proto()
        )

    @rpc(*LIMIT_WRITERS)
    async def UpdateLimits(
        self, request: risk_pb2.UpdateLimitsRequest, context: Ctx
    ) -> risk_pb2.UpdateLimitsResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        validate_mask(request.update_mask.paths, v)
        v.check(request.HasField("limits"), "limits", "is required")
        v.raise_if_any()
        tenant_id = require_tenant_scope(request.tenant_id)
        view = await self._commands.update_limits(current_principal(), tenant_id, request)
        return risk_pb2.UpdateLimitsResponse(
            record=convert.limits_record(view.row, request.strategy_id), effective=view.effective.to_proto()
        )

    # ---------------------------------------------------------------------------------- exposure

    @rpc(*READERS)
    async def GetExposure(
        self, request: risk_pb2.GetExposureRequest, context: Ctx
    ) -> risk_pb2.GetExposureResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        now = datetime.now(UTC)
        rows = await self._commands.exposure(
            require_tenant_scope(), request.chain_id, request.strategy_id, now
        )
        response = risk_pb2.GetExposureResponse(computed_at=convert.timestamp(now))
        for row in rows:
            response.exposures.append(
                risk_pb2.Exposure(
                    token=row.token.to_proto(),
                    reserved=str(row.reserved),
                    realized_pnl_today=str(row.pnl_today),
                    realized_pnl_total=str(row.pnl_total),
                    limit="" if row.limit is None else str(row.limit),
                    # A ratio for display only.
                    utilization=row.reserved / row.limit if row.limit else 0.0,
                    open_reservations=row.open_reservations,
                )
            )
            response.concurrent_executions += row.open_reservations
        return response

    # --------------------------------------------------------------------------------------- VaR

    @rpc(*READERS)
    async def GetVaR(self, request: risk_pb2.GetVaRRequest, context: Ctx) -> risk_pb2.GetVaRResponse:
        v = Validator()
        v.check(0.0 < request.confidence < 1.0, "confidence", "must be strictly between 0 and 1")
        v.check(request.method in risk_pb2.VarMethod.values(), "method", "must be HISTORICAL or PARAMETRIC")
        v.check(request.horizon_days <= MAX_HORIZON_DAYS, "horizon_days", f"must be 0-{MAX_HORIZON_DAYS}")
        v.check(
            request.lookback_days == 0 or 2 <= request.lookback_days <= MAX_LOOKBACK_DAYS,
            "lookback_days",
            f"must be 0 or 2-{MAX_LOOKBACK_DAYS}",
        )
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        method = request.method or risk_pb2.VAR_METHOD_HISTORICAL
        horizon = request.horizon_days or 1
        lookback = request.lookback_days or DEFAULT_LOOKBACK_DAYS
        since: date = utc_today() - timedelta(days=lookback - 1)
        figures = await self._commands.value_at_risk(
            require_tenant_scope(),
            request.strategy_id,
            method=method,
            confidence=request.confidence,
            horizon=horizon,
            since=since,
        )
        return risk_pb2.GetVaRResponse(
            confidence=request.confidence,
            method=method,
            horizon_days=horizon,
            computed_at=convert.timestamp(datetime.now(UTC)),
            figures=[
                risk_pb2.VarFigure(
                    denomination=f.token.to_proto(),
                    value_at_risk=str(f.result.value_at_risk),
                    expected_shortfall=str(f.result.expected_shortfall),
                    var_ratio=f.result.value_at_risk / f.capital if f.capital else 0.0,
                    observations=f.result.observations,
                )
                for f in figures
            ],
        )

    # ------------------------------------------------------------------------------- kill switch

    @rpc(*SWITCH_WRITERS)
    async def SetKillSwitch(
        self, request: risk_pb2.SetKillSwitchRequest, context: Ctx
    ) -> risk_pb2.SetKillSwitchResponse:
        v = Validator()
        v.length(request.reason, "reason", 1 if request.engaged else 0, 512)
        _strategy_id(request.strategy_id, v)
        if request.platform_wide:
            v.check(not request.tenant_id, "tenant_id", "must be empty for the platform-wide switch")
            v.check(not request.strategy_id, "strategy_id", "must be empty for the platform-wide switch")
        v.raise_if_any()
        tenant_id = "" if request.platform_wide else require_tenant_scope(request.tenant_id)
        row = await self._commands.set_kill_switch(current_principal(), request, tenant_id)
        return risk_pb2.SetKillSwitchResponse(kill_switch=convert.kill_switch(row))

    @rpc(*READERS)
    async def GetKillSwitch(
        self, request: risk_pb2.GetKillSwitchRequest, context: Ctx
    ) -> risk_pb2.GetKillSwitchResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        switches = await self._commands.kill_switches(
            require_tenant_scope(request.tenant_id), request.strategy_id
        )
        return risk_pb2.GetKillSwitchResponse(
            kill_switch=convert.kill_switch(switches.own, request.strategy_id),
            platform=convert.kill_switch(switches.platform),
        )

    # ---------------------------------------------------------------------------------- breaches

    @rpc(*READERS)
    async def ListBreaches(
        self, request: risk_pb2.ListBreachesRequest, context: Ctx
    ) -> risk_pb2.ListBreachesResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        _strategy_id(request.strategy_id, v)
        v.check(request.kind in events_pb2.BreachKind.values(), "kind", "is not a known breach kind")
        start = end = None
        if request.HasField("time_range"):
            if v.check(request.time_range.HasField("start"), "time_range.start", "is required"):
                start = request.time_range.start.ToDatetime(UTC)
            if request.time_range.HasField("end"):
                end = request.time_range.end.ToDatetime(UTC)
                v.check(start is None or end > start, "time_range.end", "must be after start")
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 2)
        after = None
        if cursor is not None:
            moment, breach_id = cursor
            if (
                not isinstance(moment, int)
                or not isinstance(breach_id, str)
                or not 0 <= moment < _TOKEN_MOMENT_LIMIT
            ):
                raise InvalidArgument(
                    FieldViolation("page.page_token", "is not a page token issued by this API")
                )
            after = (EPOCH + timedelta(microseconds=moment), breach_id)
        rows = await self._commands.breaches(
            require_tenant_scope(),
            strategy_id=request.strategy_id,
            kind=events_pb2.BreachKind.Name(request.kind) if request.kind else "",
            start=start,
            end=end,
            after=after,
            limit=size + 1,
        )
        page = rows[:size]
        token = ""
        if len(rows) > size:
            last = page[-1]
            micros = (last["occurred_at"] - EPOCH) // timedelta(microseconds=1)
            token = encode_page_token(micros, last["breach_id"])
        return risk_pb2.ListBreachesResponse(
            breaches=[convert.breach(r) for r in page], page=common_pb2.PageResponse(next_page_token=token)
        )
