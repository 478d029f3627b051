"""Revocation at once, at every service (issue 10, item 1): a revoked key's token, the keys it
minted, a suspended tenant's token and an over-long token are refused by all five services, each
as soon as the change's event reaches it (no polling: until then a token is valid to its expiry,
so a refusal at all proves the push path; the delay is printed, not asserted, as a timing
threshold would fail on a loaded machine); a service started afterwards refuses them from its
first call."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import ALGORITHM, SigningKey
from mevaas_sdk import MevaasClient
from tests.fixtures.fleet import Fleet
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

OK = grpc.StatusCode.OK
# Tokens live for minutes (the issuer's TTL): a refusal within this proves the revocation event.
PUSH_CEILING_SECONDS = 30.0


async def exchange(fleet: Fleet, api_key: str) -> str:
    async with fleet.channel("tenancy") as channel:
        reply = await tenancy_pb2_grpc.AuthServiceStub(channel).ExchangeApiKey(
            tenancy_pb2.ExchangeApiKeyRequest(api_key=api_key)
        )
    return reply.access_token


async def mint_key(fleet: Fleet, token: str, *, roles: list[Any] | None = None) -> str:
    async with fleet.channel("tenancy") as channel:
        reply = await tenancy_pb2_grpc.TenantServiceStub(channel).CreateApiKey(
            tenancy_pb2.CreateApiKeyRequest(
                idempotency_key=str(uuid.uuid4()), name="minted", roles=roles or [common_pb2.ROLE_ADMIN]
            ),
            metadata=[("authorization", f"Bearer {token}")],
        )
    return reply.secret


async def seconds_until_everywhere(fleet: Fleet, token: str, code: grpc.StatusCode, since: float) -> float:
    """Poll every service until each answers `code` to `token`; the slowest one's delay. The
    ceiling is far below the token's lifetime: only the revocation event can make it refuse."""
    slowest = 0.0
    for service in fleet.runtimes:
        while (answer := await fleet.probe(service, token)) != code:
            assert answer == OK, f"{service} answered {answer}"
            assert time.monotonic() - since < PUSH_CEILING_SECONDS, f"{service} still accepts the token"
            await asyncio.sleep(0.01)
        slowest = max(slowest, time.monotonic() - since)
    print(f"{code.name} everywhere {slowest:.3f} s after the change")
    return slowest


async def test_revoked_key_is_refused_everywhere_once_its_event_arrives(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    token = await exchange(fleet, tenant.owner_key)
    minted = await mint_key(fleet, token)
    minted_token = await exchange(fleet, minted)
    for service in fleet.runtimes:
        assert await fleet.probe(service, token) == OK, service
        assert await fleet.probe(service, minted_token) == OK, service
    key_id = tenant.owner_key.split("_")[1]

    revoked_at = time.monotonic()
    await admin_client.tenants.RevokeApiKey(tenancy_pb2.RevokeApiKeyRequest(api_key_id=key_id, reason="test"))
    await seconds_until_everywhere(fleet, token, grpc.StatusCode.UNAUTHENTICATED, revoked_at)
    # What the key minted dies with it: its tokens are refused and it can no longer be exchanged.
    await seconds_until_everywhere(fleet, minted_token, grpc.StatusCode.UNAUTHENTICATED, revoked_at)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await exchange(fleet, minted)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The revoked token cannot mint anything any more.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await mint_key(fleet, token)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_minted_key_cannot_outlive_its_parent(fleet: Fleet, admin_client: MevaasClient) -> None:
    tenant = await create_tenant(admin_client)
    parent_expiry = int(time.time()) + 7200
    async with fleet.channel("tenancy") as channel:
        owner_token = await exchange(fleet, tenant.owner_key)
        created = await tenancy_pb2_grpc.TenantServiceStub(channel).CreateApiKey(
            tenancy_pb2.CreateApiKeyRequest(
                idempotency_key=str(uuid.uuid4()),
                name="short-lived",
                roles=[common_pb2.ROLE_ADMIN],
                expires_at=Timestamp(seconds=parent_expiry),
            ),
            metadata=[("authorization", f"Bearer {owner_token}")],
        )
        parent_token = await exchange(fleet, created.secret)
        child = await tenancy_pb2_grpc.TenantServiceStub(channel).CreateApiKey(
            tenancy_pb2.CreateApiKeyRequest(
                idempotency_key=str(uuid.uuid4()),
                name="asks for forever",
                roles=[common_pb2.ROLE_TRADER],
            ),
            metadata=[("authorization", f"Bearer {parent_token}")],
        )
    assert child.api_key.expires_at.seconds == parent_expiry


async def test_suspended_tenant_is_denied_everywhere_and_resumes(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    token = await exchange(fleet, tenant.owner_key)
    for service in fleet.runtimes:
        assert await fleet.probe(service, token) == OK, service

    suspended_at = time.monotonic()
    await admin_client.tenants.SuspendTenant(
        tenancy_pb2.SuspendTenantRequest(tenant_id=tenant.tenant.tenant_id, reason="unpaid")
    )
    await seconds_until_everywhere(fleet, token, grpc.StatusCode.PERMISSION_DENIED, suspended_at)

    await admin_client.tenants.ResumeTenant(
        tenancy_pb2.ResumeTenantRequest(tenant_id=tenant.tenant.tenant_id)
    )
    fresh = await exchange(fleet, tenant.owner_key)
    for service in fleet.runtimes:
        assert await fleet.probe(service, fresh) == OK, service
        # The token from before the suspension stays refused.
        assert await fleet.probe(service, token) == grpc.StatusCode.PERMISSION_DENIED, service


async def test_token_beyond_the_maximum_lifetime_is_refused(
    fleet: Fleet, jwt_signing_key: SigningKey
) -> None:
    now = int(time.time())
    claims = {
        "iss": "mevaas-tenancy",
        "aud": "mevaas",
        "sub": "k",
        "tid": "_platform",
        "roles": ["platform_admin"],
        "iat": now,
        "exp": now + 10 * 365 * 86400,
        "jti": uuid.uuid4().hex,
    }
    ten_years = jwt.encode(
        claims, jwt_signing_key.private_key, algorithm=ALGORITHM, headers={"kid": jwt_signing_key.key_id}
    )
    for service in fleet.runtimes:
        assert await fleet.probe(service, ten_years) == grpc.StatusCode.UNAUTHENTICATED, service


async def test_a_restarted_service_reloads_revocations_before_serving(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    from mevaas_risk.server import RiskRuntime

    tenant = await create_tenant(admin_client)
    token = await exchange(fleet, tenant.owner_key)
    revoked_at = time.monotonic()
    await admin_client.tenants.RevokeApiKey(
        tenancy_pb2.RevokeApiKeyRequest(api_key_id=tenant.owner_key.split("_")[1])
    )
    await seconds_until_everywhere(fleet, token, grpc.StatusCode.UNAUTHENTICATED, revoked_at)

    # A second risk process (same database and bus, new ports) refuses the token from its first call.
    settings = fleet.runtimes["risk"].settings.model_copy(update={"grpc_port": 0, "metrics_port": 0})
    fresh = RiskRuntime(settings)
    await fresh.start()
    try:
        assert await Fleet({"risk": fresh}).probe("risk", token) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await fresh.stop()
