"""Build, start and drain a service's gRPC server the same way everywhere.

Every server gets: the platform interceptor (tracing, auth, RBAC, rate limits, error mapping,
metrics), gRPC health checking (per service and overall), reflection (grpcurl works), and a
graceful drain: health turns NOT_SERVING first so load balancers stop routing, then in-flight
calls get the grace period to finish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mevaas_core.audit import AuditSink, is_mutation
from mevaas_core.auth import TokenVerifier
from mevaas_core.grpckit.interceptor import PlatformInterceptor
from mevaas_core.grpckit.policy import POLICY_ATTRIBUTE, RpcPolicy
from mevaas_core.grpckit.ratelimit import SharedRateLimiter
from mevaas_core.revocation import RevocationSet

log = logging.getLogger("mevaas.grpc")


class GrpcServer:
    def __init__(
        self,
        service_name: str,
        verifier: TokenVerifier,
        *,
        host: str,
        port: int,
        revocations: RevocationSet | None = None,
        audit: AuditSink | None = None,
        shared_limiter: SharedRateLimiter | None = None,
        tls_cert_file: str = "",
        tls_key_file: str = "",
        health_port: int | None = None,
    ) -> None:
        """``tls_cert_file``/``tls_key_file`` (PEM) serve TLS instead of plaintext; ``health_port``
        also serves grpc.health.v1 alone in plaintext there (kubelet's gRPC probes cannot speak TLS)."""
        if bool(tls_cert_file) != bool(tls_key_file):
            raise ValueError("TLS needs both a certificate and a key file")
        self._service_name = service_name
        self._host = host
        self._port = port
        self._tls = (tls_cert_file, tls_key_file) if tls_cert_file else None
        self._health_port = health_port
        self._health_server: grpc.aio.Server | None = None
        self.bound_health_port = 0
        self._policies: dict[str, RpcPolicy] = {}
        self._service_names: list[str] = []
        self._interceptor = PlatformInterceptor(
            service_name,
            self._policies,
            verifier,
            revocations=revocations,
            audit=audit,
            shared_limiter=shared_limiter,
        )
        self._server = grpc.aio.server(
            interceptors=[self._interceptor],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 8 * 1024 * 1024)],
        )
        self._health = health_aio.HealthServicer()
        self.bound_port = 0

    def add_servicer(
        self,
        servicer: object,
        add_to_server: Callable[[Any, grpc.aio.Server], None],
        descriptor: ServiceDescriptor,
    ) -> None:
        """Register a servicer; every one of its RPCs must declare a policy with `@rpc`."""
        for method in descriptor.methods:
            implementation = getattr(type(servicer), method.name, None)
            policy = getattr(implementation, POLICY_ATTRIBUTE, None)
            if not isinstance(policy, RpcPolicy):
                raise TypeError(f"{descriptor.full_name}.{method.name} has no @rpc policy")
            if policy.mutates is None:
                policy = dataclasses.replace(policy, mutates=is_mutation(method.name))
            self._policies[f"/{descriptor.full_name}/{method.name}"] = policy
        add_to_server(servicer, self._server)
        self._service_names.append(descriptor.full_name)

    @property
    def policies(self) -> dict[str, RpcPolicy]:
        """The role-policy table: every RPC's full name and its policy."""
        return dict(self._policies)

    async def start(self) -> int:
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [
                *self._service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self._server,
        )
        address = f"{self._host}:{self._port}"
        if self._tls is not None:
            cert, key = (Path(path).read_bytes() for path in self._tls)
            credentials = grpc.ssl_server_credentials([(key, cert)])
            self.bound_port = self._server.add_secure_port(address, credentials)
        else:
            self.bound_port = self._server.add_insecure_port(address)
        if self.bound_port == 0:
            raise RuntimeError(f"cannot bind gRPC port {address}")
        if self._health_port is not None:
            self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
            self.bound_health_port = self._health_server.add_insecure_port(
                f"{self._host}:{self._health_port}"
            )
            if self.bound_health_port == 0:
                raise RuntimeError(f"cannot bind gRPC health port {self._host}:{self._health_port}")
            await self._health_server.start()
        await self._server.start()
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC server listening", extra={"address": f"{self._host}:{self.bound_port}"})
        return self.bound_port

    async def set_serving(self, serving: bool) -> None:
        """Report every service SERVING or NOT_SERVING (a dependency went away or came back)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self._service_names]:
            await self._health.set(name, status)

    async def stop(self, grace_seconds: float) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_seconds)
        if self._health_server is not None:
            await self._health_server.stop(0)


async def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `run(stop)` until SIGTERM or SIGINT sets `stop`; `run` then drains and returns."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
