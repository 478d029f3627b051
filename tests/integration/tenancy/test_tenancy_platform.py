"""Platform behaviour of the tenancy server: row-level security with raw SQL as the service's
own role, health checking, reflection and Prometheus metrics."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.runtime import ServiceRuntime
from mevaas_sdk import MevaasClient
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration


async def test_rls_hides_rows_without_a_tenant(
    admin_client: MevaasClient, tenancy_service: ServiceRuntime[Any]
) -> None:
    one = await create_tenant(admin_client)
    await create_tenant(admin_client)
    conn = await asyncpg.connect(tenancy_service.settings.database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "tenancy_app"
        # No tenant set: the service's own role sees nothing, however the query is written.
        assert await conn.fetchval("SELECT count(*) FROM tenancy.tenants") == 0
        assert await conn.fetchval("SELECT count(*) FROM tenancy.api_keys") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", one.tenant.tenant_id)
            rows = await conn.fetch("SELECT tenant_id FROM tenancy.tenants")
            assert [r["tenant_id"] for r in rows] == [one.tenant.tenant_id]
            # Writing another tenant's row is refused by the same policy.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO tenancy.users (user_id, tenant_id, email, roles) VALUES ('u', '_platform', 'x@y.z', '{}')"
                )
        # The audit trail cannot be rewritten, not even within the tenant's scope.
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", one.tenant.tenant_id)
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("DELETE FROM tenancy.audit_records")
    finally:
        await conn.close()


async def test_health_reflection_and_metrics(
    admin_client: MevaasClient, tenancy_service: ServiceRuntime[Any]
) -> None:
    await admin_client.tenants.ListTenants(tenancy_pb2.ListTenantsRequest())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "mevaas.tenancy.v1.TenantService", "mevaas.tenancy.v1.AuthService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
        assert {
            "mevaas.tenancy.v1.TenantService",
            "mevaas.tenancy.v1.AuthService",
            "grpc.health.v1.Health",
        } <= names
    finally:
        await channel.close(None)
    url = f"http://127.0.0.1:{tenancy_service.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(scrape)
    assert 'mevaas_grpc_server_handled_total{code="OK",method="ListTenants",service="tenancy"}' in text
    assert (
        'mevaas_grpc_server_handling_seconds_bucket{le="0.005",method="ListTenants",service="tenancy"}'
        in text
    )
    assert 'mevaas_grpc_server_handled_total{code="OK",method="ExchangeApiKey",service="tenancy"}' in text
