"""The risk service's commands: each runs as one transaction (change + audit record + events).
Limit and kill-switch changes take the tenant's risk-state lock, so the next decision after the
commit sees them. Inputs are validated by the API; strategy ids are checked against the
tenant's strategies here, before anything is read or written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.risk.v1 import risk_pb2
from mevaas_core import audit
from mevaas_core.auth import Principal, Role
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.errors import FailedPrecondition, PermissionDenied
from mevaas_core.validation import Validator
from mevaas_risk import store
from mevaas_risk.domain.limits import Limits, TokenKey, apply_mask, validate_limits, validate_tightens
from mevaas_risk.domain.var import NotEnoughHistory, VarResult, historical_var, parametric_var
from mevaas_risk.events import SCHEMA, enqueue_kill_switch_changed
from mevaas_risk.strategies import StrategyScope


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


@dataclass(frozen=True, slots=True)
class LimitsView:
    row: asyncpg.Record | None
    effective: Limits


@dataclass(frozen=True, slots=True)
class ExposureRow:
    token: TokenKey
    reserved: int
    pnl_today: int
    pnl_total: int
    # The tightest max_position denominated in this token, if any.
    limit: int | None
    open_reservations: int


@dataclass(frozen=True, slots=True)
class VarFigureView:
    token: TokenKey
    result: VarResult
    # The effective max_position when denominated in the same token (the VaR ratio's base).
    capital: int | None


@dataclass(frozen=True, slots=True)
class KillSwitches:
    own: asyncpg.Record | None
    platform: asyncpg.Record | None


class RiskCommands:
    def __init__(self, pool: asyncpg.Pool, strategies: StrategyScope) -> None:
        self._pool = pool
        self._strategies = strategies

    # ------------------------------------------------------------------------------------ limits

    async def get_limits(self, tenant_id: str, strategy_id: str) -> LimitsView:
        await self._strategies.require(tenant_id, strategy_id)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_limits(conn, tenant_id, strategy_id)
            _, _, effective = await _effective(conn, tenant_id, strategy_id)
        return LimitsView(row, effective)

    async def update_limits(
        self, principal: Principal, tenant_id: str, request: risk_pb2.UpdateLimitsRequest
    ) -> LimitsView:
        strategy_id = request.strategy_id
        if not strategy_id and not principal.has_any((Role.OWNER, Role.ADMIN)):
            raise PermissionDenied("tenant-level limits need the owner or admin role")
        await self._strategies.require(tenant_id, strategy_id)
        v = Validator()
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await store.lock_risk_state(conn, tenant_id)
            current = await store.get_limits(conn, tenant_id, strategy_id)
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
            if strategy_id:
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
                strategy_id=strategy_id,
                limits=limits.to_proto().SerializeToString(deterministic=True),
                updated_by=principal.subject,
            )
            scope = f"/strategies/{strategy_id}" if strategy_id else ""
            await audit.record(
                conn,
                SCHEMA,
                tenant_id=tenant_id,
                target=f"tenants/{tenant_id}{scope}/limits",
                occurred_at=row["updated_at"],
                details={"paths": ",".join(request.update_mask.paths), "version": str(row["version"])},
            )
        effective = (limits.stricter(tenant_limits) if strategy_id else limits).capped(plan_cap)
        return LimitsView(row, effective)

    # ---------------------------------------------------------------------------------- exposure

    async def exposure(
        self, tenant_id: str, chain_id: int, strategy_id: str, now: datetime
    ) -> list[ExposureRow]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.exposure_rows(conn, tenant_id, now.date(), chain_id, strategy_id)
            tenant_limits, strategy_limits, _ = await _effective(conn, tenant_id, strategy_id)
        exposures = []
        for row in rows:
            token = TokenKey(row["chain_id"], row["token"])
            caps = [
                lim.max_position
                for lim in (tenant_limits, strategy_limits)
                if lim.max_position is not None and lim.denomination == token
            ]
            exposures.append(
                ExposureRow(
                    token=token,
                    reserved=int(row["reserved"]),
                    pnl_today=int(row["pnl_today"]),
                    pnl_total=int(row["pnl_total"]),
                    limit=min(caps) if caps else None,
                    open_reservations=row["n"],
                )
            )
        return exposures

    # --------------------------------------------------------------------------------------- VaR

    async def value_at_risk(
        self,
        tenant_id: str,
        strategy_id: str,
        *,
        method: int,
        confidence: float,
        horizon: int,
        since: date,
    ) -> list[VarFigureView]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.daily_pnl_series(conn, tenant_id, since, strategy_id)
            _, _, effective = await _effective(conn, tenant_id, strategy_id)
        series: dict[TokenKey, list[int]] = {}
        for row in rows:
            series.setdefault(TokenKey(row["chain_id"], row["token"]), []).append(int(row["pnl"]))
        compute = parametric_var if method == risk_pb2.VAR_METHOD_PARAMETRIC else historical_var
        figures = []
        for token, daily in sorted(series.items()):
            try:
                result = compute(daily, confidence, horizon)
            except NotEnoughHistory:
                continue
            capital = effective.max_position if effective.denomination == token else None
            figures.append(VarFigureView(token, result, capital))
        if not figures:
            raise FailedPrecondition(
                f"not enough PnL history for a {horizon}-day VaR (need at least 2 observations)",
                subject="pnl_series",
            )
        return figures

    # ------------------------------------------------------------------------------- kill switch

    async def set_kill_switch(
        self, principal: Principal, request: risk_pb2.SetKillSwitchRequest, tenant_id: str
    ) -> asyncpg.Record:
        """``tenant_id`` is the caller's scope; ignored for the platform-wide switch."""
        if not request.engaged and not principal.has_any((Role.OWNER, Role.ADMIN)):
            raise PermissionDenied("releasing a kill switch needs the owner or admin role")
        if request.platform_wide:
            if not principal.is_platform_admin:
                raise PermissionDenied("the platform-wide kill switch is for platform admins")
            async with platform_transaction(self._pool) as conn:
                return await _set_switch(
                    conn, principal, request, store.PLATFORM_SWITCH_TENANT, audit_tenant=principal.tenant_id
                )
        await self._strategies.require(tenant_id, request.strategy_id, engaging_kill_switch=request.engaged)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            # Ordered against decisions: every decision after this commit sees the new state.
            await store.lock_risk_state(conn, tenant_id)
            return await _set_switch(conn, principal, request, tenant_id, audit_tenant=tenant_id)

    async def kill_switches(self, tenant_id: str, strategy_id: str) -> KillSwitches:
        await self._strategies.require(tenant_id, strategy_id)
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_kill_switch(conn, tenant_id, strategy_id)
            platform = await store.get_kill_switch(conn, store.PLATFORM_SWITCH_TENANT, "")
        return KillSwitches(row, platform)

    # ---------------------------------------------------------------------------------- breaches

    async def breaches(
        self,
        tenant_id: str,
        *,
        strategy_id: str,
        kind: str,
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            return await store.list_breaches(
                conn,
                tenant_id=tenant_id,
                strategy_id=strategy_id,
                kind=kind,
                start=start,
                end=end,
                after=after,
                limit=limit,
            )


async def _set_switch(
    conn: asyncpg.Connection,
    principal: Principal,
    request: risk_pb2.SetKillSwitchRequest,
    tenant_id: str,
    *,
    audit_tenant: str,
) -> asyncpg.Record:
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
    await audit.record(
        conn,
        SCHEMA,
        tenant_id=audit_tenant,
        target=f"{scope}/kill-switch" + (f"/{request.strategy_id}" if request.strategy_id else ""),
        occurred_at=row["changed_at"],
        details={"reason": request.reason, "engaged": str(request.engaged).lower()},
    )
    return row
