"""Risk over real gRPC, NATS JetStream and PostgreSQL: limits API and RBAC, the atomic pre-trade
check under 200 concurrent opportunities with two replicas, redelivery, release and PnL booking,
the kill switch, VaR and breaches."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.risk.v1 import risk_pb2, risk_pb2_grpc
from mevaas_core.bus import Bus
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from mevaas_risk.server import RiskRuntime
from mevaas_sdk import MevaasClient
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.risk.helpers import (
    WETH,
    Collector,
    RiskTenant,
    create_strategy,
    drained,
    eventually,
    opportunity,
    publish_opportunity,
    publish_result,
    risk_tenant,
)
from tests.integration.tenancy.helpers import field_violations

pytestmark = pytest.mark.integration

APPROVED = events_pb2.RISK_DECISION_OUTCOME_APPROVED
REJECTED = events_pb2.RISK_DECISION_OUTCOME_REJECTED


async def expect_code(code: grpc.StatusCode, call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


@pytest.fixture
async def tenant(
    admin_client: MevaasClient, client_for: Callable[..., MevaasClient], risk_service: ServiceRuntime[Any]
) -> AsyncIterator[RiskTenant]:
    made = await risk_tenant(admin_client, client_for, risk_service)
    await plan_known(made)
    yield made
    await made.close()


async def plan_known(tenant: RiskTenant) -> None:
    """Risk learns the tenant's plan from tenant.created; wait for it (professional: 10 in flight)."""

    async def check() -> bool:
        got = await tenant.risk().GetLimits(risk_pb2.GetLimitsRequest())
        return got.effective.max_concurrent_executions == 10

    await eventually(check)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def set_limits(
    tenant: RiskTenant, strategy_id: str = "", **values: Any
) -> risk_pb2.UpdateLimitsResponse:
    limits = common_pb2.RiskLimits(**values)
    paths = list(values)
    if any(p in values for p in ("max_position", "min_profit", "daily_loss_limit")):
        limits.denomination.CopyFrom(WETH)
        paths.append("denomination")
    response: risk_pb2.UpdateLimitsResponse = await tenant.risk().UpdateLimits(
        risk_pb2.UpdateLimitsRequest(strategy_id=strategy_id, limits=limits, update_mask=mask(*paths))
    )
    return response


async def decisions_for(bus: Bus, tenant_id: str) -> Collector:
    return await Collector.start(bus, "RISK", f"risk.{tenant_id}.decision", events_pb2.RiskDecision)


async def exposure(tenant: RiskTenant) -> risk_pb2.GetExposureResponse:
    response: risk_pb2.GetExposureResponse = await tenant.risk("viewer").GetExposure(
        risk_pb2.GetExposureRequest()
    )
    return response


# ------------------------------------------------------------------------------------------- limits


