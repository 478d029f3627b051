"""Strategy service wiring: the chain registry, the engine (one per replica), the StrategyService
servicer, and the consumers of session and tenant events."""

from __future__ import annotations

from pathlib import Path

from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas_chain.registry import ChainRegistry, load_registry
from mevaas_core.config import ServiceSettings
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_strategy import store
from mevaas_strategy.api import SCHEMA, StrategyServicer
from mevaas_strategy.auction import HintSearcher
from mevaas_strategy.commands import StrategyCommands
from mevaas_strategy.engine import Engine, owns_tenant
from mevaas_strategy.events import (
    LOOKUP_SUBJECT,
    SESSION_DURABLE,
    TENANT_DURABLE,
    StateConsumers,
    StrategyLookup,
)
from mevaas_strategy.pending import PendingWatcher
from mevaas_strategy.protection.api import ProtectionServicer
from mevaas_strategy.protection.commands import ProtectionCommands
from mevaas_strategy.protection.monitor import ProtectionMonitor


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
    # Watch every chain's public pending pool (chain.<id>.pending, sandwich threats); needs the
    # engine's reserves. Polled (txpool_content) unless PENDING_SUBSCRIBE and the chain has ws_url.
    pending_feed_enabled: bool = True
    pending_poll_interval_s: float = 0.2
    pending_subscribe: bool = False


class StrategyRuntime(ServiceRuntime[StrategySettings]):
    name = "strategy"
    erasure = store.ERASURE

    def __init__(self, settings: StrategySettings) -> None:
        super().__init__(settings)
        self.chains = ChainRegistry()
        self.engine: Engine | None = None
        self.pending: PendingWatcher | None = None

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
        settings = self.settings
        monitor = ProtectionMonitor(
            self.bus,
            self.pool,
            lambda tenant: owns_tenant(tenant, settings.engine_replica_index, settings.engine_replicas),
        )
        engine.monitors.append(monitor)
        if self.settings.engine_enabled:
            await engine.start()
            self.on_stop(engine.stop)
            if self.settings.pending_feed_enabled:
                watcher = PendingWatcher(
                    self.bus,
                    self.pool,
                    self.chains,
                    engine.view,
                    poll_interval_s=self.settings.pending_poll_interval_s,
                    subscribe=self.settings.pending_subscribe,
                )
                await watcher.start()
                self.on_stop(watcher.stop)
                self.pending = watcher
            searcher = HintSearcher(self.bus, engine, self.chains)
            await searcher.start()
            self.on_stop(searcher.stop)
            await monitor.start()
            self.on_stop(monitor.stop)
        self.engine = engine
        self.add_servicer(
            ProtectionServicer(ProtectionCommands(self.pool, self.bus, engine.lending_now), self.bus),
            strategy_pb2_grpc.add_LeverageProtectionServiceServicer_to_server,
            strategy_pb2.DESCRIPTOR.services_by_name["LeverageProtectionService"],
        )
        self.add_servicer(
            StrategyServicer(StrategyCommands(self.pool, lambda: self.chains, engine.usd_price), self.bus),
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
        # Publishes what strategy writes in its transactions (its audit and erasure records).
        relay = OutboxRelay(self.pool, SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)


SERVICE = ServiceSpec(
    name="strategy",
    module="mevaas_strategy",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    order=30,
)


def run() -> None:
    main(StrategyRuntime, StrategySettings)
