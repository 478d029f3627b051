"""Strategy service wiring: the chain registry, the engine (one per replica), the StrategyService
servicer, and the consumers of session and tenant events."""

from __future__ import annotations

from pathlib import Path

from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas_chain.registry import ChainRegistry, load_registry
from mevaas_core.config import ServiceSettings
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_strategy.api import SCHEMA, StrategyServicer
from mevaas_strategy.engine import Engine
from mevaas_strategy.events import (
    LOOKUP_SUBJECT,
    SESSION_DURABLE,
    TENANT_DURABLE,
    StateConsumers,
    StrategyLookup,
)


class StrategySettings(ServiceSettings):
    service_name: str = "strategy"
    # Chain registry file (JSON/YAML); empty = MEVAAS_CHAINS / MEVAAS_CHAINS_FILE / the devnet's.
    chains_file: str = ""
    # This replica's share of the tenants (see engine module docstring).
    engine_replica_index: int = 0
    engine_replicas: int = 1
    # Priority fee added to the base fee when estimating gas cost, wei.
    priority_fee_wei: int = 1_000_000_000
    # How often each chain's head is polled.
    block_poll_interval_s: float = 0.02
    # Run the engine (a replica serving only the API can turn it off).
    engine_enabled: bool = True


class StrategyRuntime(ServiceRuntime[StrategySettings]):
    name = "strategy"

    def __init__(self, settings: StrategySettings) -> None:
        super().__init__(settings)
        self.chains = ChainRegistry()
        self.engine: Engine | None = None

    async def setup(self) -> None:
        self.chains = load_registry(self.settings.chains_file or None)
        engine = Engine(
            self.bus,
            self.pool,
            self.chains,
            replica_index=self.settings.engine_replica_index,
            replicas=self.settings.engine_replicas,
            priority_fee_wei=self.settings.priority_fee_wei,
            poll_interval_s=self.settings.block_poll_interval_s,
        )
        if self.settings.engine_enabled:
            await engine.start()
            self.on_stop(engine.stop)
        self.engine = engine
        self.add_servicer(
            StrategyServicer(self.pool, lambda: self.chains, engine.usd_price, self.bus),
            strategy_pb2_grpc.add_StrategyServiceServicer_to_server,
            strategy_pb2.DESCRIPTOR.services_by_name["StrategyService"],
        )
        lookup = await self.bus.serve(
            LOOKUP_SUBJECT,
            "strategy-lookup",
            strategy_pb2.GetStrategyRequest,
            StrategyLookup(self.pool).answer,
        )
        self.on_stop(lookup.stop)
        consumers = StateConsumers(self.pool)
        sessions = await self.bus.subscribe(
            "EXEC", SESSION_DURABLE, "exec.*.session", events_pb2.ExecutionSessionEvent, consumers.on_session
        )
        self.on_stop(sessions.stop)
        tenants = await self.bus.subscribe(
            "TENANT", TENANT_DURABLE, "tenant.>", events_pb2.TenantEvent, consumers.on_tenant
        )
        self.on_stop(tenants.stop)


SERVICE = ServiceSpec(
    name="strategy",
    module="mevaas_strategy",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    order=30,
)


def run() -> None:
    main(StrategyRuntime, StrategySettings)