async def test_limits_crud_validation_and_roles(
    tenant: RiskTenant,
    admin_client: MevaasClient,
    client_for: Callable[..., MevaasClient],
    risk_service: ServiceRuntime[Any],
    strategy_service: ServiceRuntime[Any],
    devnet: Devnet,
) -> None:
    strategy_id = await create_strategy(tenant, client_for, strategy_service, devnet)
    empty = await tenant.risk().GetLimits(risk_pb2.GetLimitsRequest())
    assert empty.record.version == 0
    assert not empty.record.limits.max_position

    updated = await set_limits(
        tenant, max_position="1000", max_gas_price_wei="50000000000", allowed_chain_ids=[31337]
    )
    assert updated.record.version == 1
    assert updated.record.limits.max_position == "1000"
    assert updated.record.limits.denomination == WETH
    got = await tenant.risk("viewer").GetLimits(risk_pb2.GetLimitsRequest())
    assert got.record.limits == updated.record.limits
    assert got.effective.max_concurrent_executions == 10  # the plan's cap

    # Every bad field is named at once.
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        tenant.risk().UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(
                    max_position="lots", max_slippage_bps=20_000, allowed_chain_ids=[0], min_profit="5"
                ),
                update_mask=mask(
                    "max_position", "max_slippage_bps", "allowed_chain_ids", "min_profit", "bogus"
                ),
            )
        ),
    )
    assert set(field_violations(error)) == {
        "update_mask.paths[4]",
    }
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        tenant.risk().UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(
                    max_position="lots", max_slippage_bps=20_000, allowed_chain_ids=[0]
                ),
                update_mask=mask("max_position", "max_slippage_bps", "allowed_chain_ids"),
            )
        ),
    )
    assert set(field_violations(error)) == {
        "limits.max_position",
        "limits.max_slippage_bps",
        "limits.allowed_chain_ids[0]",
    }
    # Clearing the denomination while amounts are set is refused.
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        tenant.risk().UpdateLimits(
            risk_pb2.UpdateLimitsRequest(limits=common_pb2.RiskLimits(), update_mask=mask("denomination"))
        ),
    )
    assert field_violations(error) == ["limits.denomination"]
    # Stale expected_version; above the plan's concurrency.
    await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        tenant.risk().UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(max_slippage_bps=30),
                update_mask=mask("max_slippage_bps"),
                expected_version=7,
            )
        ),
    )
    await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        tenant.risk().UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(max_concurrent_executions=11),
                update_mask=mask("max_concurrent_executions"),
            )
        ),
    )

    # Strategy limits may only tighten the tenant's; the effective limits are the stricter.
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        tenant.risk("trader").UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                strategy_id=strategy_id,
                limits=common_pb2.RiskLimits(denomination=WETH, max_position="5000", allowed_chain_ids=[1]),
                update_mask=mask("*"),
            )
        ),
    )
    assert set(field_violations(error)) == {"limits.max_position", "limits.allowed_chain_ids"}
    strategy = await tenant.risk("trader").UpdateLimits(
        risk_pb2.UpdateLimitsRequest(
            strategy_id=strategy_id,
            limits=common_pb2.RiskLimits(denomination=WETH, max_position="400", max_concurrent_executions=3),
            update_mask=mask("*"),
        )
    )
    assert strategy.effective.max_position == "400"
    assert strategy.effective.max_gas_price_wei == "50000000000"
    assert list(strategy.effective.allowed_chain_ids) == [31337]
    assert strategy.effective.max_concurrent_executions == 3

    # Roles: viewers and compliance read only; traders change strategy limits, not the tenant's.
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        tenant.risk("viewer").UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(max_slippage_bps=5), update_mask=mask("max_slippage_bps")
            )
        ),
    )
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        tenant.risk("trader").UpdateLimits(
            risk_pb2.UpdateLimitsRequest(
                limits=common_pb2.RiskLimits(max_slippage_bps=5), update_mask=mask("max_slippage_bps")
            )
        ),
    )

    # Isolation: another tenant neither reads nor writes these limits.
    other = await risk_tenant(admin_client, client_for, risk_service, roles=())
    try:
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            other.risk().GetLimits(risk_pb2.GetLimitsRequest(tenant_id=tenant.tenant_id)),
        )
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            other.risk().UpdateLimits(
                risk_pb2.UpdateLimitsRequest(
                    tenant_id=tenant.tenant_id,
                    limits=common_pb2.RiskLimits(max_slippage_bps=5),
                    update_mask=mask("max_slippage_bps"),
                )
            ),
        )
        own = await other.risk().GetLimits(risk_pb2.GetLimitsRequest())
        assert own.record.version == 0 and not own.record.limits.max_position
        # Strategy ids are the tenant's own: another tenant's strategy is as unknown as a made-up
        # one, for limits and kill switches alike, and nothing is stored under it.
        for foreign in (strategy_id, "no-such-strategy"):
            for call in (
                other.risk().GetLimits(risk_pb2.GetLimitsRequest(strategy_id=foreign)),
                other.risk().UpdateLimits(
                    risk_pb2.UpdateLimitsRequest(
                        strategy_id=foreign,
                        limits=common_pb2.RiskLimits(max_slippage_bps=5),
                        update_mask=mask("max_slippage_bps"),
                    )
                ),
                other.risk().SetKillSwitch(
                    risk_pb2.SetKillSwitchRequest(strategy_id=foreign, engaged=True, reason="probe")
                ),
                other.risk().GetKillSwitch(risk_pb2.GetKillSwitchRequest(strategy_id=foreign)),
            ):
                error = await expect_code(grpc.StatusCode.NOT_FOUND, call)
                assert foreign in (error.details() or "")
        mine = await tenant.risk().GetLimits(risk_pb2.GetLimitsRequest(strategy_id=strategy_id))
        assert mine.record.limits.max_position == "400"
        switch = await tenant.risk().GetKillSwitch(risk_pb2.GetKillSwitchRequest(strategy_id=strategy_id))
        assert not switch.kill_switch.engaged
    finally:
        await other.close()


