"""The audit helpers: which RPCs mutate, and the tenant and target a record names."""

from __future__ import annotations

from mevaas.risk.v1 import risk_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_core import audit
from mevaas_core.auth import PLATFORM_TENANT_ID, Principal, Role

TENANT = Principal(subject="k1", tenant_id="t-1", roles=frozenset({Role.OWNER}))
ADMIN = Principal(subject="k0", tenant_id=PLATFORM_TENANT_ID, roles=frozenset({Role.PLATFORM_ADMIN}))


def test_reads_are_known_by_name_and_everything_else_mutates() -> None:
    for name in ("GetLimits", "ListStrategies", "ValidateStrategy", "InspectBlock", "WhoAmI", "ExportReport"):
        assert not audit.is_mutation(name), name
    for name in (
        "CreateStrategy",
        "SetKillSwitch",
        "Backtest",
        "Rebalance",
        "ExchangeApiKey",
        "StopExecution",
    ):
        assert audit.is_mutation(name), name


def test_the_record_names_the_tenant_acted_on_and_never_an_unsafe_subject() -> None:
    named = risk_pb2.GetLimitsRequest(tenant_id="t-2")
    assert audit.tenant_of(named, TENANT) == "t-1"  # a tenant cannot file records under another
    assert audit.tenant_of(named, ADMIN) == "t-2"
    assert audit.tenant_of(risk_pb2.GetLimitsRequest(tenant_id="a.b >"), ADMIN) == PLATFORM_TENANT_ID
    assert audit.tenant_of(named, None) == PLATFORM_TENANT_ID


def test_the_target_is_the_first_id_of_the_request_and_bounded() -> None:
    assert audit.target_of(strategy_pb2.DeleteStrategyRequest(strategy_id="s-9")) == "strategies/s-9"
    assert audit.target_of(strategy_pb2.GetStrategyRequest()) == ""
    long = audit.target_of(strategy_pb2.DeleteStrategyRequest(strategy_id="x" * 1000))
    assert long == "strategies/" + "x" * 128


def test_a_record_has_the_one_shape() -> None:
    call = audit.AuditCall("risk", "/mevaas.risk.v1.RiskService/SetKillSwitch", "req-1", TENANT)
    record = audit.build(call, tenant_id="t-1", target="tenants/t-1/kill-switch", outcome=audit.DENIED)
    assert (record.action, record.service, record.request_id, record.tenant_id) == (
        "/mevaas.risk.v1.RiskService/SetKillSwitch",
        "risk",
        "req-1",
        "t-1",
    )
    assert record.actor.id == "k1" and record.actor.tenant_id == "t-1" and list(record.actor.roles) == [1]
    assert record.event_id and record.occurred_at.seconds > 0
