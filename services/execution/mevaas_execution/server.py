"""Execution service wiring: the KEK ring, the chains, the engine (decision and kill-switch
consumers, inclusion trackers), the servicer and the outbox relay."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas_chain.registry import load_registry
from mevaas_core.config import ServiceSettings
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_execution.api import ExecutionServicer, StrategyDirectory
from mevaas_execution.chains import ChainGateway
from mevaas_execution.engine import Engine
from mevaas_execution.events import SCHEMA
from mevaas_execution.wallets import WalletKeys, keyring_from_settings


class ExecutionSettings(ServiceSettings):
    service_name: str = "execution"
    # Key-encryption key(s) for wallet keys: one base64 32-byte key, or `id1:b64,id2:b64`.
    execution_kek: str = Field(repr=False)
    # Id of the KEK that wraps new wallets (and the name of a single EXECUTION_KEK).
    execution_kek_id: str = "kek-1"
    # Chain registry file; empty = MEVAAS_CHAINS / MEVAAS_CHAINS_FILE / the local devnet's.
    chains_file: str = ""
    # NATS request subject the strategy service answers GetStrategy on.
    strategy_lookup_subject: str = "strategy.rpc.get_strategy"
    # How often each chain's head is polled for inclusion tracking.
    head_poll_seconds: float = Field(default=0.05, gt=0)
    # Decisions handled at once (the hot path is mostly waiting on RPC and Postgres).
    decision_concurrency: int = Field(default=16, ge=1)
    # How long a pulled decision may stay unacknowledged before JetStream redelivers it (a crash).
    decision_ack_wait_seconds: float = Field(default=30.0, gt=0)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)


class ExecutionRuntime(ServiceRuntime[ExecutionSettings]):
    name = "execution"

    async def setup(self) -> None:
        settings = self.settings
        keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
        registry = load_registry(settings.chains_file or None)
        self.gateway = ChainGateway(registry, timeout_s=settings.rpc_timeout_seconds)
        self.on_stop(self.gateway.close)
        self.keys = WalletKeys(self.pool, keyring)
        self.engine = Engine(self.pool, self.gateway, self.keys, poll_seconds=settings.head_poll_seconds)
        await self.engine.start()
        self.on_stop(self.engine.stop)
        relay = OutboxRelay(self.pool, SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)
        self.add_servicer(
            ExecutionServicer(
                self.pool,
                self.engine,
                self.keys,
                StrategyDirectory(self.bus, settings.strategy_lookup_subject),
            ),
            execution_pb2_grpc.add_ExecutionServiceServicer_to_server,
            execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"],
        )
        kill_switches = await self.bus.subscribe(
            "RISK",
            "execution-killswitch",
            "risk.*.killswitch",
            events_pb2.KillSwitchChanged,
            self.engine.on_kill_switch,
            ack_sync=True,
            max_deliver=-1,
        )
        decisions = await self.bus.subscribe(
            "RISK",
            "execution-decisions",
            "risk.*.decision",
            events_pb2.RiskDecision,
            self.engine.on_decision,
            concurrency=settings.decision_concurrency,
            batch=64,
            ack_wait=settings.decision_ack_wait_seconds,
            ack_sync=True,
        )
        # Closers run last-registered first: consumers drain before the engine and chains close.
        self.on_stop(kill_switches.stop)
        self.on_stop(decisions.stop)


SERVICE = ServiceSpec(
    name="execution",
    module="mevaas_execution",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    order=40,
    needs=("EXECUTION_KEK",),
)


def run() -> None:
    main(ExecutionRuntime, ExecutionSettings)
