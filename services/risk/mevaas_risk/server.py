"""Risk service wiring: the RiskService servicer, the consumers of opportunities, execution results
and tenant events, and the outbox relay.

Replicas share each durable pull consumer (JetStream hands every message to one of them); the
per-tenant row lock in Postgres is what keeps their concurrent decisions within the limits.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.risk.v1 import risk_pb2, risk_pb2_grpc
from mevaas_core import sanctions, subjects
from mevaas_core.config import ServiceSettings
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_risk import store
from mevaas_risk.api import RiskServicer
from mevaas_risk.commands import RiskCommands
from mevaas_risk.engine import RiskEngine
from mevaas_risk.events import SCHEMA, RiskHandlers
from mevaas_risk.strategies import StrategyScope
from mevaas_risk.withdrawals import WithdrawalAllowlist


class RiskSettings(ServiceSettings):
    service_name: str = "risk"
    # Durable consumer names: every replica uses the same ones to share the work.
    opportunity_durable: str = "risk-opportunities"
    result_durable: str = "risk-execution-results"
    tenant_durable: str = "risk-tenants"
    opportunity_subject: str = "opp.>"
    result_subject: str = "exec.*.result"
    # Opportunities decided at once per replica (decisions of one tenant still queue on its lock).
    decision_concurrency: int = 8
    # A reservation nobody releases stops counting against the limits after this long.
    reservation_ttl_seconds: float = 600.0
    # Sanctions list every counterparty of every action is screened against (mevaas_core.sanctions):
    # an OFAC SDN.CSV or one address per line; "" = the sample shipped for the devnet, "none" = none.
    sanctions_list_file: str = ""
    # Extra addresses, comma-separated (address or address=list name).
    sanctioned_addresses: str = ""
    # Where strategy ids are checked (the strategy service's lookup), so limits and kill switches
    # are only kept for the tenant's own strategies.
    strategy_lookup_subject: str = subjects.STRATEGY_GET


class RiskRuntime(ServiceRuntime[RiskSettings]):
    name = "risk"
    erasure = store.ERASURE
    # The pre-trade engine, set by setup(); exposed for in-process benchmarks and tests.
    engine: RiskEngine

    async def setup(self) -> None:
        settings = self.settings
        engine = RiskEngine(
            self.pool,
            reservation_ttl=timedelta(seconds=settings.reservation_ttl_seconds),
            sanctions=sanctions.load(settings.sanctions_list_file, extra=settings.sanctioned_addresses),
        )
        self.engine = engine
        self.add_servicer(
            RiskServicer(RiskCommands(self.pool, StrategyScope(self.bus, settings.strategy_lookup_subject))),
            risk_pb2_grpc.add_RiskServiceServicer_to_server,
            risk_pb2.DESCRIPTOR.services_by_name["RiskService"],
        )
        allowlist = await self.bus.serve(
            subjects.RISK_WITHDRAWAL_ALLOWLIST,
            "risk-withdrawal-allowlist",
            common_pb2.WithdrawalAllowlistRequest,
            WithdrawalAllowlist(self.pool).answer,
        )
        self.on_stop(allowlist.stop)
        relay = OutboxRelay(self.pool, SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)
        handlers = RiskHandlers(engine, self.bus)
        # Tenants first, so a tenant's status and plan are known before its opportunities.
        await self.bus.subscribe(
            "TENANT", settings.tenant_durable, "tenant.>", events_pb2.TenantEvent, handlers.on_tenant_event
        )
        await self.bus.subscribe(
            "EXEC",
            settings.result_durable,
            settings.result_subject,
            events_pb2.ExecutionResult,
            handlers.on_execution_result,
            concurrency=4,
            max_deliver=-1,
        )
        await self.bus.subscribe(
            "OPP",
            settings.opportunity_durable,
            settings.opportunity_subject,
            events_pb2.Opportunity,
            handlers.on_opportunity,
            concurrency=settings.decision_concurrency,
            batch=64,
            ack_wait=10.0,
            backoff=(0.05, 0.25, 1.0),
            max_deliver=10,
        )


SERVICE = ServiceSpec(
    name="risk",
    module="mevaas_risk",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    order=30,
)


def run() -> None:
    main(RiskRuntime, RiskSettings)
