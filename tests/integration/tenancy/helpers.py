"""Small helpers for the tenancy tests: create a tenant with an owner key in one call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_sdk import MevaasClient


@dataclass
class TenantWithKey:
    tenant: tenancy_pb2.Tenant
    owner_key: str


async def create_tenant(
    admin: MevaasClient, slug: str | None = None, plan: common_pb2.Plan | None = None
) -> TenantWithKey:
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
    return TenantWithKey(tenant=created.tenant, owner_key=key.secret)


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
