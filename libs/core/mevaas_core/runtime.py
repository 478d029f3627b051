"""The life of a service process, the same for every service: settings -> logging and tracing ->
PostgreSQL pool -> NATS bus -> the service's own wiring (servicers, consumers, background tasks)
-> gRPC server and /metrics -> wait for SIGTERM -> drain in reverse order.

A service subclasses `ServiceRuntime` and implements `setup()`; tests start the same class
in-process (`await runtime.start()` / `await runtime.stop()`), `python -m` runs it until signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import asyncpg
from google.protobuf.descriptor import ServiceDescriptor

from mevaas_core.audit import AuditSink
from mevaas_core.auth import TokenVerifier
from mevaas_core.bus import Bus
from mevaas_core.config import ConfigError, ServiceSettings, load_settings
from mevaas_core.db import create_pool
from mevaas_core.erasure import ErasurePlan, follow_deletions
from mevaas_core.grpckit import GrpcServer, run_until_signalled
from mevaas_core.grpckit.ratelimit import SharedRateLimiter
from mevaas_core.logging import setup_logging
from mevaas_core.metrics import start_metrics_server
from mevaas_core.outages import DependencyWatch, Probe, nats_probe, postgres_probe
from mevaas_core.revocation import RevocationFeed, RevocationSet
from mevaas_core.telemetry import setup_tracing

log = logging.getLogger("mevaas.runtime")

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class ServiceRuntime(Generic[SettingsT]):
    name = "service"
    uses_database = True
    uses_bus = True
    # What a deleted tenant leaves in this service's schema (see mevaas_core.erasure).
    erasure: ErasurePlan | None = None

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings
        self._stopped = False
        self._pool: asyncpg.Pool | None = None
        self._bus: Bus | None = None
        self.grpc: GrpcServer | None = None
        self.metrics_port = 0
        self._metrics_server: Any = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        # Filled from auth.*.revoked before the server starts (see mevaas_core.revocation).
        self.revocations = RevocationSet()
        self._revocation_feed: RevocationFeed | None = None
        self._audit: AuditSink | None = None
        self._shared_limiter: SharedRateLimiter | None = None
        self.dependencies: DependencyWatch | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "this service runs without a database"
        return self._pool

    @property
    def bus(self) -> Bus:
        assert self._bus is not None, "this service runs without NATS"
        return self._bus

    @property
    def audit(self) -> AuditSink:
        """Where records of calls served outside gRPC go (e.g. a JSON-RPC endpoint's)."""
        assert self._audit is not None, "this service runs without NATS"
        return self._audit

    @property
    def grpc_port(self) -> int:
        return self.grpc.bound_port if self.grpc else 0

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(
            self.settings.public_key_pems(),
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            max_lifetime_seconds=self.settings.jwt_max_lifetime_seconds,
        )

    def add_servicer(
        self, servicer: object, add_to_server: Callable[[Any, Any], None], descriptor: ServiceDescriptor
    ) -> None:
        assert self.grpc is not None
        self.grpc.add_servicer(servicer, add_to_server, descriptor)

    def on_stop(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register cleanup; closers run in reverse registration order, before the pool and bus close."""
        self._closers.append(closer)

    async def setup(self) -> None:
        """Wire the service: servicers, consumers, background tasks."""
        raise NotImplementedError

    async def start(self) -> None:
        setup_tracing(self.name)
        if self.uses_database:
            if not self.settings.platform_database_url:
                raise ConfigError("PLATFORM_DATABASE_URL is not set (the service's platform role)")
            self._pool = await create_pool(
                self.settings.database_url, platform_dsn=self.settings.platform_database_url
            )
        if self.uses_bus:
            self._bus = await Bus.connect(
                self.settings.nats_url, client_name=self.name, tls_ca_file=self.settings.nats_tls_ca_file
            )
            await self._bus.ensure_streams(replicas=self.settings.nats_stream_replicas)
            self._revocation_feed = RevocationFeed(
                self._bus, self.revocations, max_lifetime_seconds=self.settings.jwt_max_lifetime_seconds
            )
            await self._revocation_feed.start()
            self._audit = AuditSink(self._bus)
            self._shared_limiter = await SharedRateLimiter.open(self._bus.js)
        self.grpc = GrpcServer(
            self.name,
            self.verifier(),
            host=self.settings.grpc_host,
            port=self.settings.grpc_port,
            revocations=self.revocations,
            audit=self._audit,
            shared_limiter=self._shared_limiter,
            tls_cert_file=self.settings.grpc_tls_cert_file,
            tls_key_file=self.settings.grpc_tls_key_file,
            health_port=self.settings.grpc_health_port,
        )
        await self.setup()
        if self.erasure is not None and self.uses_bus and self.uses_database:
            deletions = await follow_deletions(self.bus, self.pool, self.erasure, self.name)
            self.on_stop(deletions.stop)
        await self.grpc.start()
        probes: dict[str, Probe] = {}
        if self._pool is not None:
            probes["postgresql"] = postgres_probe(self._pool)
        if self._bus is not None:
            nc = self._bus.nc
            probes["nats"] = nats_probe(lambda: nc.is_connected)
        if probes:
            # Health says NOT_SERVING while PostgreSQL or NATS is gone.
            self.dependencies = DependencyWatch(probes, self.grpc.set_serving)
            await self.dependencies.start()
        self.metrics_port, self._metrics_server = start_metrics_server(
            self.settings.metrics_host, self.settings.metrics_port
        )
        log.info(
            "%s started", self.name, extra={"grpc_port": self.grpc_port, "metrics_port": self.metrics_port}
        )

    async def stop(self) -> None:
        # Once: a runtime stopped early (a test module's own service) is stopped again at the end.
        if self._stopped:
            return
        self._stopped = True
        if self.dependencies is not None:
            await self.dependencies.stop()
        if self.grpc is not None:
            await self.grpc.stop(self.settings.shutdown_grace_seconds)
        if self._audit is not None:
            await self._audit.drain()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()
        self._closers.clear()
        if self._revocation_feed is not None:
            await self._revocation_feed.stop()
        if self._bus is not None:
            await self._bus.close()
        if self._pool is not None:
            await self._pool.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        log.info("%s stopped", self.name)


RuntimeT = TypeVar("RuntimeT", bound=ServiceRuntime[Any])


def main(runtime_cls: type[ServiceRuntime[SettingsT]], settings_cls: type[SettingsT]) -> None:
    """Entry point of `python -m mevaas_<service>`: run until SIGTERM/SIGINT, then drain."""
    settings = load_settings(settings_cls)
    setup_logging(runtime_cls.name, settings.log_level)

    async def run(stop: asyncio.Event) -> None:
        runtime = runtime_cls(settings)
        await runtime.start()
        try:
            await stop.wait()
        finally:
            await runtime.stop()

    asyncio.run(run_until_signalled(run))
