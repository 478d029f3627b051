"""`mevaas up`: the whole platform on one machine.

Starts embedded NATS (JetStream) and PostgreSQL (or uses NATS_URL / DATABASE_URL when set), the
anvil devnet with its market simulator and relay, provisions and migrates each service's schema,
then runs every registered service (`mevaas.services` entry points) as its own process, exactly
as in Kubernetes. Prints the endpoints and the platform admin's API key, writes .data/mevaas.json
for the CLI, shows live what the fleet is doing, and on Ctrl-C stops everything in reverse order.

Secrets (JWT signing key, admin key, database and NATS passwords, key-encryption keys) are generated
on first start and kept in .data/secrets.json, so data and keys survive a restart. Each service gets
its own as files (.data/secrets/<service>/, its SECRETS_DIR), never in its environment. The
embedded NATS runs the platform's bus permissions (mevaas_core.bus.identities): every service
connects as its own identity, the live view as the read-only `console`.
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mevaas_core.auth import SigningKey
from mevaas_core.bus.identities import (
    SERVICE_NEEDS,
    TOOL_NEEDS,
    BusIdentity,
    NatsUser,
    service_identity,
    tool_identity,
)
from mevaas_core.db import provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_core.service import ServiceSpec, discover_services
from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres, child_dies_with_parent, free_port
from mevaas_local.live_view import watch
from mevaas_local.supervisor import Supervisor

console = Console()
HEALTH_TIMEOUT_SECONDS = 60.0


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
            elif name.startswith("NATS_PASSWORD_"):
                self.values[name] = secrets.token_hex(24)  # goes into a URL as is
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
    http_port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    # A process that did this service's imports and waits to replace it (mevaas_local.spare).
    spare: subprocess.Popen[bytes] | None = None


def _popen(
    command: list[str], env: Mapping[str, str], log_path: Path, **extra: object
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_dies_with_parent(),  # noqa: PLW1509 - only sets a death signal; no locks taken
            **extra,
        )


def spawn_spare(service: RunningService) -> None:
    """Start the service's warm spare (in the background: it only imports, then waits)."""
    service.spare = _popen(
        [sys.executable, "-m", "mevaas_local.spare", service.spec.module],
        service.env,
        service.log_path,
        stdin=subprocess.PIPE,
    )


async def promote_spare(old: RunningService) -> RunningService | None:
    """The spare, told to start, as the service (same ports, settings and log); None if it died."""
    spare, old.spare = old.spare, None
    if spare is None or spare.poll() is not None or spare.stdin is None:
        return None
    try:
        spare.stdin.write(b"start\n")
        spare.stdin.close()
    except OSError:
        return None
    running = RunningService(
        old.spec, spare, old.grpc_port, old.metrics_port, old.log_path, old.http_port, env=old.env
    )
    await wait_healthy(running)
    return running


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
    for service in services:
        if service.spare is not None and service.spare.poll() is None:
            service.spare.kill()
            service.spare.wait()
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


ADMIN_NATS_USER = "admin"


def fleet_nats_users(fleet_secrets: FleetSecrets) -> list[NatsUser]:
    """The embedded NATS's users: an unrestricted admin (readiness probe only), every service and
    tool identity of the platform's model, with passwords kept across restarts."""
    identities = [
        BusIdentity(ADMIN_NATS_USER, None),
        *(service_identity(name) for name in SERVICE_NEEDS),
        *(tool_identity(name) for name in TOOL_NEEDS),
    ]
    return [NatsUser(i, fleet_secrets.get(f"NATS_PASSWORD_{i.user}")) for i in identities]


@dataclass(frozen=True)
class BusAccess:
    """The NATS URL each identity connects with (the external NATS_URL for all when one is given)."""

    url: str
    server: EmbeddedNats | None = None

    def url_for(self, user: str) -> str:
        return self.server.url_for(user) if self.server is not None else self.url


