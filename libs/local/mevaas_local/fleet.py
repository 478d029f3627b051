"""`mevaas up`: the whole platform on one machine.

Starts embedded NATS (JetStream) and PostgreSQL (or uses NATS_URL / DATABASE_URL when set), the
anvil devnet with its market simulator and relay, provisions and migrates each service's schema,
then runs every registered service (`mevaas.services` entry points) as its own process, exactly
as in Kubernetes. Prints the endpoints and the platform admin's API key, writes .data/mevaas.json
for the CLI, shows live what the fleet is doing, and on Ctrl-C stops everything in reverse order.

Secrets (JWT signing key, admin key, database passwords, key-encryption keys) are generated on
first start and kept in .data/secrets.json, so data and keys survive a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import nats
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.auth import SigningKey
from mevaas_core.bus import HEADER_MSG_ID
from mevaas_core.db import provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_core.service import ServiceSpec, discover_services
from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres, child_dies_with_parent, free_port

console = Console()
HEALTH_TIMEOUT_SECONDS = 60.0
LIVE_SUBJECTS = ("opp.>", "risk.*.decision", "exec.*.result", "chain.*.block")


@dataclass
class FleetSecrets:
    path: Path
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> FleetSecrets:
        values = json.loads(path.read_text()) if path.is_file() else {}
        return cls(path=path, values=values)

    def get(self, name: str) -> str:
        """The named secret, generated on first use and persisted (mode 600)."""
        if name not in self.values:
            if name == "JWT_PRIVATE_KEY":
                self.values[name] = SigningKey.generate().private_pem()
            elif name == "BOOTSTRAP_ADMIN_KEY":
                self.values[name] = f"mvs_platformadmin_{secrets.token_urlsafe(32)}"
            else:
                self.values[name] = base64.b64encode(secrets.token_bytes(32)).decode()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.values, indent=2))
            self.path.chmod(0o600)
        return self.values[name]


@dataclass
class RunningService:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    grpc_port: int
    metrics_port: int
    log_path: Path


async def wait_healthy(service: RunningService) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                tail = service.log_path.read_text()[-2000:]
                raise RuntimeError(f"{service.spec.name} exited during start-up:\n{tail}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{service.spec.name} did not become healthy in {HEALTH_TIMEOUT_SECONDS:.0f} s")


def stop_processes(services: list[RunningService], grace_seconds: float = 10.0) -> None:
    for service in reversed(services):
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for service in reversed(services):
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            service.process.wait(remaining)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


@dataclass
class TenantActivity:
    """What one tenant's hot path did since the view started."""

    opportunities: int = 0
    approved: int = 0
    rejected: int = 0
    # The latest status of each execution (a submitted one later becomes included, reverted...).
    execution_status: dict[str, str] = field(default_factory=dict)
    # Realised profit per profit token (base units), booked once per finished execution.
    pnl: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    decimals: dict[str, int] = field(default_factory=dict)
    booked: set[str] = field(default_factory=set)

    def executions(self) -> Counter[str]:
        return Counter(self.execution_status.values())


def _token_label(token: common_pb2.Token) -> str:
    return f"{token.symbol or token.address[:10]}@{token.chain_id}"


def _amount(value: int, decimals: int) -> str:
    """Human units for display only (amounts stay integers everywhere else)."""
    if not decimals:
        return str(value)
    return f"{Decimal(value).scaleb(-decimals).normalize():f}"