# ------------------------------------------------------------------------------ pre-trade check


async def test_200_concurrent_opportunities_never_exceed_a_limit(
    admin_client: MevaasClient,
    client_for: Callable[..., MevaasClient],
    risk_service: ServiceRuntime[Any],
    bus: Bus,
) -> None:
    # Tenant A is bound by max concurrent executions (5 x 100 <= 1000), tenant B by max position
    # (3 x 300 = 900 <= 1000 < 4 x 300). 100 opportunities each, all published at once, decided
    # by two replicas sharing the durable consumer.
    a = await risk_tenant(admin_client, client_for, risk_service)
    b = await risk_tenant(admin_client, client_for, risk_service)
    replica = RiskRuntime(risk_service.settings.model_copy(update={"grpc_port": 0, "metrics_port": 0}))
    await replica.start()
    try:
        for t in (a, b):
            await plan_known(t)
            await set_limits(t, max_position="1000", max_concurrent_executions=5)
        decided_by: Counter[str] = Counter()
        for name, runtime in (("first", risk_service), ("second", replica)):
            assert isinstance(runtime, RiskRuntime)
            engine = runtime.engine
            original = engine.decide

            async def counting(opp: events_pb2.Opportunity, _o: Any = original, _n: str = name) -> Any:
                decided_by[_n] += 1
                return await _o(opp)

            engine.decide = counting  # type: ignore[method-assign]
        decisions_a = await decisions_for(bus, a.tenant_id)
        decisions_b = await decisions_for(bus, b.tenant_id)
        opportunities = [opportunity(a.tenant_id, amount_in=100) for _ in range(100)]
        opportunities += [opportunity(b.tenant_id, amount_in=300) for _ in range(100)]
        await asyncio.gather(*(publish_opportunity(bus, o) for o in opportunities))

        await decisions_a.wait(100)
        await decisions_b.wait(100)
        assert sum(decided_by.values()) == 200
        assert decided_by["first"] > 0 and decided_by["second"] > 0, decided_by

        for t, collector, allowed, reason in (
            (a, decisions_a, 5, events_pb2.RISK_REASON_CODE_MAX_CONCURRENT_EXECUTIONS),
            (b, decisions_b, 3, events_pb2.RISK_REASON_CODE_MAX_POSITION),
        ):
            by_opportunity = {d.opportunity_id: d for d in collector.events}
            assert len(by_opportunity) == len(collector.events) == 100
            approved = [d for d in collector.events if d.outcome == APPROVED]
            assert len(approved) == allowed
            assert {d.reason_code for d in collector.events if d.outcome == REJECTED} == {reason}
            assert len({d.reservation_id for d in approved}) == allowed
            assert all(d.opportunity.opportunity_id == d.opportunity_id for d in collector.events)
            view = await exposure(t)
            assert view.concurrent_executions == allowed
            [weth] = view.exposures
            assert int(weth.reserved) == sum(int(d.reserved_amount) for d in approved) <= 1000
            assert weth.limit == "1000"

            # The limit hit is recorded once as a breach and published.
            listed = await t.risk("viewer").ListBreaches(risk_pb2.ListBreachesRequest())
            kinds = [br.kind for br in listed.breaches]
            expected_kind = (
                events_pb2.BREACH_KIND_MAX_CONCURRENT_EXECUTIONS
                if reason == events_pb2.RISK_REASON_CODE_MAX_CONCURRENT_EXECUTIONS
                else events_pb2.BREACH_KIND_MAX_POSITION
            )
            assert kinds == [expected_kind]
        breaches = await Collector.start(bus, "RISK", f"risk.{a.tenant_id}.breach", events_pb2.RiskBreach)
        await breaches.wait(1)
        assert breaches.events[0].limit_value == "5"
    finally:
        await replica.stop()
        await a.close()
        await b.close()


