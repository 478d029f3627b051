"""The v1 API contract, checked on the generated descriptors: every proto generates and imports,
every service has the RPCs clients code against, money is never a float, lists paginate, creates
take idempotency keys, and every event carries the common envelope fields."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor, ServiceDescriptor

from mevaas.common.v1 import common_pb2

ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = ROOT / "protos"

DOMAINS = ["common", "events", "tenancy", "strategy", "execution", "portfolio", "analytics", "risk"]

REQUIRED_RPCS: dict[str, set[str]] = {
    "mevaas.tenancy.v1.TenantService": {
        "CreateTenant",
        "GetTenant",
        "ListTenants",
        "UpdateTenant",
        "SuspendTenant",
        "ResumeTenant",
        "DeleteTenant",
        "AdvanceOnboarding",
        "SetBranding",
        "GetBranding",
        "CreateUser",
        "ListUsers",
        "UpdateUserRoles",
        "DeleteUser",
        "CreateApiKey",
        "ListApiKeys",
        "RevokeApiKey",
        "ListAuditRecords",
    },
    "mevaas.tenancy.v1.AuthService": {"ExchangeApiKey", "GetPublicKeys", "WhoAmI"},
    "mevaas.tenancy.v1.SignInService": {
        "CreateEnrolment",
        "BeginEnrolment",
        "CompleteEnrolment",
        "SignIn",
        "ExchangeSession",
        "EndSession",
        "SetOidcProvider",
        "GetOidcProvider",
        "StartOidcSignIn",
        "CompleteOidcSignIn",
    },
    "mevaas.strategy.v1.StrategyService": {
        "CreateStrategy",
        "GetStrategy",
        "ListStrategies",
        "UpdateStrategy",
        "ListStrategyVersions",
        "DeleteStrategy",
        "ValidateStrategy",
        "Backtest",
        "GetBacktest",
        "CompareBacktestToLive",
    },
    "mevaas.strategy.v1.LeverageProtectionService": {
        "ProtectPosition",
        "GetProtectedPosition",
        "ListProtectedPositions",
        "UpdateProtectedPosition",
        "UnprotectPosition",
        "WatchProtectionAlerts",
    },
    "mevaas.execution.v1.ExecutionService": {
        "StartExecution",
        "StopExecution",
        "PauseExecution",
        "ResumeExecution",
        "GetExecutionStatus",
        "ListExecutions",
        "CreateWallet",
        "ImportWallet",
        "ListWallets",
        "SubmitProtectedTransaction",
        "GetProtectedTransaction",
    },
    "mevaas.portfolio.v1.PortfolioService": {"GetPositions", "GetPerformance", "GetRiskSummary", "Rebalance"},
    "mevaas.analytics.v1.AnalyticsService": {
        "ListOpportunities",
        "GetExecutionReport",
        "GetComplianceReport",
        "GetCustomReport",
        "ExportReport",
        "ListInvoices",
        "GetInvoice",
        "InspectBlock",
    },
    "mevaas.risk.v1.RiskService": {
        "GetLimits",
        "UpdateLimits",
        "GetExposure",
        "GetVaR",
        "SetKillSwitch",
        "GetKillSwitch",
        "ListBreaches",
    },
}

# Substrings that make a field name money-like: such a field must never be float/double.
MONEY_WORDS = (
    "amount",
    "profit",
    "fee",
    "price",
    "position",
    "balance",
    "value",
    "pnl",
    "cost",
    "loss",
    "wei",
)
# Explicit statistics whose names contain a money word but which are ratios, not money.
STATISTIC_FIELDS = {
    # Pearson correlation of two daily PnL series, -1..1.
    "mevaas.strategy.v1.CompareBacktestToLiveResponse.daily_pnl_correlation",
}

# RPCs whose retry would duplicate an effect: their requests must carry an idempotency_key.
IDEMPOTENT_RPCS = {
    "CreateTenant",
    "CreateUser",
    "CreateApiKey",
    "CreateStrategy",
    "UpdateStrategy",
    "Backtest",
    "StartExecution",
    "CreateWallet",
    "ImportWallet",
    "SubmitProtectedTransaction",
    "Rebalance",
}

EVENT_MESSAGES = {
    "TenantEvent",
    "AuditRecord",
    "MarketUpdate",
    "PendingTransaction",
    "Opportunity",
    "RiskDecision",
    "ExecutionSessionEvent",
    "ExecutionResult",
    "RiskBreach",
    "KillSwitchChanged",
    "RebalanceCommand",
    "ReportReady",
}


def _modules() -> list[tuple[ModuleType, ModuleType]]:
    return [
        (
            importlib.import_module(f"mevaas.{d}.v1.{d}_pb2"),
            importlib.import_module(f"mevaas.{d}.v1.{d}_pb2_grpc"),
        )
        for d in DOMAINS
    ]


def _files() -> list[FileDescriptor]:
    return [pb2.DESCRIPTOR for pb2, _ in _modules()]


def _services() -> dict[str, ServiceDescriptor]:
    return {s.full_name: s for f in _files() for s in f.services_by_name.values()}


def _all_messages(descriptor: Descriptor | FileDescriptor) -> Iterator[Descriptor]:
    children = (
        descriptor.message_types_by_name.values()
        if isinstance(descriptor, FileDescriptor)
        else descriptor.nested_types
    )
    for message in children:
        yield message
        yield from _all_messages(message)


def _message_type(message: Descriptor, field_name: str) -> str:
    """Full name of the message type of a field ("" when absent or scalar)."""
    field = message.fields_by_name.get(field_name)
    if field is None or field.message_type is None:
        return ""
    return str(field.message_type.full_name)


def test_every_proto_file_is_one_of_the_known_domains() -> None:
    found = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    assert found == sorted(f"mevaas/{d}/v1/{d}.proto" for d in DOMAINS)


def test_every_module_imports_with_the_expected_package() -> None:
    for (pb2, grpc_mod), domain in zip(_modules(), DOMAINS, strict=True):
        assert pb2.DESCRIPTOR.package == f"mevaas.{domain}.v1"
        for service in pb2.DESCRIPTOR.services_by_name.values():
            assert hasattr(grpc_mod, f"{service.name}Stub")
            assert hasattr(grpc_mod, f"{service.name}Servicer")
            assert hasattr(grpc_mod, f"add_{service.name}Servicer_to_server")


def test_only_well_known_types_and_own_packages_are_imported() -> None:
    for f in _files():
        for dep in f.dependencies:
            assert dep.name.startswith(("google/protobuf/", "mevaas/")), (f.name, dep.name)


@pytest.mark.parametrize("service_name", sorted(REQUIRED_RPCS))
def test_service_has_required_rpcs(service_name: str) -> None:
    services = _services()
    assert service_name in services, f"missing service {service_name}"
    methods = set(services[service_name].methods_by_name)
    assert REQUIRED_RPCS[service_name] <= methods, REQUIRED_RPCS[service_name] - methods


def test_no_unexpected_services() -> None:
    assert set(_services()) == set(REQUIRED_RPCS)


def test_money_like_fields_are_never_floating_point() -> None:
    offenders = []
    for f in _files():
        for message in _all_messages(f):
            for field in message.fields:
                if field.full_name in STATISTIC_FIELDS:
                    continue
                if any(w in field.name for w in MONEY_WORDS) and field.type in (
                    FieldDescriptor.TYPE_DOUBLE,
                    FieldDescriptor.TYPE_FLOAT,
                ):
                    offenders.append(field.full_name)
    assert offenders == []


def test_statistic_exceptions_exist_and_are_doubles() -> None:
    fields = {field.full_name: field for f in _files() for m in _all_messages(f) for field in m.fields}
    for name in STATISTIC_FIELDS:
        assert fields[name].type == FieldDescriptor.TYPE_DOUBLE, name


def test_integer_amounts_are_strings_not_number_types() -> None:
    """Base-unit amounts exceed uint64 (wei), so money-like scalars must be strings (or messages)."""
    number_types = {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
    }
    # Gas units, bps, counts and block numbers are legitimately integers.
    allowed_suffixes = ("_bps", "_count", "gas_used", "gas_estimate", "gas_limit")
    offenders = [
        field.full_name
        for f in _files()
        for message in _all_messages(f)
        for field in message.fields
        if any(w in field.name for w in ("amount", "profit", "balance", "price", "pnl", "wei"))
        and field.type in number_types
        and not field.name.endswith(allowed_suffixes)
    ]
    assert offenders == []


def test_list_rpcs_paginate() -> None:
    for service in _services().values():
        for method in service.methods:
            if not method.name.startswith("List"):
                continue
            assert _message_type(method.input_type, "page") == "mevaas.common.v1.PageRequest", (
                method.full_name
            )
            assert _message_type(method.output_type, "page") == "mevaas.common.v1.PageResponse", (
                method.full_name
            )


def test_effectful_mutations_take_an_idempotency_key() -> None:
    seen = set()
    for service in _services().values():
        for method in service.methods:
            if method.name in IDEMPOTENT_RPCS:
                seen.add(method.name)
                field = method.input_type.fields_by_name.get("idempotency_key")
                assert field is not None and field.type == FieldDescriptor.TYPE_STRING, method.full_name
    assert seen == IDEMPOTENT_RPCS


def test_events_carry_the_envelope_fields() -> None:
    from mevaas.events.v1 import events_pb2

    messages = events_pb2.DESCRIPTOR.message_types_by_name
    assert set(messages) >= EVENT_MESSAGES
    for name in EVENT_MESSAGES:
        fields = messages[name].fields_by_number
        assert fields[1].name == "event_id" and fields[1].type == FieldDescriptor.TYPE_STRING, name
        assert fields[2].name == "tenant_id" and fields[2].type == FieldDescriptor.TYPE_STRING, name
        assert fields[3].name == "occurred_at", name
        assert _message_type(messages[name], "occurred_at") == "google.protobuf.Timestamp", name


def test_amounts_beyond_uint64_round_trip_exactly() -> None:
    wei = str(2**200 + 12345)
    amount = common_pb2.TokenAmount(
        token=common_pb2.Token(chain_id=1, address="0x" + "c0" * 20, symbol="WETH", decimals=18),
        amount=wei,
    )
    decoded = common_pb2.TokenAmount.FromString(amount.SerializeToString())
    assert decoded.amount == wei
    assert int(decoded.amount) == 2**200 + 12345


def test_timeframe_is_preset_or_range() -> None:
    preset = common_pb2.Timeframe(preset=common_pb2.TIMEFRAME_PRESET_LAST_7_DAYS)
    assert preset.WhichOneof("kind") == "preset"
    ranged = common_pb2.Timeframe(range=common_pb2.TimeRange(start=timestamp_pb2.Timestamp(seconds=1)))
    assert ranged.WhichOneof("kind") == "range"
    names = set(common_pb2.TimeframePreset.keys())
    for suffix in ("1_HOUR", "24_HOURS", "7_DAYS", "30_DAYS", "90_DAYS", "ALL_TIME"):
        assert any(n.endswith(suffix) for n in names), suffix