class LiveView:
    """What flows through the hot path, per tenant, decoded from core NATS subscriptions.

    It is an observer: plain subscriptions see every message published on the subjects without
    consuming from the durable consumers the services use. JetStream drops a republished event
    (same Nats-Msg-Id) from the stream, but core subscribers still receive it, so the view
    skips ids it has already counted.
    """

    RECENT_EVENTS = 6
    REMEMBERED_IDS = 50_000

    def __init__(self) -> None:
        self.tenants: dict[str, TenantActivity] = defaultdict(TenantActivity)
        self.blocks: dict[int, int] = {}
        self.recent: deque[str] = deque(maxlen=self.RECENT_EVENTS)
        self.unreadable = 0
        self._seen_ids: set[str] = set()
        self._seen_order: deque[str] = deque()

    async def attach(self, nc: NatsClient) -> None:
        """Subscribe to the hot path's subjects on ``nc`` (core NATS, observer only)."""
        for subject in LIVE_SUBJECTS:
            await nc.subscribe(subject, cb=self.on_message)

    async def on_message(self, msg: Any) -> None:
        self.observe(msg.subject, msg.data, msg.headers or {})

    def observe(self, subject: str, data: bytes, headers: Mapping[str, str]) -> None:
        msg_id = headers.get(HEADER_MSG_ID, "")
        if msg_id and not self._remember(f"{subject}|{msg_id}"):
            return
        domain, _, rest = subject.partition(".")
        try:
            if domain == "opp":
                self._opportunity(events_pb2.Opportunity.FromString(data))
            elif domain == "risk" and rest.endswith(".decision"):
                self._decision(events_pb2.RiskDecision.FromString(data))
            elif domain == "exec" and rest.endswith(".result"):
                self._result(events_pb2.ExecutionResult.FromString(data))
            elif domain == "chain" and rest.endswith(".block"):
                update = events_pb2.MarketUpdate.FromString(data)
                self.blocks[update.chain_id] = max(self.blocks.get(update.chain_id, 0), update.block_number)
        except DecodeError:
            self.unreadable += 1

    def _remember(self, key: str) -> bool:
        if key in self._seen_ids:
            return False
        self._seen_ids.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > self.REMEMBERED_IDS:
            self._seen_ids.discard(self._seen_order.popleft())
        return True

    def _event(self, tenant_id: str, text: str) -> None:
        self.recent.append(f"{time.strftime('%H:%M:%S')} {tenant_id[:8]} {text}")

    def _opportunity(self, opp: events_pb2.Opportunity) -> None:
        self.tenants[opp.tenant_id].opportunities += 1
        profit = _amount(int(opp.expected_profit_net_of_gas or 0), opp.profit_token.decimals)
        self._event(
            opp.tenant_id,
            f"opportunity {opp.opportunity_id[:8]}: {len(opp.hops)} hops on chain {opp.chain_id}, "
            f"net {profit} {_token_label(opp.profit_token)}",
        )

    def _decision(self, decision: events_pb2.RiskDecision) -> None:
        activity = self.tenants[decision.tenant_id]
        approved = decision.outcome == events_pb2.RISK_DECISION_OUTCOME_APPROVED
        if approved:
            activity.approved += 1
        else:
            activity.rejected += 1
        reason = events_pb2.RiskReasonCode.Name(decision.reason_code).removeprefix("RISK_REASON_CODE_")
        self._event(
            decision.tenant_id,
            f"risk {'approved' if approved else 'rejected'} {decision.opportunity_id[:8]} ({reason.lower()})",
        )

    def _result(self, result: events_pb2.ExecutionResult) -> None:
        activity = self.tenants[result.tenant_id]
        status = common_pb2.ExecutionResultStatus.Name(result.status).removeprefix("EXECUTION_RESULT_STATUS_")
        activity.execution_status[result.execution_id] = status.lower()
        text = f"execution {result.execution_id[:8]} {status.lower()}"
        finished = result.status != common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED
        if finished and result.execution_id not in activity.booked:
            activity.booked.add(result.execution_id)
            label = _token_label(result.profit_token)
            profit = int(result.realized_profit or 0)
            activity.pnl[label] += profit
            activity.decimals[label] = result.profit_token.decimals
            text += f", realised {_amount(profit, result.profit_token.decimals)} {label}"
        self._event(result.tenant_id, text)

    def render(self) -> Group:
        heads = ", ".join(f"chain {c}: block {n}" for c, n in sorted(self.blocks.items())) or "no blocks yet"
        table = Table(title=f"MEVaaS fleet: live ({heads}; Ctrl-C to stop)")
        for column in ("tenant", "opportunities", "approved", "rejected", "executions", "realised PnL"):
            table.add_column(column)
        for tenant_id, activity in sorted(self.tenants.items()):
            executions = activity.executions()
            table.add_row(
                tenant_id,
                str(activity.opportunities),
                str(activity.approved),
                str(activity.rejected),
                ", ".join(f"{status} {n}" for status, n in sorted(executions.items())) or "-",
                ", ".join(
                    f"{_amount(value, activity.decimals[label])} {label}"
                    for label, value in sorted(activity.pnl.items())
                )
                or "-",
            )
        recent = "\n".join(self.recent) or "waiting for opportunities..."
        if self.unreadable:
            recent += f"\n({self.unreadable} messages could not be decoded)"
        return Group(table, Text(recent, style="dim"))


