"""Small helpers for the tenancy tests: create a tenant with an owner key in one call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core import onboarding
from mevaas_sdk import MevaasClient

# The first onboarding phase whose tenants may start live sessions (mevaas_core.onboarding's table):
# every test that trades creates its tenant there, so the table can change in one place.
TRADING_PHASE = onboarding.first_phase_allowing(onboarding.Capability.LIVE_SESSION)


@dataclass
class TenantWithKey:
    tenant: tenancy_pb2.Tenant
    owner_key: str


async def create_tenant(
    admin: MevaasClient,
    slug: str | None = None,
    plan: common_pb2.Plan | None = None,
    *,
    phase: str = onboarding.PHASES[0],
) -> TenantWithKey:
    """A new tenant with an owner key, advanced to onboarding ``phase`` (TRADING_PHASE to trade)."""
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    request = tenancy_pb2.CreateTenantRequest(
        idempotency_key=str(uuid.uuid4()),
        slug=slug,
        display_name=slug.upper(),
        tier=common_pb2.TIER_PROFESSIONAL,
        owner_email=f"owner@{slug}.example.com",
    )
    if plan is not None:
        request.plan.CopyFrom(plan)
    created = await admin.tenants.CreateTenant(request)
    key = await admin.tenants.CreateApiKey(
        tenancy_pb2.CreateApiKeyRequest(
            idempotency_key=str(uuid.uuid4()),
            tenant_id=created.tenant.tenant_id,
            name="owner key",
            roles=[common_pb2.ROLE_OWNER],
        )
    )
    tenant = await advance_onboarding(admin, created.tenant, phase)
    return TenantWithKey(tenant=tenant, owner_key=key.secret)


async def advance_onboarding(
    admin: MevaasClient, tenant: tenancy_pb2.Tenant, phase: str
) -> tenancy_pb2.Tenant:
    """Advance ``tenant`` one phase at a time (the only way tenancy allows) up to ``phase``."""
    current = onboarding.PHASE_OF_PROTO[tenant.onboarding_phase]
    for step in onboarding.PHASES[onboarding.PHASES.index(current) + 1 : onboarding.PHASES.index(phase) + 1]:
        reply = await admin.tenants.AdvanceOnboarding(
            tenancy_pb2.AdvanceOnboardingRequest(
                tenant_id=tenant.tenant_id, target_phase=onboarding.PROTO_OF_PHASE[step]
            )
        )
        tenant = reply.tenant
    return tenant


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    fields: list[str] = []
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    fields.extend(v.field for v in bad.field_violations)
    return fields


async def bearer_of(channel: grpc.aio.Channel, api_key: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying an access token for the API key."""
    from mevaas.tenancy.v1 import tenancy_pb2_grpc

    reply = await tenancy_pb2_grpc.AuthServiceStub(channel).ExchangeApiKey(
        tenancy_pb2.ExchangeApiKeyRequest(api_key=api_key)
    )
    return (("authorization", f"Bearer {reply.access_token}"),)