def write_secret_files(directory: Path, values: Mapping[str, str]) -> Path:
    """``values`` as one file per setting (lower-cased name) in ``directory`` (mode 700/600): the
    service's SECRETS_DIR (mevaas_core.config)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for name, value in values.items():
        path = directory / name.lower()
        path.write_text(value)
        path.chmod(0o600)
    return directory


async def run_fleet(
    stop: asyncio.Event,
    *,
    with_devnet: bool = True,
    data_dir: Path = Path(".data"),
    sandwich_bot: bool = False,
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fleet_secrets = FleetSecrets.load(data_dir / "secrets.json")
    async with contextlib.AsyncExitStack() as stack:
        servers: list[EmbeddedNats | EmbeddedPostgres] = []  # supervised with the services
        nats_url = os.environ.get("NATS_URL")
        if nats_url:
            bus = BusAccess(nats_url)
        else:
            with console.status("starting NATS (JetStream)..."):
                # A fixed port: the supervisor restarts it where the services look for it.
                embedded_nats = await stack.enter_async_context(
                    EmbeddedNats(data_dir / "nats", port=free_port(), users=fleet_nats_users(fleet_secrets))
                )
            nats_url = embedded_nats.url
            servers.append(embedded_nats)
            bus = BusAccess(nats_url, embedded_nats)
        admin_dsn = os.environ.get("DATABASE_URL")
        if not admin_dsn:
            with console.status("starting PostgreSQL..."):
                embedded_pg = await stack.enter_async_context(
                    EmbeddedPostgres(data_dir / "postgres", port=free_port())
                )
            admin_dsn = embedded_pg.dsn
            servers.append(embedded_pg)
        shared_env = {
            "JWT_PUBLIC_KEYS": SigningKey.from_pem(fleet_secrets.get("JWT_PRIVATE_KEY")).public_pem(),
            # Analytics records the market from the first block, so backtests work out of the box.
            "MARKET_HISTORY_DIR": str((data_dir / "market-history").resolve()),
            # The portal is served over plain http on loopback here: its cookies go without the
            # Secure flag, which a browser that keeps Secure cookies only over https (Safari on
            # http://127.0.0.1) would drop. The gateway refuses this off loopback (docs/portal.md).
            "SECURE_COOKIES": "false",
        }
        if with_devnet:
            from mevaas_local.devnet import Devnet

            with console.status("starting the devnet (anvil + Uniswap V2 + Aave V3 deployments + relay)..."):
                devnet = await stack.enter_async_context(
                    Devnet(second_chain=True, data_dir=data_dir / "devnet", keep_state=True, uniswap_v3=True)
                )
            shared_env["MEVAAS_CHAINS_FILE"] = str((data_dir / "devnet" / "chains.json").resolve())
            console.print(
                "devnet: "
                + ", ".join(
                    f"chain {c.config.chain_id} at {c.config.rpc_url}"
                    f" (Aave V3 pool {c.config.contracts.get('aave_pool', 'none')})"
                    for c in devnet.chains
                )
            )
            if sandwich_bot:
                from mevaas_local.devnet.sandwich_bot import start_bot

                bot = await start_bot(devnet.main)
                stack.push_async_callback(bot.stop)
                console.print(
                    f"devnet: a sandwich bot ({bot.address}) watches chain {devnet.main.spec.chain_id}'s public pool"
                )
            for line in devnet.restore_summary():
                console.print(
                    f"[bold red]{escape(line)}[/bold red]" if "RESET" in line else f"devnet {escape(line)}"
                )
        services: list[RunningService] = []
        stack.callback(stop_processes, services)
        skipped: list[str] = []
        for spec in discover_services(skipped=skipped):
            # The gateway (started last) calls the services already running.
            shared_env["UPSTREAMS"] = json.dumps({s.spec.name: f"127.0.0.1:{s.grpc_port}" for s in services})
            with console.status(f"starting {spec.name}..."):
                services.append(
                    await start_service(spec, admin_dsn, shared_env, fleet_secrets, data_dir, bus)
                )
        supervisor = supervise(
            services,
            servers,
            lambda spec, ports: start_service(
                spec, admin_dsn, shared_env, fleet_secrets, data_dir, bus, ports=ports
            ),
            data_dir / "pids.json",
        )
        await supervisor.start()
        stack.push_async_callback(supervisor.stop)  # before the processes are stopped
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
        console.print(
            f"NATS: {nats_url} (authenticated; one identity per service)\n"
            f"platform admin API key: [bold]{admin_key}[/bold]"
        )
        for s in services:
            if s.spec.name == "gateway":
                console.print(
                    f"HTTP/JSON API: http://127.0.0.1:{s.http_port}/openapi.json (X-API-Key header)"
                )
                console.print(
                    f"Portal: [bold]http://127.0.0.1:{s.http_port}/t/<tenant slug>/[/bold] - sign in with an "
                    "API key of the tenant, or as a user (email, password, authenticator code) after "
                    "opening the enrolment link an admin makes on the portal's Admin page"
                )
            if s.spec.name == "execution":
                chain_ids = [c.config.chain_id for c in devnet.chains] if with_devnet else ["<chain id>"]
                console.print(
                    "Protect RPC (point a wallet at it): "
                    + ", ".join(f"http://127.0.0.1:{s.http_port}/rpc/{c}/<API key>" for c in chain_ids)
                )
        console.print(
            "CLI config written to .data/mevaas.json; try: [bold].venv/bin/mevaas tenant create acme[/bold]"
        )
        await watch(bus.url_for("console"), stop, supervisor)


async def start_service(
    spec: ServiceSpec,
    admin_dsn: str,
    shared_env: dict[str, str],
    fleet_secrets: FleetSecrets,
    data_dir: Path,
    bus: BusAccess,
    *,
    ports: tuple[int, int, int] | None = None,
) -> RunningService:
    env = dict(os.environ)
    env.update(shared_env)
    # Credentials go to files (the service's SECRETS_DIR), none in its environment.
    files: dict[str, str] = {"NATS_URL": bus.url_for(spec.name)}
    if spec.schema is not None:
        dsns = await provision_service_database(
            admin_dsn,
            spec.schema,
            fleet_secrets.get(f"DB_PASSWORD_{spec.schema}_app"),
            fleet_secrets.get(f"DB_PASSWORD_{spec.schema}_owner"),
            fleet_secrets.get(f"DB_PASSWORD_{spec.schema}_platform"),
        )
        if spec.migrations is not None:
            await apply_migrations(dsns.owner_dsn, spec.schema, spec.migrations)
        files["DATABASE_URL"] = dsns.app_dsn
        files["PLATFORM_DATABASE_URL"] = dsns.platform_dsn
    for name in spec.needs:
        files[name] = fleet_secrets.get(name)
    for name in files:
        env.pop(name, None)  # a variable would win over the file
    env["SECRETS_DIR"] = str(write_secret_files((data_dir / "secrets" / spec.name).resolve(), files))
    # A restarted service keeps its ports (the gateway and the CLI know them).
    grpc_port, metrics_port, http_port = ports or (free_port(), free_port(), free_port())
    env.update(
        {
            "GRPC_PORT": str(grpc_port),
            "METRICS_PORT": str(metrics_port),
            "HTTP_PORT": str(http_port),  # read only by services with an HTTP API (the gateway)
            "SERVICE_NAME": spec.name,
        }
    )
    log_path = (data_dir / "logs" / f"{spec.name}.log").resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = _popen([sys.executable, "-m", spec.module], env, log_path)
    running = RunningService(spec, process, grpc_port, metrics_port, log_path, http_port, env=env)
    await wait_healthy(running)
    return running


def _running(server: EmbeddedNats | EmbeddedPostgres) -> Callable[[], bool]:
    return lambda: server.running


def _alive(services: list[RunningService], index: int) -> Callable[[], bool]:
    return lambda: services[index].process.poll() is None


def _restart(
    services: list[RunningService],
    index: int,
    start: Callable[[ServiceSpec, tuple[int, int, int]], Awaitable[RunningService]],
) -> Callable[[], Awaitable[None]]:
    async def restart() -> None:
        old = services[index]
        # The warm spare if it is there (imports done: seconds faster), else a cold start.
        promoted = await promote_spare(old)
        new = promoted or await start(old.spec, (old.grpc_port, old.metrics_port, old.http_port))
        spawn_spare(new)
        services[index] = new

    return restart


def _server_name(server: EmbeddedNats | EmbeddedPostgres) -> str:
    return "nats" if isinstance(server, EmbeddedNats) else "postgresql"


def write_pids(
    path: Path, services: list[RunningService], servers: list[EmbeddedNats | EmbeddedPostgres]
) -> None:
    """The fleet's process ids by name (``pids.json`` in the data dir), rewritten after every
    restart: what an operator (or the chaos test) reads to find a process."""
    pids = {_server_name(server): server.pid for server in servers}
    pids |= {s.spec.name: s.process.pid for s in services}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(pids, indent=2))
    temporary.replace(path)


def supervise(
    services: list[RunningService],
    servers: list[EmbeddedNats | EmbeddedPostgres],
    start: Callable[[ServiceSpec, tuple[int, int, int]], Awaitable[RunningService]],
    pid_file: Path | None = None,
) -> Supervisor:
    """Restart the embedded servers (first) and every service when they die."""

    def restarted() -> None:
        if pid_file is not None:
            write_pids(pid_file, services, servers)

    restarted()
    for service in services:
        spawn_spare(service)
    supervisor = Supervisor(on_restart=restarted)
    for server in servers:
        supervisor.add(_server_name(server), _running(server), server.start)
    for index in range(len(services)):
        supervisor.add(services[index].spec.name, _alive(services, index), _restart(services, index, start))
    return supervisor