async def run_fleet(stop: asyncio.Event, *, with_devnet: bool = True, data_dir: Path = Path(".data")) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fleet_secrets = FleetSecrets.load(data_dir / "secrets.json")
    async with contextlib.AsyncExitStack() as stack:
        nats_url = os.environ.get("NATS_URL")
        if not nats_url:
            with console.status("starting NATS (JetStream)..."):
                embedded_nats = await stack.enter_async_context(EmbeddedNats(data_dir / "nats"))
            nats_url = embedded_nats.url
        admin_dsn = os.environ.get("DATABASE_URL")
        if not admin_dsn:
            with console.status("starting PostgreSQL..."):
                embedded_pg = await stack.enter_async_context(EmbeddedPostgres(data_dir / "postgres"))
            admin_dsn = embedded_pg.dsn
        shared_env = {
            "NATS_URL": nats_url,
            "JWT_PUBLIC_KEYS": SigningKey.from_pem(fleet_secrets.get("JWT_PRIVATE_KEY")).public_pem(),
        }
        if with_devnet:
            from mevaas_local.devnet import Devnet

            with console.status("starting the devnet (anvil + Uniswap V2 deployments + relay)..."):
                devnet = await stack.enter_async_context(
                    Devnet(second_chain=True, data_dir=data_dir / "devnet")
                )
            shared_env["MEVAAS_CHAINS_FILE"] = str((data_dir / "devnet" / "chains.json").resolve())
            console.print(
                "devnet: "
                + ", ".join(f"chain {c.config.chain_id} at {c.config.rpc_url}" for c in devnet.chains)
            )
        services: list[RunningService] = []
        stack.callback(stop_processes, services)
        skipped: list[str] = []
        for spec in discover_services(skipped=skipped):
            with console.status(f"starting {spec.name}..."):
                services.append(await start_service(spec, admin_dsn, shared_env, fleet_secrets, data_dir))
        for reason in skipped:
            console.print(f"[yellow]skipped a service that cannot load[/yellow] {reason}")
        endpoints = {s.spec.name: f"127.0.0.1:{s.grpc_port}" for s in services}
        admin_key = fleet_secrets.get("BOOTSTRAP_ADMIN_KEY")
        (data_dir / "mevaas.json").write_text(
            json.dumps({"endpoints": endpoints, "api_key": admin_key}, indent=2)
        )
        summary = Table(title="MEVaaS is up")
        for column in ("service", "gRPC", "metrics", "log"):
            summary.add_column(column)
        for s in services:
            summary.add_row(
                s.spec.name,
                endpoints[s.spec.name],
                f"http://127.0.0.1:{s.metrics_port}/metrics",
                str(s.log_path),
            )
        console.print(summary)
        console.print(f"NATS: {nats_url}\nplatform admin API key: [bold]{admin_key}[/bold]")
        console.print(
            "CLI config written to .data/mevaas.json; try: [bold].venv/bin/mevaas tenant create acme[/bold]"
        )
        await watch(nats_url, stop)


async def start_service(
    spec: ServiceSpec, admin_dsn: str, shared_env: dict[str, str], fleet_secrets: FleetSecrets, data_dir: Path
) -> RunningService:
    env = dict(os.environ)
    env.update(shared_env)
    if spec.schema is not None:
        dsns = await provision_service_database(
            admin_dsn,
            spec.schema,
            fleet_secrets.get(f"DB_PASSWORD_{spec.schema}_app"),
            fleet_secrets.get(f"DB_PASSWORD_{spec.schema}_owner"),
        )
        if spec.migrations is not None:
            await apply_migrations(dsns.owner_dsn, spec.schema, spec.migrations)
        env["DATABASE_URL"] = dsns.app_dsn
    for name in spec.needs:
        env[name] = fleet_secrets.get(name)
    grpc_port, metrics_port = free_port(), free_port()
    env.update({"GRPC_PORT": str(grpc_port), "METRICS_PORT": str(metrics_port), "SERVICE_NAME": spec.name})
    log_path = (data_dir / "logs" / f"{spec.name}.log").resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_dies_with_parent(),  # noqa: PLW1509 - only sets a death signal; no locks taken
        )
    running = RunningService(spec, process, grpc_port, metrics_port, log_path)
    await wait_healthy(running)
    return running


async def watch(nats_url: str, stop: asyncio.Event) -> None:
    """Show the live view, refreshed twice a second, until ``stop`` is set."""
    view = LiveView()
    nc = await nats.connect(nats_url, name="mevaas-up-live-view")
    try:
        await view.attach(nc)
        with Live(view.render(), console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                live.update(view.render())
    finally:
        await nc.close()
