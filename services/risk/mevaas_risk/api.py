"""RiskService servicer: validate, translate, and run each mutation as one transaction (change +
audit record + events). Limit and kill-switch changes take the tenant's risk-state lock, so the
next decision after the commit sees them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.risk.v1 import risk_pb2, risk_pb2_grpc
from mevaas_core.auth import Role
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, require_tenant_scope, rpc
from mevaas_core.pagination import decode_page_token, encode_page_token
from mevaas_core.validation import Validator
from mevaas_risk import store
from mevaas_risk.domain.limits import (
    Limits,
    TokenKey,
    apply_mask,
    validate_limits,
    validate_mask,
    validate_tightens,
)
from mevaas_risk.domain.var import NotEnoughHistory, historical_var, parametric_var
from mevaas_risk.engine import utc_today
from mevaas_risk.events import enqueue_kill_switch_changed, record_audit

Ctx = Any
READERS = tuple(ALL_TENANT_ROLES)
LIMIT_WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
SWITCH_WRITERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
STRATEGY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_HORIZON_DAYS = 30
DEFAULT_LOOKBACK_DAYS = 250
MAX_LOOKBACK_DAYS = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _strategy_id(value: str, v: Validator, field: str = "strategy_id") -> None:
    if value:
        v.pattern(value, field, STRATEGY_ID, "1-128 letters, digits, '_', '.', ':' or '-'")


def _limits_of(row: asyncpg.Record | None) -> Limits:
    return Limits.from_proto(common_pb2.RiskLimits.FromString(bytes(row["limits"]))) if row else Limits()


async def _plan_cap(conn: asyncpg.Connection, tenant_id: str) -> int:
    tenant = await store.get_tenant(conn, tenant_id)
    if tenant is None or not tenant["plan"]:
        return 0
    return common_pb2.Plan.FromString(bytes(tenant["plan"])).max_concurrent_executions


async def _effective(
    conn: asyncpg.Connection, tenant_id: str, strategy_id: str
) -> tuple[Limits, Limits, Limits]:
    """(tenant limits, strategy limits, effective limits)."""
    tenant = _limits_of(await store.get_limits(conn, tenant_id, ""))
    strategy = _limits_of(await store.get_limits(conn, tenant_id, strategy_id)) if strategy_id else Limits()
    return tenant, strategy, strategy.stricter(tenant).capped(await _plan_cap(conn, tenant_id))


def _record(row: asyncpg.Record | None, strategy_id: str) -> risk_pb2.LimitsRecord:
    if row is None:
        return risk_pb2.LimitsRecord(strategy_id=strategy_id, limits=common_pb2.RiskLimits())
    return risk_pb2.LimitsRecord(
        strategy_id=strategy_id,
        limits=common_pb2.RiskLimits.FromString(bytes(row["limits"])),
        version=row["version"],
        updated_at=_timestamp(row["updated_at"]),
        updated_by=row["updated_by"],
    )


def _kill_switch(row: asyncpg.Record | None, strategy_id: str = "") -> risk_pb2.KillSwitch:
    if row is None:
        return risk_pb2.KillSwitch(engaged=False, strategy_id=strategy_id)
    return risk_pb2.KillSwitch(
        engaged=row["engaged"],
        reason=row["reason"],
        changed_by=row["changed_by"],
        changed_at=_timestamp(row["changed_at"]),
        strategy_id=row["strategy_id"],
    )


def _breach(row: asyncpg.Record) -> events_pb2.RiskBreach:
    breach = events_pb2.RiskBreach(
        event_id=row["breach_id"],
        tenant_id=row["tenant_id"],
        occurred_at=_timestamp(row["occurred_at"]),
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
        breach.denomination.CopyFrom(common_pb2.Token.FromString(bytes(row["denomination"])))
    return breach


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------------------------------ limits

    @rpc(*READERS)
    async def GetLimits(self, request: risk_pb2.GetLimitsRequest, context: Ctx) -> risk_pb2.GetLimitsResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        tenant_id = require_tenant_scope(request.tenant_id)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_limits(conn, tenant_id, request.strategy_id)
            _, _, effective = await _effective(conn, tenant_id, request.strategy_id)
        return risk_pb2.GetLimitsResponse(
            record=_record(row, request.strategy_id), effective=effective.to_proto()
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
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant_id)
        if not request.strategy_id and not principal.has_any((Role.OWNER, Role.ADMIN)):
            raise PermissionDenied("tenant-level limits need the owner or admin role")
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await store.lock_risk_state(conn, tenant_id)
            current = await store.get_limits(conn, tenant_id, request.strategy_id)
            current_version = current["version"] if current else 0
            current_proto = (
                common_pb2.RiskLimits.FromString(bytes(current["limits"]))
                if current
                else common_pb2.RiskLimits()
            )
            merged = apply_mask(current_proto, request.limits, request.update_mask.paths)
            validate_limits(merged, v)
            v.raise_if_any()
            limits = Limits.from_proto(merged)
            tenant_limits = _limits_of(await store.get_limits(conn, tenant_id, ""))
            if request.strategy_id:
                validate_tightens(limits, tenant_limits, v)
                v.raise_if_any()
            if request.expected_version and request.expected_version != current_version:
                raise FailedPrecondition(
                    f"expected_version {request.expected_version} is stale (current {current_version})",
                    subject="expected_version",
                )
            plan_cap = await _plan_cap(conn, tenant_id)
            if plan_cap and (limits.max_concurrent_executions or 0) > plan_cap:
                raise FailedPrecondition(
                    f"max_concurrent_executions {limits.max_concurrent_executions} exceeds the plan's {plan_cap}",
                    subject="limits.max_concurrent_executions",
                    violation_type="PLAN",
                )
            row = await store.put_limits(
                conn,
                tenant_id=tenant_id,
                strategy_id=request.strategy_id,
                limits=limits.to_proto().SerializeToString(deterministic=True),
                updated_by=principal.subject,
            )
            scope = f"/strategies/{request.strategy_id}" if request.strategy_id else ""
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action="/mevaas.risk.v1.RiskService/UpdateLimits",
                resource=f"tenants/{tenant_id}{scope}/limits",
                occurred_at=row["updated_at"],
                details={"paths": ",".join(request.update_mask.paths), "version": str(row["version"])},
            )
            effective = (limits.stricter(tenant_limits) if request.strategy_id else limits).capped(plan_cap)
        return risk_pb2.UpdateLimitsResponse(
            record=_record(row, request.strategy_id), effective=effective.to_proto()
        )

    # ---------------------------------------------------------------------------------- exposure

    @rpc(*READERS)
    async def GetExposure(
        self, request: risk_pb2.GetExposureRequest, context: Ctx
    ) -> risk_pb2.GetExposureResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        tenant_id = require_tenant_scope()
        now = datetime.now(UTC)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.exposure_rows(
                conn, tenant_id, now.date(), request.chain_id, request.strategy_id
            )
            tenant_limits, strategy_limits, _ = await _effective(conn, tenant_id, request.strategy_id)
        response = risk_pb2.GetExposureResponse(computed_at=_timestamp(now))
        for row in rows:
            token = TokenKey(row["chain_id"], row["token"])
            reserved = int(row["reserved"])
            caps = [
                lim.max_position
                for lim in (tenant_limits, strategy_limits)
                if lim.max_position is not None and lim.denomination == token
            ]
            limit = min(caps) if caps else None
            response.exposures.append(
                risk_pb2.Exposure(
                    token=token.to_proto(),
                    reserved=str(reserved),
                    realized_pnl_today=str(int(row["pnl_today"])),
                    realized_pnl_total=str(int(row["pnl_total"])),
                    limit="" if limit is None else str(limit),
                    utilization=reserved / limit if limit else 0.0,
                    open_reservations=row["n"],
                )
            )
            response.concurrent_executions += row["n"]
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
        tenant_id = require_tenant_scope()
        method = request.method or risk_pb2.VAR_METHOD_HISTORICAL
        horizon = request.horizon_days or 1
        lookback = request.lookback_days or DEFAULT_LOOKBACK_DAYS
        today = utc_today()
        since: date = today - timedelta(days=lookback - 1)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.daily_pnl_series(conn, tenant_id, since, request.strategy_id)
            _, _, effective = await _effective(conn, tenant_id, request.strategy_id)
        series: dict[TokenKey, list[int]] = {}
        for row in rows:
            series.setdefault(TokenKey(row["chain_id"], row["token"]), []).append(int(row["pnl"]))
        compute = parametric_var if method == risk_pb2.VAR_METHOD_PARAMETRIC else historical_var
        response = risk_pb2.GetVaRResponse(
            confidence=request.confidence,
            method=method,
            horizon_days=horizon,
            computed_at=_timestamp(datetime.now(UTC)),
        )
        for token, daily in sorted(series.items()):
            try:
                result = compute(daily, request.confidence, horizon)
            except NotEnoughHistory:
                continue
            capital = effective.max_position if effective.denomination == token else None
            response.figures.append(
                risk_pb2.VarFigure(
                    denomination=token.to_proto(),
                    value_at_risk=str(result.value_at_risk),
                    expected_shortfall=str(result.expected_shortfall),
                    var_ratio=result.value_at_risk / capital if capital else 0.0,
                    observations=result.observations,
                )
            )
        if not response.figures:
            raise FailedPrecondition(
                f"not enough PnL history for a {horizon}-day VaR (need at least 2 observations)",
                subject="pnl_series",
            )
        return response

    # ------------------------------------------------------------------------------- kill switch

    @rpc(*SWITCH_WRITERS)
    async def SetKillSwitch(
        self, request: risk_pb2.SetKillSwitchRequest, context: Ctx
    ) -> risk_pb2.SetKillSwitchResponse:
        v = Validator()
        if request.engaged:
            v.length(request.reason, "reason", 1, 512)
        else:
            v.length(request.reason, "reason", 0, 512)
        _strategy_id(request.strategy_id, v)
        if request.platform_wide:
            v.check(not request.tenant_id, "tenant_id", "must be empty for the platform-wide switch")
            v.check(not request.strategy_id, "strategy_id", "must be empty for the platform-wide switch")
        v.raise_if_any()
        principal = current_principal()
        if not request.engaged and not principal.has_any((Role.OWNER, Role.ADMIN)):
            raise PermissionDenied("releasing a kill switch needs the owner or admin role")
        if request.platform_wide:
            if not principal.is_platform_admin:
                raise PermissionDenied("the platform-wide kill switch is for platform admins")
            async with platform_transaction(self._pool) as conn:
                row = await self._set_switch(
                    conn, request, store.PLATFORM_SWITCH_TENANT, audit_tenant=principal.tenant_id
                )
            return risk_pb2.SetKillSwitchResponse(kill_switch=_kill_switch(row))
        tenant_id = require_tenant_scope(request.tenant_id)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            # Ordered against decisions: every decision after this commit sees the new state.
            await store.lock_risk_state(conn, tenant_id)
            row = await self._set_switch(conn, request, tenant_id, audit_tenant=tenant_id)
        return risk_pb2.SetKillSwitchResponse(kill_switch=_kill_switch(row))

    @staticmethod
    async def _set_switch(
        conn: asyncpg.Connection, request: risk_pb2.SetKillSwitchRequest, tenant_id: str, *, audit_tenant: str
    ) -> asyncpg.Record:
        principal = current_principal()
        current = await store.get_kill_switch(conn, tenant_id, request.strategy_id)
        if current is not None and current["engaged"] == request.engaged:
            return current  # Idempotent: already in the requested state, nothing changes.
        if current is None and not request.engaged:
            return await store.put_kill_switch(
                conn,
                tenant_id=tenant_id,
                strategy_id=request.strategy_id,
                engaged=False,
                reason="",
                changed_by="",
            )
        row = await store.put_kill_switch(
            conn,
            tenant_id=tenant_id,
            strategy_id=request.strategy_id,
            engaged=request.engaged,
            reason=request.reason,
            changed_by=principal.subject,
        )
        await enqueue_kill_switch_changed(
            conn,
            principal,
            tenant_id=tenant_id,
            strategy_id=request.strategy_id,
            engaged=request.engaged,
            reason=request.reason,
            occurred_at=row["changed_at"],
        )
        scope = "platform" if tenant_id == store.PLATFORM_SWITCH_TENANT else f"tenants/{tenant_id}"
        await record_audit(
            conn,
            principal,
            tenant_id=audit_tenant,
            action=f"risk.kill_switch.{'engage' if request.engaged else 'release'}",
            resource=f"{scope}/kill-switch" + (f"/{request.strategy_id}" if request.strategy_id else ""),
            occurred_at=row["changed_at"],
            details={"reason": request.reason},
        )
        return row

    @rpc(*READERS)
    async def GetKillSwitch(
        self, request: risk_pb2.GetKillSwitchRequest, context: Ctx
    ) -> risk_pb2.GetKillSwitchResponse:
        v = Validator()
        _strategy_id(request.strategy_id, v)
        v.raise_if_any()
        tenant_id = require_tenant_scope(request.tenant_id)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_kill_switch(conn, tenant_id, request.strategy_id)
            platform = await store.get_kill_switch(conn, store.PLATFORM_SWITCH_TENANT, "")
        return risk_pb2.GetKillSwitchResponse(
            kill_switch=_kill_switch(row, request.strategy_id), platform=_kill_switch(platform)
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
            if not isinstance(moment, int) or not isinstance(breach_id, str):
                raise InvalidArgument(
                    FieldViolation("page.page_token", "is not a page token issued by this API")
                )
            after = (EPOCH + timedelta(microseconds=moment), breach_id)
        tenant_id = require_tenant_scope()
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.list_breaches(
                conn,
                tenant_id=tenant_id,
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
            breaches=[_breach(r) for r in page], page=common_pb2.PageResponse(next_page_token=token)
        )
