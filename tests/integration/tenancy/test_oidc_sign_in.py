"""OIDC sign-in (authorization code + PKCE) against a real provider started by the test (RS256
ID tokens signed with joserfc): the tenant's provider settings validated and never echoing the
secret, the portal flagged for single sign-on, a person mapped to the tenant's user by the email
claim; and refused when the ID token's audience, issuer, expiry, nonce or signature is wrong, the
PKCE verifier is wrong, a code is replayed, the email is unverified, or no user matches."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import grpc
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.runtime import ServiceRuntime
from mevaas_sdk import MevaasClient
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.integration.tenancy.helpers import bearer_of, create_tenant, field_violations

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/portal/oidc/callback"


async def run_flow(signin: Any, slug: str, *, verifier: str = "", code: str = "") -> Any:
    """StartOidcSignIn, the browser's visit to the provider (no login form: it answers at once),
    then CompleteOidcSignIn with what Start gave."""
    start = await signin.StartOidcSignIn(
        tenancy_pb2.StartOidcSignInRequest(tenant_slug=slug, redirect_uri=REDIRECT)
    )
    query = parse_qs(urlsplit(start.authorization_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] == [start.nonce]
    async with (
        aiohttp.ClientSession() as http,
        http.get(start.authorization_url, allow_redirects=False) as reply,
    ):
        assert reply.status == 302, await reply.text()
        back = urlsplit(reply.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    params = parse_qs(back.query)
    assert params["state"] == [start.state]
    return await signin.CompleteOidcSignIn(
        tenancy_pb2.CompleteOidcSignInRequest(
            tenant_slug=slug,
            code=code or params["code"][0],
            code_verifier=verifier or start.code_verifier,
            nonce=start.nonce,
            redirect_uri=REDIRECT,
        )
    )


async def test_oidc_sign_in_maps_the_person_and_refuses_bad_tokens(
    tenancy_service: ServiceRuntime[Any], admin_client: MevaasClient, oidc_provider: OidcProvider
) -> None:
    tenant = await create_tenant(admin_client)
    slug, tenant_id = tenant.tenant.slug, tenant.tenant.tenant_id
    user = await admin_client.tenants.CreateUser(
        tenancy_pb2.CreateUserRequest(
            idempotency_key=str(uuid.uuid4()),
            tenant_id=tenant_id,
            email="Alice@Corp.example",
            roles=[common_pb2.ROLE_ADMIN],
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tenancy_service.grpc_port}") as channel:
        signin = tenancy_pb2_grpc.SignInServiceStub(channel)
        auth = tenancy_pb2_grpc.AuthServiceStub(channel)
        owner = await bearer_of(channel, tenant.owner_key)

        # No provider yet: single sign-on is a wrong state, not a server error.
        with pytest.raises(grpc.aio.AioRpcError) as none:
            await signin.StartOidcSignIn(
                tenancy_pb2.StartOidcSignInRequest(tenant_slug=slug, redirect_uri=REDIRECT)
            )
        assert none.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await signin.SetOidcProvider(
                tenancy_pb2.SetOidcProviderRequest(
                    provider=tenancy_pb2.OidcProvider(
                        issuer="http://idp.example.com", client_id="", email_claim="e mail"
                    )
                ),
                metadata=owner,
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sorted(field_violations(bad.value)) == [
            "provider.client_id",
            "provider.email_claim",
            "provider.issuer",
        ]
        await signin.SetOidcProvider(
            tenancy_pb2.SetOidcProviderRequest(
                provider=tenancy_pb2.OidcProvider(
                    issuer=oidc_provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
                )
            ),
            metadata=owner,
        )
        got = await signin.GetOidcProvider(tenancy_pb2.GetOidcProviderRequest(), metadata=owner)
        assert got.provider.issuer == oidc_provider.issuer and got.provider.email_claim == "email"
        assert got.provider.has_client_secret and not got.provider.client_secret
        portal = await auth.GetPortal(tenancy_pb2.GetPortalRequest(slug=slug))
        assert portal.oidc_enabled

        # The person at the provider is alice (email case-insensitively): a session as that user.
        oidc_provider.person = {"sub": "alice-at-idp", "email": "alice@corp.example", "email_verified": True}
        reply = await run_flow(signin, slug)
        assert reply.session.user_id == user.user.user_id
        assert list(reply.session.roles) == [common_pb2.ROLE_ADMIN]
        token = await signin.ExchangeSession(
            tenancy_pb2.ExchangeSessionRequest(session_token=reply.session.session_token)
        )
        who = await auth.WhoAmI(
            tenancy_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {token.access_token}"),)
        )
        assert who.user_id == user.user.user_id
        sent = oidc_provider.token_requests[-1]
        assert sent["grant_type"] == "authorization_code" and len(sent["code_verifier"]) >= 43

        # Every broken ID token is refused, each for its own reason.
        now = int(time.time())
        cases: list[tuple[dict[str, Any], bool, str]] = [
            ({"aud": "another-client"}, False, "audience"),
            ({"iss": "http://127.0.0.1:1"}, False, "issuer"),
            ({"exp": now - 600, "iat": now - 900}, False, "expired"),
            ({"nonce": "not-the-nonce"}, False, "nonce"),
            ({}, True, "signature"),
        ]
        for overrides, other_key, reason in cases:
            oidc_provider.overrides, oidc_provider.sign_with_other_key = overrides, other_key
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await run_flow(signin, slug)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, reason
            assert reason in (refused.value.details() or ""), (reason, refused.value.details())
        oidc_provider.overrides, oidc_provider.sign_with_other_key = {}, False

        # The provider refuses a wrong PKCE verifier; a code counts once.
        with pytest.raises(grpc.aio.AioRpcError) as pkce:
            await run_flow(signin, slug, verifier="x" * 64)
        assert pkce.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "invalid_grant" in (pkce.value.details() or "")

        # Unverified email, or an email that is no user of this tenant: no session.
        oidc_provider.person = {"sub": "alice-at-idp", "email": "alice@corp.example", "email_verified": False}
        with pytest.raises(grpc.aio.AioRpcError) as unverified:
            await run_flow(signin, slug)
        assert unverified.value.code() == grpc.StatusCode.PERMISSION_DENIED
        oidc_provider.person = {"sub": "mallory", "email": "mallory@corp.example", "email_verified": True}
        with pytest.raises(grpc.aio.AioRpcError) as stranger:
            await run_flow(signin, slug)
        assert stranger.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "mallory@corp.example" in (stranger.value.details() or "")

    records = await admin_client.tenants.ListAuditRecords(
        tenancy_pb2.ListAuditRecordsRequest(
            tenant_id=tenant_id,
            action_prefix="/mevaas.tenancy.v1.SignInService/CompleteOidcSignIn",
            page=common_pb2.PageRequest(page_size=100),
        )
    )
    outcomes = [events_pb2.AuditOutcome.Name(r.outcome) for r in records.records]
    assert outcomes.count("AUDIT_OUTCOME_SUCCEEDED") == 1
    assert outcomes.count("AUDIT_OUTCOME_FAILED") == 8