async def test_redelivered_opportunity_one_decision_one_reservation(
    tenant: RiskTenant, risk_service: ServiceRuntime[Any], bus: Bus
) -> None:
    decisions = await decisions_for(bus, tenant.tenant_id)
    opp = opportunity(tenant.tenant_id)
    # Two publishes with different message ids get past JetStream's dedupe, as a redelivery would.
    await publish_opportunity(bus, opp, msg_id="first")
    await publish_opportunity(bus, opp, msg_id="second")
    await eventually(lambda: drained(bus, "OPP", risk_service.settings.opportunity_durable))
    await decisions.wait(1)
    await asyncio.sleep(0.2)
    # Both handlings published the same decision under the same message id: stored once.
    assert len(decisions.events) == 1
    assert decisions.events[0].outcome == APPROVED
    view = await exposure(tenant)
    assert view.concurrent_executions == 1
    assert view.exposures[0].reserved == "100"
    # Deciding it again directly returns the stored decision and writes nothing.
    assert isinstance(risk_service, RiskRuntime)
    engine = risk_service.engine
    again = await engine.decide(opp)
    assert again.duplicate
    assert again.decision == decisions.events[0]
    assert (await exposure(tenant)).concurrent_executions == 1


async def test_execution_result_releases_and_books_pnl_once(
    tenant: RiskTenant, risk_service: ServiceRuntime[Any], bus: Bus
) -> None:
    await set_limits(tenant, max_concurrent_executions=1)
    decisions = await decisions_for(bus, tenant.tenant_id)
    first = opportunity(tenant.tenant_id, amount_in=250)
    await publish_opportunity(bus, first)
    await decisions.wait(1)
    decision = decisions.events[0]
    assert decision.outcome == APPROVED
    blocked = opportunity(tenant.tenant_id)
    await publish_opportunity(bus, blocked)
    await decisions.wait(2)
    assert decisions.events[1].reason_code == events_pb2.RISK_REASON_CODE_MAX_CONCURRENT_EXECUTIONS

    submitted = events_pb2.ExecutionResult(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant.tenant_id,
        execution_id="exec-1",
        opportunity_id=first.opportunity_id,
        strategy_id=first.strategy_id,
        reservation_id=decision.reservation_id,
        chain_id=WETH.chain_id,
        status=common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED,
        profit_token=WETH,
    )
    await publish_result(bus, submitted)
    included = events_pb2.ExecutionResult()
    included.CopyFrom(submitted)
    included.event_id = str(uuid.uuid4())
    included.status = common_pb2.EXECUTION_RESULT_STATUS_INCLUDED
    included.realized_profit = "42"
    included.occurred_at.GetCurrentTime()
    # Published twice under different message ids: released and booked exactly once.
    await publish_result(bus, included, msg_id="r1")
    await publish_result(bus, included, msg_id="r2")
    durable = risk_service.settings.result_durable
    await eventually(lambda: drained(bus, "EXEC", durable))
    view = await exposure(tenant)
    assert view.concurrent_executions == 0
    [weth] = view.exposures
    assert (weth.reserved, weth.realized_pnl_today, weth.realized_pnl_total) == ("0", "42", "42")

    # The slot is free again.
    after = opportunity(tenant.tenant_id)
    await publish_opportunity(bus, after)
    await decisions.wait(3)
    assert decisions.events[2].outcome == APPROVED


