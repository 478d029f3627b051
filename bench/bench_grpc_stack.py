"""Throughput and p99 of a tenancy read RPC (GetTenant) through the full server kit vs a bare
grpc.aio servicer returning the same message, in one run.

Three servers answer the same RPC:
  bare       grpc.aio.server, no interceptors, canned response
  kit        our GrpcServer (tracing, auth with JWT verification, RBAC, rate limit, error mapping,
             metrics), same canned response: the cost of the platform layers alone
  kit+db     the real tenancy service on embedded PostgreSQL (RLS transaction per call), for context
Clients run in this process with a fixed concurrency over one channel.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer, TokenVerifier
from mevaas_core.db import provision_service_database
from mevaas_core.grpckit import ALL_TENANT_ROLES, GrpcServer, rpc
from mevaas_core.migrations import apply_migrations
from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres

CALLS = 4000
CONCURRENCY = 32
CANNED = tenancy_pb2.GetTenantResponse(
    tenant=tenancy_pb2.Tenant(
        tenant_id="t-1", slug="acme", display_name="Acme", tier=common_pb2.TIER_PROFESSIONAL
    )
)


class BareServicer(tenancy_pb2_grpc.TenantServiceServicer):
    async def GetTenant(
        self, request: tenancy_pb2.GetTenantRequest, context: Any
    ) -> tenancy_pb2.GetTenantResponse:
        return CANNED


class KitServicer(tenancy_pb2_grpc.TenantServiceServicer):
    pass


def _policy_for_all(cls: type) -> None:
    """Give every TenantService RPC a policy (the kit refuses unguarded methods)."""
    for method in tenancy_pb2.DESCRIPTOR.services_by_name["TenantService"].methods:
        if method.name == "GetTenant":

            async def get_tenant(self: Any, request: Any, context: Any) -> tenancy_pb2.GetTenantResponse:
                return CANNED

            setattr(cls, method.name, rpc(*ALL_TENANT_ROLES)(get_tenant))
        else:
            inherited = getattr(tenancy_pb2_grpc.TenantServiceServicer, method.name)
            setattr(cls, method.name, rpc(*ALL_TENANT_ROLES)(inherited))


async def drive(port: int, token: str, request: tenancy_pb2.GetTenantRequest) -> tuple[float, list[float]]:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = tenancy_pb2_grpc.TenantServiceStub(channel)
        for _ in range(50):
            await stub.GetTenant(request, metadata=metadata)
        remaining = CALLS

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                await stub.GetTenant(request, metadata=metadata)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000


async def main() -> None:
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=3600)
    verifier = TokenVerifier([key.public_pem()], issuer="mevaas-tenancy", audience="mevaas")
    results: dict[str, tuple[float, float]] = {}

    bare = grpc.aio.server()
    tenancy_pb2_grpc.add_TenantServiceServicer_to_server(BareServicer(), bare)  # type: ignore[abstract]
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()
    rps, lat = await drive(bare_port, "", tenancy_pb2.GetTenantRequest())
    results["bare grpc.aio"] = (rps, p99(lat))
    await bare.stop(None)

    _policy_for_all(KitServicer)
    kit = GrpcServer("bench", verifier, host="127.0.0.1", port=0)
    kit.add_servicer(
        KitServicer(),  # type: ignore[abstract]
        tenancy_pb2_grpc.add_TenantServiceServicer_to_server,
        tenancy_pb2.DESCRIPTOR.services_by_name["TenantService"],
    )
    kit_port = await kit.start()
    # A generous plan limit: the bench measures the layers, not the throttle.
    token, _ = issuer.issue(
        Principal(
            subject="bench", tenant_id="t-1", roles=frozenset({Role.VIEWER}), rate_per_second=1e6, burst=10**6
        )
    )
    rps, lat = await drive(kit_port, token, tenancy_pb2.GetTenantRequest())
    results["server kit (auth, RBAC, rate limit, tracing, metrics)"] = (rps, p99(lat))
    await kit.stop(0)

    with tempfile.TemporaryDirectory() as tmp:
        async with (
            EmbeddedNats(Path(tmp) / "nats") as nats,
            EmbeddedPostgres(Path(tmp) / "pg", durable=False) as pg,
        ):
            from mevaas_tenancy.server import SERVICE, TenancyRuntime, TenancySettings

            dsns = await provision_service_database(
                pg.dsn, "tenancy", secrets.token_hex(8), secrets.token_hex(8)
            )
            assert SERVICE.migrations is not None
            await apply_migrations(dsns.owner_dsn, "tenancy", SERVICE.migrations)
            admin_key = f"mvs_benchadmin_{secrets.token_urlsafe(16)}"
            runtime = TenancyRuntime(
                TenancySettings(
                    database_url=dsns.app_dsn,
                    nats_url=nats.url,
                    grpc_port=0,
                    metrics_port=0,
                    jwt_private_key=key.private_pem(),
                    bootstrap_admin_key=admin_key,
                )
            )
            await runtime.start()
            try:
                admin_token, _ = issuer.issue(
                    Principal(subject="bench", tenant_id="_platform", roles=frozenset({Role.PLATFORM_ADMIN}))
                )
                rps, lat = await drive(runtime.grpc_port, admin_token, tenancy_pb2.GetTenantRequest())
                results["tenancy GetTenant (kit + PostgreSQL RLS transaction)"] = (rps, p99(lat))
            finally:
                await runtime.stop()

    print(f"GetTenant, {CALLS} calls, {CONCURRENCY} concurrent, client in-process")
    for name, (rps, p99_ms) in results.items():
        print(f"  {name:58s} {rps:9.0f} calls/s   p99 {p99_ms:7.2f} ms")
    bare_rps = results["bare grpc.aio"][0]
    kit_rps = results["server kit (auth, RBAC, rate limit, tracing, metrics)"][0]
    print(f"  ratio server kit / bare throughput: {kit_rps / bare_rps:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
