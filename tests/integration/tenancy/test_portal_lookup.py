"""AuthService.GetPortal: the public face of a tenant's portal by slug or custom domain, and
nothing for an unknown or suspended tenant or a malformed request."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.runtime import ServiceRuntime
from mevaas_sdk import MevaasClient
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration


async def test_get_portal_by_slug_and_domain(
    tenancy_service: ServiceRuntime[Any], admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    domain = f"p-{uuid.uuid4().hex[:8]}.example.com"
    await admin_client.tenants.SetBranding(
        tenancy_pb2.SetBrandingRequest(
            tenant_id=tenant.tenant.tenant_id,
            branding=tenancy_pb2.Branding(primary_color="#123456", custom_domain=domain),
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}") as channel:
        auth = tenancy_pb2_grpc.AuthServiceStub(channel)  # no authorization header at all
        by_slug = await auth.GetPortal(tenancy_pb2.GetPortalRequest(slug=tenant.tenant.slug))
        by_domain = await auth.GetPortal(tenancy_pb2.GetPortalRequest(custom_domain=domain.upper()))
        assert by_slug == by_domain
        assert by_slug.tenant_id == tenant.tenant.tenant_id
        assert by_slug.display_name == tenant.tenant.display_name  # branding's name empty: the tenant's
        assert by_slug.primary_color == "#123456"
        assert by_slug.onboarding_phase == common_pb2.ONBOARDING_PHASE_DISCOVERY

        with pytest.raises(grpc.aio.AioRpcError) as both:
            await auth.GetPortal(tenancy_pb2.GetPortalRequest(slug="a", custom_domain=domain))
        assert both.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(both.value) == ["slug"]
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await auth.GetPortal(tenancy_pb2.GetPortalRequest(slug=f"nope-{uuid.uuid4().hex[:6]}"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        await admin_client.tenants.SuspendTenant(
            tenancy_pb2.SuspendTenantRequest(tenant_id=tenant.tenant.tenant_id, reason="unpaid")
        )
        with pytest.raises(grpc.aio.AioRpcError) as suspended:
            await auth.GetPortal(tenancy_pb2.GetPortalRequest(slug=tenant.tenant.slug))
        assert suspended.value.code() == grpc.StatusCode.NOT_FOUND
