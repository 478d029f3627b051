"""Execution service wiring: the KEK ring, the chains, the execution core (the pipeline behind
the decision consumer, the tracker, the commands behind the kill-switch consumer and the
servicer), the rebalance consumer and the outbox relay."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas_chain.pricing import DEFAULT_SOURCES, DEFAULT_STABLECOINS, parse_price_table
from mevaas_chain.registry import load_registry
from mevaas_core import sanctions, subjects
from mevaas_core.config import ServiceSettings
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_core.tenant_phase import TenantPhases
from mevaas_execution import store
from mevaas_execution.api import ExecutionServicer
from mevaas_execution.chains import ChainGateway
from mevaas_execution.core import ExecutionCore
from mevaas_execution.events import SCHEMA
from mevaas_execution.keys import is_tenant_ring, rotation
from mevaas_execution.keys.delivery import TenantKeyDelivery
from mevaas_execution.protection.access import ApiKeyAccess
from mevaas_execution.protection.auction import OrderFlowAuction
from mevaas_execution.protection.ordering import OrderingLog, signing_key
from mevaas_execution.protection.refunds import RefundHook
from mevaas_execution.protection.rpc import ProtectRpc
from mevaas_execution.rebalancing.market import PricingConfig
from mevaas_execution.strategies import StrategyDirectory
from mevaas_execution.treasury.transfers import RiskAllowlist, Transfers
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
    strategy_lookup_subject: str = subjects.STRATEGY_GET
    # NATS request subject tenancy answers a tenant's onboarding phase on (no answer: UNAVAILABLE).
    tenancy_onboarding_subject: str = subjects.TENANCY_ONBOARDING_STATE
    # How often each chain's head is polled for inclusion tracking.
    head_poll_seconds: float = Field(default=0.05, gt=0)
    # Decisions handled at once (the hot path is mostly waiting on RPC and Postgres).
    decision_concurrency: int = Field(default=16, ge=1)
    # How long a pulled decision may stay unacknowledged before JetStream redelivers it (a crash).
    decision_ack_wait_seconds: float = Field(default=30.0, gt=0)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    # A wallet's executor found without its code (a reset chain) or with foreign code is
    # redeployed and the redeploy recorded; when false its session fails instead.
    redeploy_missing_executors: bool = True
    # A cross-chain leg that landed alone is unwound by a reverse swap losing at most this share
    # (basis points) of what the leg spent, sent for at most this many blocks; beyond that its
    # proceeds stay an open position, named in the execution's error.
    unwind_max_loss_bps: int = Field(default=300, ge=0, le=10_000)
    unwind_window_blocks: int = Field(default=10, ge=1)
    # The Protect RPC (JSON-RPC over HTTP for wallets and bots): served when a port is set (0 = any
    # free port); API keys are checked at tenancy's AuthService (TENANCY_ADDRESS, else the
    # "tenancy" entry of UPSTREAMS, the local fleet's map of service addresses).
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, ge=0, le=65535)
    tenancy_address: str = ""
    upstreams: str = ""
    # Blocks a transaction sent to the Protect RPC is retried for (Flashbots Protect's 25).
    protect_max_blocks: int = Field(default=25, ge=1, le=10_000)
    # Sanctions list protected transactions' sender and recipient are screened against at ingress
    # (mevaas_core.sanctions: an OFAC SDN.CSV or one address per line; "" = the devnet sample,
    # "none" = no screening), plus extra comma-separated addresses.
    sanctions_list_file: str = ""
    sanctioned_addresses: str = ""
    # The one price source rebalances are planned with (docs/pricing.md; the same names and
    # formats as analytics'): sources in order, the "fixed" table "chain_id:token=usd,...", the
    # USD stablecoins pool prices are anchored to, the longest pool path.
    price_sources: str = ",".join(DEFAULT_SOURCES)
    price_table: str = ""
    stablecoins: str = ",".join(DEFAULT_STABLECOINS)
    price_max_hops: int = Field(default=3, ge=1, le=6)
    # How often active rebalances are looked at, and for how many blocks a trade may wait for
    # risk's decision and its inclusion.
    rebalance_poll_seconds: float = Field(default=0.25, gt=0)
    rebalance_deadline_blocks: int = Field(default=50, ge=2, le=10_000)
    # Order-flow auction of protected transactions: searchers see this much of each one
    # (none, to_selector, pool, amounts; "off": no auction) and its sender is refunded this share
    # of the winning backrun's profit (basis points).
    ofa_hint_level: str = "amounts"
    ofa_refund_bps: int = Field(default=9_000, ge=0, le=10_000)
    # The fair-ordering log's Ed25519 key: its 32-byte seed in hex (a secret: SECRETS_DIR file
    # fair_ordering_signing_key in Kubernetes); empty = an ephemeral key per process (devnet only).
    fair_ordering_signing_key: str = Field(default="", repr=False)

    def tenancy(self) -> str:
        if self.tenancy_address or not self.upstreams:
            return self.tenancy_address
        return str(json.loads(self.upstreams).get("tenancy", ""))


class ExecutionRuntime(ServiceRuntime[ExecutionSettings]):
    name = "execution"
    erasure = store.ERASURE

    async def setup(self) -> None:
        settings = self.settings
        keyring = keyring_from_settings(settings.execution_kek, settings.execution_kek_id)
        registry = load_registry(settings.chains_file or None)
        self.gateway = ChainGateway(registry, timeout_s=settings.rpc_timeout_seconds)
        self.on_stop(self.gateway.close)
        self.keys = WalletKeys(self.pool, keyring)
        # Live sessions and rebalances wait for the onboarding phase that allows them (tenancy's).
        phases = TenantPhases(self.bus, settings.tenancy_onboarding_subject)
        await phases.start()
        self.on_stop(phases.stop)
        await rotation.adopt_at_start(self.pool, keyring)
        self.core = ExecutionCore(
            self.pool,
            self.gateway,
            self.keys,
            phases=phases,
            strategies=StrategyDirectory(self.bus, settings.strategy_lookup_subject),
            poll_seconds=settings.head_poll_seconds,
            redeploy_missing_executors=settings.redeploy_missing_executors,
            unwind_max_loss_bps=settings.unwind_max_loss_bps,
            unwind_window_blocks=settings.unwind_window_blocks,
            sanctions=sanctions.load(settings.sanctions_list_file, extra=settings.sanctioned_addresses),
            pricing=PricingConfig(
                [n.strip() for n in settings.price_sources.split(",") if n.strip()],
                parse_price_table(settings.price_table),
                tuple(settings.stablecoins.split(",")),
                settings.price_max_hops,
            ),
            rebalance_poll_seconds=settings.rebalance_poll_seconds,
            rebalance_deadline_blocks=settings.rebalance_deadline_blocks,
            ordering=OrderingLog(self.pool, signing_key(settings.fair_ordering_signing_key)),
        )
        if settings.ofa_hint_level != "off":
            self.core.protected.auction = OrderFlowAuction(
                self.bus, self.gateway, refund_bps=settings.ofa_refund_bps, hint_level=settings.ofa_hint_level
            )
            self.core.hooks.add(RefundHook(self.pool, self.gateway))
        await self.core.start()
        self.on_stop(self.core.stop)
        self.protect_rpc_port = 0
        if settings.http_port is not None:
            protect = ProtectRpc(
                self.core.protected,
                self.gateway,
                ApiKeyAccess(
                    settings.tenancy(),
                    self.verifier(),
                    self.revocations,
                    tls_ca_file=settings.grpc_tls_ca_file,
                ),
                default_blocks=settings.protect_max_blocks,
                audit_sink=self.audit,
                limiter=self._shared_limiter,
            )
            self.protect_rpc_port = await protect.start(settings.http_host, settings.http_port)
            self.on_stop(protect.stop)
        relay = OutboxRelay(self.pool, SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)
        holdings = self.core.holdings
        holdings_service = await self.bus.serve(
            subjects.EXECUTION_TREASURY_HOLDINGS,
            "execution-treasury-holdings",
            execution_pb2.TreasuryHoldingsRequest,
            holdings.answer,
        )
        self.on_stop(holdings_service.stop)
        if not is_tenant_ring(keyring):
            # Only the platform's execution (it holds the KEK) hands out tenant data keys.
            key_service = await self.bus.serve(
                subjects.KEYS_TENANT_DATA_KEY,
                "execution-tenant-keys",
                execution_pb2.TenantDataKeyRequest,
                TenantKeyDelivery(self.pool, keyring).answer,
            )
            self.on_stop(key_service.stop)
        self.add_servicer(
            ExecutionServicer(
                self.core.commands,
                self.gateway,
                Transfers(self.pool, self.gateway, self.keys, self.core.treasury, RiskAllowlist(self.bus)),
                holdings,
                self.core.rebalances,
            ),
            execution_pb2_grpc.add_ExecutionServiceServicer_to_server,
            execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"],
        )
        kill_switches = await self.bus.subscribe(
            "RISK",
            "execution-killswitch",
            "risk.*.killswitch",
            events_pb2.KillSwitchChanged,
            self.core.commands.on_kill_switch,
            ack_sync=True,
            max_deliver=-1,
        )
        decisions = await self.bus.subscribe(
            "RISK",
            "execution-decisions",
            "risk.*.decision",
            events_pb2.RiskDecision,
            self.core.pipeline.on_decision,
            concurrency=settings.decision_concurrency,
            batch=64,
            ack_wait=settings.decision_ack_wait_seconds,
            ack_sync=True,
        )
        # Rebalance commands (PortfolioService.Rebalance, through analytics' outbox), one rebalance
        # recorded per id: a redelivery records nothing and trades nothing.
        rebalances = await self.bus.subscribe(
            "EXEC",
            "execution-rebalances",
            "exec.*.rebalance",
            events_pb2.RebalanceCommand,
            self.core.rebalances.on_command,
            ack_sync=True,
            max_deliver=-1,
        )
        # Closers run last-registered first: consumers drain before the engine and chains close.
        self.on_stop(kill_switches.stop)
        self.on_stop(decisions.stop)
        self.on_stop(rebalances.stop)


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