async def test_daily_loss_limit_breach_rejects_new(
    tenant: RiskTenant, risk_service: ServiceRuntime[Any], bus: Bus
) -> None:
    await set_limits(tenant, daily_loss_limit="100")
    breaches = await Collector.start(bus, "RISK", f"risk.{tenant.tenant_id}.breach", events_pb2.RiskBreach)
    loss = events_pb2.ExecutionResult(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant.tenant_id,
        execution_id="exec-loss",
        strategy_id="s1",
        status=common_pb2.EXECUTION_RESULT_STATUS_REVERTED,
        realized_profit="-120",
        profit_token=WETH,
    )
    loss.occurred_at.GetCurrentTime()
    await publish_result(bus, loss)
    await breaches.wait(1)
    assert breaches.events[0].kind == events_pb2.BREACH_KIND_DAILY_LOSS_LIMIT
    assert breaches.events[0].observed_value == "120"
    decisions = await decisions_for(bus, tenant.tenant_id)
    await publish_opportunity(bus, opportunity(tenant.tenant_id))
    await decisions.wait(1)
    assert decisions.events[0].reason_code == events_pb2.RISK_REASON_CODE_DAILY_LOSS_LIMIT


# ------------------------------------------------------------------------------------ kill switch


async def test_kill_switch_rejects_everything_after_engagement(
    tenant: RiskTenant, risk_service: ServiceRuntime[Any], bus: Bus
) -> None:
    changes = await Collector.start(
        bus, "RISK", f"risk.{tenant.tenant_id}.killswitch", events_pb2.KillSwitchChanged
    )
    audit = await Collector.start(bus, "AUDIT", f"audit.{tenant.tenant_id}.record", events_pb2.AuditRecord)
    decisions = await decisions_for(bus, tenant.tenant_id)
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        tenant.risk("trader").SetKillSwitch(risk_pb2.SetKillSwitchRequest(engaged=True)),
    )
    assert field_violations(error) == ["reason"]
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        tenant.risk("viewer").SetKillSwitch(risk_pb2.SetKillSwitchRequest(engaged=True, reason="panic")),
    )
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        tenant.risk().SetKillSwitch(
            risk_pb2.SetKillSwitchRequest(engaged=True, reason="all", platform_wide=True)
        ),
    )

    engaged = await tenant.risk("trader").SetKillSwitch(
        risk_pb2.SetKillSwitchRequest(engaged=True, reason="oracle incident")
    )
    assert engaged.kill_switch.engaged
    # Idempotent: engaging again changes nothing and emits nothing.
    await tenant.risk("trader").SetKillSwitch(risk_pb2.SetKillSwitchRequest(engaged=True, reason="again"))
    state = await tenant.risk("viewer").GetKillSwitch(risk_pb2.GetKillSwitchRequest())
    assert state.kill_switch.engaged and state.kill_switch.reason == "oracle incident"
    assert not state.platform.engaged

    for _ in range(10):
        await publish_opportunity(bus, opportunity(tenant.tenant_id))
    await decisions.wait(10)
    assert {d.reason_code for d in decisions.events} == {events_pb2.RISK_REASON_CODE_KILL_SWITCH_ENGAGED}
    assert (await exposure(tenant)).concurrent_executions == 0

    await changes.wait(1)
    assert changes.events[0].engaged and changes.events[0].reason == "oracle incident"
    assert changes.events[0].tenant_id == tenant.tenant_id

    # The change is audited with who did it (the trader's API key) and why, in its transaction;
    # the no-op repeat and the refused attempts are in the trail too (written by the interceptor).
    async def risk_audit() -> list[events_pb2.AuditRecord]:
        return [r for r in audit.events if r.service == "risk" and "reason" in r.details]

    risk_records = await eventually(risk_audit)
    assert [r.action for r in risk_records] == ["/mevaas.risk.v1.RiskService/SetKillSwitch"]
    assert risk_records[0].details == {"reason": "oracle incident", "engaged": "true"}
    assert common_pb2.ROLE_TRADER in risk_records[0].actor.roles

    # Only owners and admins release it.
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        tenant.risk("trader").SetKillSwitch(risk_pb2.SetKillSwitchRequest(engaged=False)),
    )
    released = await tenant.risk().SetKillSwitch(risk_pb2.SetKillSwitchRequest(engaged=False))
    assert not released.kill_switch.engaged
    await publish_opportunity(bus, opportunity(tenant.tenant_id))
    await decisions.wait(11)
    assert decisions.events[10].outcome == APPROVED
    await changes.wait(2)
    assert not changes.events[1].engaged


