"""Build, start and drain a service's gRPC server the same way everywhere.

Every server gets: the platform interceptor (tracing, auth, RBAC, rate limits, error mapping,
metrics), gRPC health checking (per service and overall), reflection (grpcurl works), and a
graceful drain: health turns NOT_SERVING first so load balancers stop routing, then in-flight
calls get the grace period to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mevaas_core.auth import TokenVerifier
from mevaas_core.grpckit.interceptor import PlatformInterceptor
from mevaas_core.grpckit.policy import POLICY_ATTRIBUTE, RpcPolicy

log = logging.getLogger("mevaas.grpc")


class GrpcServer:
    def __init__(self, service_name: str, verifier: TokenVerifier, *, host: str, port: int) -> None:
        self._service_name = service_name
        self._host = host
        self._port = port
        self._policies: dict[str, RpcPolicy] = {}
        self._service_names: list[str] = []
        self._interceptor = PlatformInterceptor(service_name, self._policies, verifier)
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
            self._policies[f"/{descriptor.full_name}/{method.name}"] = policy
        add_to_server(servicer, self._server)
        self._service_names.append(descriptor.full_name)

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
        self.bound_port = self._server.add_insecure_port(f"{self._host}:{self._port}")
        if self.bound_port == 0:
            raise RuntimeError(f"cannot bind gRPC port {self._host}:{self._port}")
        await self._server.start()
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC server listening", extra={"address": f"{self._host}:{self.bound_port}"})
        return self.bound_port

    async def stop(self, grace_seconds: float) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_seconds)


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
