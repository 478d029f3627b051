"""Tenancy over real gRPC with real NATS and PostgreSQL: lifecycle, auth, RBAC, isolation,
rate limits, validation, idempotency and events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import field_mask_pb2

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer
from mevaas_core.pagination import encode_page_token
from mevaas_core.runtime import ServiceRuntime
from mevaas_sdk import MevaasClient
from tests.integration.tenancy.helpers import create_tenant, field_violations

pytestmark = pytest.mark.integration


async def expect_code(code: grpc.StatusCode, call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


async def test_tenant_lifecycle(
    admin_client: MevaasClient, client_for: Callable[[str], MevaasClient]
) -> None:
    acme = await create_tenant(admin_client)
    tenant_id = acme.tenant.tenant_id
    assert acme.tenant.status == common_pb2.TENANT_STATUS_ACTIVE
    assert acme.tenant.onboarding_phase == common_pb2.ONBOARDING_PHASE_DISCOVERY
    assert acme.tenant.plan.name == "professional-standard"

    # Other tests share the database, so the new tenant may be on any page: walk them all.
    listed_ids: list[str] = []
    page = common_pb2.PageRequest(page_size=100)
    while True:
        listed = await admin_client.tenants.ListTenants(tenancy_pb2.ListTenantsRequest(page=page))
        listed_ids += [t.tenant_id for t in listed.tenants]
        if not listed.page.next_page_token:
            break
        page = common_pb2.PageRequest(page_size=100, page_token=listed.page.next_page_token)
    assert tenant_id in listed_ids and len(listed_ids) == len(set(listed_ids))
    assert "_platform" not in listed_ids

    async with client_for(acme.owner_key) as owner:
        got = await owner.tenants.GetTenant(tenancy_pb2.GetTenantRequest())
        assert got.tenant.slug == acme.tenant.slug
        updated = await owner.tenants.UpdateTenant(
            tenancy_pb2.UpdateTenantRequest(
                tenant=tenancy_pb2.Tenant(display_name="Acme Capital"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                expected_version=got.tenant.version,
            )
        )
        assert updated.tenant.display_name == "Acme Capital"
        assert updated.tenant.version == got.tenant.version + 1
        # A stale version is refused rather than silently overwriting.
        await expect_code(
            grpc.StatusCode.FAILED_PRECONDITION,
            owner.tenants.UpdateTenant(
                tenancy_pb2.UpdateTenantRequest(
                    tenant=tenancy_pb2.Tenant(display_name="Stale"),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                    expected_version=got.tenant.version,
                )
            ),
        )
        # The tier is the platform's to change, not the tenant's.
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            owner.tenants.UpdateTenant(
                tenancy_pb2.UpdateTenantRequest(
                    tenant=tenancy_pb2.Tenant(tier=common_pb2.TIER_ENTERPRISE),
                    update_mask=field_mask_pb2.FieldMask(paths=["tier"]),
                )
            ),
        )
        advanced = await owner.tenants.AdvanceOnboarding(
            tenancy_pb2.AdvanceOnboardingRequest(target_phase=common_pb2.ONBOARDING_PHASE_SETUP)
        )
        assert advanced.tenant.onboarding_phase == common_pb2.ONBOARDING_PHASE_SETUP
        await expect_code(
            grpc.StatusCode.FAILED_PRECONDITION,
            owner.tenants.AdvanceOnboarding(
                tenancy_pb2.AdvanceOnboardingRequest(target_phase=common_pb2.ONBOARDING_PHASE_LIVE)
            ),
        )
        branding = await owner.tenants.SetBranding(
            tenancy_pb2.SetBrandingRequest(
                branding=tenancy_pb2.Branding(
                    display_name="Acme MEV",
                    logo_url="https://acme.example.com/logo.png",
                    primary_color="#112233",
                    custom_domain=f"mev.{acme.tenant.slug}.example.com",
                )
            )
        )
        assert branding.branding.primary_color == "#112233"

    tier = await admin_client.tenants.UpdateTenant(
        tenancy_pb2.UpdateTenantRequest(
            tenant=tenancy_pb2.Tenant(tenant_id=tenant_id, tier=common_pb2.TIER_ENTERPRISE),
            update_mask=field_mask_pb2.FieldMask(paths=["tier"]),
        )
    )
    assert tier.tenant.tier == common_pb2.TIER_ENTERPRISE
    assert tier.tenant.plan.name == "enterprise-standard"

    suspended = await admin_client.tenants.SuspendTenant(
        tenancy_pb2.SuspendTenantRequest(tenant_id=tenant_id, reason="unpaid invoice")
    )
    assert suspended.tenant.status == common_pb2.TENANT_STATUS_SUSPENDED
    async with client_for(acme.owner_key) as owner:
        await expect_code(grpc.StatusCode.PERMISSION_DENIED, owner.access_token())
    await admin_client.tenants.ResumeTenant(tenancy_pb2.ResumeTenantRequest(tenant_id=tenant_id))

    async with client_for(acme.owner_key) as owner:
        await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            owner.tenants.DeleteTenant(tenancy_pb2.DeleteTenantRequest(confirm_slug="not-the-slug")),
        )
        deleted = await owner.tenants.DeleteTenant(
            tenancy_pb2.DeleteTenantRequest(confirm_slug=acme.tenant.slug)
        )
    assert deleted.tenant.status == common_pb2.TENANT_STATUS_DELETED
    assert deleted.users_erased == 1 and deleted.api_keys_revoked == 1
    users = await admin_client.tenants.ListUsers(tenancy_pb2.ListUsersRequest(tenant_id=tenant_id))
    assert list(users.users) == []
    # Revoked with the tenant: the owner key no longer authenticates.
    async with client_for(acme.owner_key) as owner:
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, owner.access_token())


async def test_api_key_roles_and_tenant_isolation(
    admin_client: MevaasClient, client_for: Callable[[str], MevaasClient]
) -> None:
    alpha = await create_tenant(admin_client)
    beta = await create_tenant(admin_client)
    async with client_for(alpha.owner_key) as owner:
        viewer_key = await owner.tenants.CreateApiKey(
            tenancy_pb2.CreateApiKeyRequest(
                idempotency_key=str(uuid.uuid4()), name="dashboards", roles=[common_pb2.ROLE_VIEWER]
            )
        )
        assert viewer_key.secret.startswith(f"mvs_{viewer_key.api_key.api_key_id}_")
        listed = await owner.tenants.ListApiKeys(tenancy_pb2.ListApiKeysRequest())
        assert {k.api_key_id for k in listed.api_keys} >= {viewer_key.api_key.api_key_id}
        # Tenant A reading tenant B: denied, never B's data.
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            owner.tenants.GetTenant(tenancy_pb2.GetTenantRequest(tenant_id=beta.tenant.tenant_id)),
        )
        beta_users = await admin_client.tenants.ListUsers(
            tenancy_pb2.ListUsersRequest(tenant_id=beta.tenant.tenant_id)
        )
        # B's user is invisible to A even by id (row-level security), so it is NOT_FOUND.
        await expect_code(
            grpc.StatusCode.NOT_FOUND,
            owner.tenants.UpdateUserRoles(
                tenancy_pb2.UpdateUserRolesRequest(
                    user_id=beta_users.users[0].user_id, roles=[common_pb2.ROLE_VIEWER]
                )
            ),
        )
        # The last owner cannot be demoted.
        alpha_users = await owner.tenants.ListUsers(tenancy_pb2.ListUsersRequest())
        await expect_code(
            grpc.StatusCode.FAILED_PRECONDITION,
            owner.tenants.UpdateUserRoles(
                tenancy_pb2.UpdateUserRolesRequest(
                    user_id=alpha_users.users[0].user_id, roles=[common_pb2.ROLE_VIEWER]
                )
            ),
        )

    async with client_for(viewer_key.secret) as viewer:
        me = await viewer.auth.WhoAmI(tenancy_pb2.WhoAmIRequest())
        assert me.tenant_id == alpha.tenant.tenant_id
        assert list(me.roles) == [common_pb2.ROLE_VIEWER]
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            viewer.tenants.CreateApiKey(
                tenancy_pb2.CreateApiKeyRequest(
                    idempotency_key="k1", name="escalate", roles=[common_pb2.ROLE_OWNER]
                )
            ),
        )
        denied = await expect_code(
            grpc.StatusCode.PERMISSION_DENIED, viewer.tenants.ListTenants(tenancy_pb2.ListTenantsRequest())
        )
        # Role names as a user writes them, not Python reprs.
        assert denied.details() == "roles [viewer] may not call this method; it needs one of [platform_admin]"

    async with client_for(alpha.owner_key) as owner:
        revoked = await owner.tenants.RevokeApiKey(
            tenancy_pb2.RevokeApiKeyRequest(api_key_id=viewer_key.api_key.api_key_id)
        )
        assert revoked.api_key.revoked
    async with client_for(viewer_key.secret) as viewer:
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, viewer.access_token())

    async with client_for(alpha.owner_key) as owner:
        audit = await owner.tenants.ListAuditRecords(tenancy_pb2.ListAuditRecordsRequest())
    actions = [r.action for r in audit.records if r.outcome == events_pb2.AUDIT_OUTCOME_SUCCEEDED]
    assert actions[:2] == [
        "/mevaas.tenancy.v1.TenantService/CreateTenant",
        "/mevaas.tenancy.v1.TenantService/CreateApiKey",
    ]
    assert "/mevaas.tenancy.v1.TenantService/RevokeApiKey" in actions
    assert all(r.tenant_id == alpha.tenant.tenant_id for r in audit.records)


async def test_expired_and_forged_tokens_are_unauthenticated(
    admin_client: MevaasClient, tenancy_service: ServiceRuntime[Any], jwt_signing_key: SigningKey
) -> None:
    stub_channel = grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}")
    call = stub_channel.unary_unary(
        "/mevaas.tenancy.v1.AuthService/WhoAmI",
        request_serializer=tenancy_pb2.WhoAmIRequest.SerializeToString,
        response_deserializer=tenancy_pb2.WhoAmIResponse.FromString,
    )
    principal = Principal(subject="k", tenant_id="_platform", roles=frozenset({Role.PLATFORM_ADMIN}))
    real = TokenIssuer(jwt_signing_key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=60)
    expired, _ = real.issue(principal, now=time.time() - 3600)
    forged_key = SigningKey(key_id=jwt_signing_key.key_id, private_key=Ed25519PrivateKey.generate())
    forged, _ = TokenIssuer(forged_key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=60).issue(
        principal
    )
    unsigned = jwt.encode(
        {"sub": "k", "tid": "_platform", "roles": ["platform_admin"]},
        "an-hmac-secret-that-no-service-trusts-at-all",
        algorithm="HS256",
    )
    try:
        for token, reason in [
            (expired, "expired"),
            (forged, "invalid"),
            (unsigned, "unknown key"),
            ("garbage", "malformed"),
        ]:
            error = await expect_code(
                grpc.StatusCode.UNAUTHENTICATED,
                call(tenancy_pb2.WhoAmIRequest(), metadata=[("authorization", f"Bearer {token}")]),
            )
            assert reason in (error.details() or ""), error.details()
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, call(tenancy_pb2.WhoAmIRequest()))
        valid, _ = real.issue(principal)
        ok = await call(tenancy_pb2.WhoAmIRequest(), metadata=[("authorization", f"Bearer {valid}")])
        assert ok.tenant_id == "_platform"
    finally:
        await stub_channel.close(None)


async def test_rate_limit_by_plan(
    admin_client: MevaasClient, client_for: Callable[[str], MevaasClient]
) -> None:
    plan = common_pb2.Plan(
        name="tiny",
        rate_limit_per_second=1,
        rate_limit_burst=3,
        max_strategies=1,
        max_concurrent_executions=1,
    )
    tiny = await create_tenant(admin_client, plan=plan)
    async with client_for(tiny.owner_key) as owner:
        await owner.access_token()
        results = await asyncio.gather(
            *(owner.auth.WhoAmI(tenancy_pb2.WhoAmIRequest()) for _ in range(6)), return_exceptions=True
        )
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) >= 2, "a burst of 3 at 1/s cannot serve 6 calls at once"
    assert {e.code() for e in errors} == {grpc.StatusCode.RESOURCE_EXHAUSTED}


async def test_malformed_requests_name_the_field(
    admin_client: MevaasClient, tenancy_service: ServiceRuntime[Any]
) -> None:
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        admin_client.tenants.CreateTenant(
            tenancy_pb2.CreateTenantRequest(
                idempotency_key="x",
                slug="Not A Slug!",
                display_name="d",
                tier=99,  # type: ignore[arg-type]
            )
        ),
    )
    assert {"slug", "tier"} <= set(field_violations(error))
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        admin_client.tenants.ListTenants(
            tenancy_pb2.ListTenantsRequest(page=common_pb2.PageRequest(page_size=5000))
        ),
    )
    assert field_violations(error) == ["page.page_size"]
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        admin_client.tenants.ListTenants(
            tenancy_pb2.ListTenantsRequest(page=common_pb2.PageRequest(page_token="%%%"))
        ),
    )
    assert field_violations(error) == ["page.page_token"]
    error = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        admin_client.auth.ExchangeApiKey(tenancy_pb2.ExchangeApiKeyRequest(api_key="not-a-key")),
    )
    assert field_violations(error) == ["api_key"]
    # Bytes that are not a protobuf message at all: still INVALID_ARGUMENT, never INTERNAL.
    token = await admin_client.access_token()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}")
    try:
        raw = channel.unary_unary("/mevaas.tenancy.v1.TenantService/GetTenant")  # type: ignore[call-arg]
        error = await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            raw(b"\xff\xff\xff\xff", metadata=[("authorization", f"Bearer {token}")]),
        )
        assert field_violations(error) == ["request"]
    finally:
        await channel.close(None)


async def test_an_audit_page_token_holding_no_bigint_offset_is_refused_by_field(
    admin_client: MevaasClient, client_for: Callable[[str], MevaasClient]
) -> None:
    # The token is the client's bytes: one decoding to a string or an integer no BIGINT holds
    # was an INTERNAL error from deep in the list, not an answer naming the field.
    tenant = await create_tenant(admin_client)
    async with client_for(tenant.owner_key) as owner:
        for position in ("12", "x", -1, 2**63):
            error = await expect_code(
                grpc.StatusCode.INVALID_ARGUMENT,
                owner.tenants.ListAuditRecords(
                    tenancy_pb2.ListAuditRecordsRequest(
                        page=common_pb2.PageRequest(page_token=encode_page_token(position))
                    )
                ),
            )
            assert field_violations(error) == ["page.page_token"], position
        listed = await owner.tenants.ListAuditRecords(
            tenancy_pb2.ListAuditRecordsRequest(page=common_pb2.PageRequest(page_token=encode_page_token(0)))
        )
        assert listed.records


async def test_idempotent_create_emits_one_event(admin_client: MevaasClient, nats_server: str) -> None:
    slug = f"idem-{uuid.uuid4().hex[:8]}"
    request = tenancy_pb2.CreateTenantRequest(
        idempotency_key=f"create-{slug}", slug=slug, display_name="Idem", tier=common_pb2.TIER_STARTER
    )
    first = await admin_client.tenants.CreateTenant(request)
    again = await admin_client.tenants.CreateTenant(request)
    assert again == first
    listed = await admin_client.tenants.ListTenants(
        tenancy_pb2.ListTenantsRequest(page=common_pb2.PageRequest(page_size=1000))
    )
    assert [t.slug for t in listed.tenants].count(slug) == 1
    # Same key, different request: refused, nothing created.
    changed = tenancy_pb2.CreateTenantRequest()
    changed.CopyFrom(request)
    changed.slug = slug + "-other"
    await expect_code(grpc.StatusCode.ALREADY_EXISTS, admin_client.tenants.CreateTenant(changed))
    # A different key with a taken slug is ALREADY_EXISTS too.
    taken = tenancy_pb2.CreateTenantRequest()
    taken.CopyFrom(request)
    taken.idempotency_key = "another"
    await expect_code(grpc.StatusCode.ALREADY_EXISTS, admin_client.tenants.CreateTenant(taken))

    subject = f"tenant.{first.tenant.tenant_id}.created"
    nc = await nats.connect(nats_server)
    try:
        js = nc.jetstream()
        events: list[events_pb2.TenantEvent] = []
        deadline = time.monotonic() + 10
        # The outbox relay publishes asynchronously; wait for the event, then make sure no second one comes.
        sub = await js.subscribe(subject, ordered_consumer=True)
        while time.monotonic() < deadline and len(events) < 2:
            try:
                msg = await sub.next_msg(timeout=1.0 if events else 5.0)
            except nats.errors.TimeoutError:
                if events:
                    break
                continue
            event = events_pb2.TenantEvent.FromString(msg.data)
            events.append(event)
            assert msg.headers is not None and msg.headers.get("Nats-Msg-Id") == event.event_id
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert len(events) == 1
    assert events[0].kind == events_pb2.TENANT_EVENT_KIND_CREATED
    assert events[0].tenant.slug == slug