async def test_platform_kill_switch_stops_every_tenant(
    tenant: RiskTenant,
    admin_client: MevaasClient,
    risk_service: ServiceRuntime[Any],
    bus: Bus,
    client_for: Callable[..., MevaasClient],
) -> None:
    platform = client_for(BOOTSTRAP_ADMIN_KEY, risk=f"127.0.0.1:{risk_service.grpc_port}")
    stub = platform.stub("risk", risk_pb2_grpc.RiskServiceStub)
    decisions = await decisions_for(bus, tenant.tenant_id)
    try:
        await stub.SetKillSwitch(
            risk_pb2.SetKillSwitchRequest(engaged=True, reason="chain halt", platform_wide=True)
        )
        state = await tenant.risk("viewer").GetKillSwitch(risk_pb2.GetKillSwitchRequest())
        assert state.platform.engaged and not state.kill_switch.engaged
        await publish_opportunity(bus, opportunity(tenant.tenant_id))
        await decisions.wait(1)
        assert decisions.events[0].reason_code == events_pb2.RISK_REASON_CODE_KILL_SWITCH_ENGAGED
        assert "platform" in decisions.events[0].reason
    finally:
        await stub.SetKillSwitch(risk_pb2.SetKillSwitchRequest(engaged=False, platform_wide=True))
        await platform.close()


# -------------------------------------------------------------------------------------------- VaR


async def test_var_on_a_seeded_pnl_series(
    tenant: RiskTenant, risk_service: ServiceRuntime[Any], bus: Bus
) -> None:
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        tenant.risk().GetVaR(risk_pb2.GetVaRRequest(confidence=1.0, horizon_days=31, lookback_days=1)),
    )
    assert set(field_violations(error)) == {"confidence", "horizon_days", "lookback_days"}
    await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION, tenant.risk().GetVaR(risk_pb2.GetVaRRequest(confidence=0.95))
    )

    # Ten daily results on ten past days (same series as the unit test's hand computation).
    daily = [30, -20, 5, -50, 40, 10, 0, 75, -10, 20]
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for index, pnl in enumerate(daily):
        result = events_pb2.ExecutionResult(
            event_id=str(uuid.uuid4()),
            tenant_id=tenant.tenant_id,
            execution_id=f"hist-{index}",
            strategy_id="s1",
            status=common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
            realized_profit=str(pnl),
            profit_token=WETH,
        )
        result.occurred_at.FromDatetime(today - timedelta(days=len(daily) - index))
        await publish_result(bus, result)
    await eventually(lambda: drained(bus, "EXEC", risk_service.settings.result_durable))

    historical = await tenant.risk("viewer").GetVaR(risk_pb2.GetVaRRequest(confidence=0.95))
    assert historical.method == risk_pb2.VAR_METHOD_HISTORICAL
    [figure] = historical.figures
    assert figure.denomination.address == WETH.address
    assert (figure.value_at_risk, figure.expected_shortfall, figure.observations) == ("50", "50", 10)
    assert (await tenant.risk().GetVaR(risk_pb2.GetVaRRequest(confidence=0.8))).figures[
        0
    ].expected_shortfall == "35"
    parametric = await tenant.risk("compliance" if "compliance" in tenant.clients else "viewer").GetVaR(
        risk_pb2.GetVaRRequest(confidence=0.95, method=risk_pb2.VAR_METHOD_PARAMETRIC, horizon_days=4)
    )
    assert parametric.figures[0].value_at_risk == "74"
    # A shorter lookback sees only the last three days (-10, 20 and 75): worst -10.
    recent = await tenant.risk().GetVaR(risk_pb2.GetVaRRequest(confidence=0.95, lookback_days=4))
    assert recent.figures[0].observations == 3
    assert recent.figures[0].value_at_risk == "10"
