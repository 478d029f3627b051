"""People sign in to the portal in a real Chromium: an admin's enrolment link shows the TOTP
secret (QR code and text), the person sets a password and confirms a code, then signs in with
email + password + code; the session cookie is HttpOnly, Secure and SameSite=Strict; a wrong
password says nothing about which part was wrong; signing out ends the session at tenancy (the
old cookie opens nothing); repeated failures lock the account; every attempt is audited."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import pyotp
import pytest
from playwright.async_api import Browser, expect

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_sdk import MevaasClient
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.fixtures.portal import branded_tenant, snap

pytestmark = pytest.mark.integration

PASSWORD = "a long enough passphrase"


def code_at(secret: str, offset_steps: int) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def enrolment_link(gateway_url: str, owner_key: str, user_id: str) -> str:
    """An admin makes the link through the HTTP API (as the portal's admin page does)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway_url}/v1/mevaas.tenancy.v1.SignInService/CreateEnrolment",
            json={"userId": user_id},
            headers={"X-API-Key": owner_key},
        ) as reply,
    ):
        assert reply.status == 200, await reply.text()
        token: str = (await reply.json())["enrolmentToken"]
        return token


async def test_enrol_then_sign_in_with_password_and_totp(
    gateway_url: str, browser: Browser, admin_client: MevaasClient
) -> None:
    tenant = await branded_tenant(admin_client, "People Co", "#553377", "https://people.example/p.png")
    slug = tenant.tenant.slug
    user = await admin_client.tenants.CreateUser(
        tenancy_pb2.CreateUserRequest(
            idempotency_key=str(uuid.uuid4()),
            tenant_id=tenant.tenant.tenant_id,
            email="dana@people.example",
            roles=[common_pb2.ROLE_TRADER],
        )
    )
    token = await enrolment_link(gateway_url, tenant.owner_key, user.user.user_id)
    portal = f"{gateway_url}/t/{slug}/"
    context = await browser.new_context()
    page = await context.new_page()

    # Enrolment: the secret as a QR code (an image that really decodes to pixels) and as text.
    await page.goto(f"{portal}#/enrol/{token}")
    await expect(page.get_by_role("heading", name="Set up your sign-in")).to_be_visible()
    await expect(page.get_by_text("For dana@people.example.")).to_be_visible()
    qr = page.get_by_role("img", name="QR code of the authenticator secret")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("i => i.complete && i.naturalWidth > 100")
    secret = (await page.locator("#totp-secret").inner_text()).strip()
    otpauth = await page.locator("#otpauth-link").get_attribute("href")
    assert otpauth is not None and f"secret={secret}" in otpauth
    await snap(page, "enrolment")

    # Two different passwords, then a short one (the service's rule), then it is done.
    await page.get_by_label("New password").fill(PASSWORD)
    await page.get_by_label("The same password again").fill("something else entirely")
    await page.get_by_label("Code from your authenticator app").fill(code_at(secret, 0))
    await page.get_by_role("button", name="Finish enrolment").click()
    await expect(page.locator("#err-repeat")).to_have_text("the two passwords differ")
    await page.get_by_label("New password").fill("short")
    await page.get_by_label("The same password again").fill("short")
    await page.get_by_role("button", name="Finish enrolment").click()
    await expect(page.locator("#err-password")).to_have_text("must be at least 12 characters")
    await page.get_by_label("New password").fill(PASSWORD)
    await page.get_by_label("The same password again").fill(PASSWORD)
    await page.get_by_role("button", name="Finish enrolment").click()
    await expect(page.locator("#enrolled")).to_contain_text("Sign in as dana@people.example")
    await expect(page.get_by_label("Email")).to_have_value("dana@people.example")

    # A wrong password: refused without saying which part was wrong, and no session.
    await page.get_by_label("Password", exact=True).fill("not my password at all")
    await page.get_by_label("Authenticator code").fill(code_at(secret, 1))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#password-error")).to_have_text("wrong email, password or code")
    assert not [c for c in await context.cookies() if c["name"] == "mevaas_session"]

    # The right password and the next code: signed in, as a trader (no admin pages' controls).
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Authenticator code").fill(code_at(secret, 1))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["mevaas_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert cookies["mevaas_csrf"]["secure"] and not cookies["mevaas_csrf"]["httpOnly"]
    me: Any = await page.evaluate("fetch('/portal/session').then(r => r.json())")
    assert me["roles"] == ["trader"] and me["tenant_id"] == tenant.tenant.tenant_id
    # A mutating call without the CSRF header is refused even with the session cookie.
    forged: Any = await page.evaluate(
        """fetch('/v1/mevaas.risk.v1.RiskService/SetKillSwitch', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: '{"engaged": true, "reason": "x"}'})
            .then(r => r.status)"""
    )
    assert forged == 403

    # Signing out ends the session at tenancy: the old cookie, replayed, opens nothing.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to People Co")).to_be_visible()
    await context.add_cookies(
        [{"name": session["name"], "value": session["value"], "url": gateway_url, "sameSite": "Strict"}]
    )
    status: Any = await page.evaluate("fetch('/portal/session').then(r => r.status)")
    assert status == 401

    # Five wrong passwords lock the account: the sixth attempt, right or not, waits.
    await context.clear_cookies()
    await page.goto(portal)
    for _ in range(5):
        await page.get_by_label("Email").fill("dana@people.example")
        await page.get_by_label("Password", exact=True).fill("guessing again and again")
        await page.get_by_label("Authenticator code").fill("123456")
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.locator("#password-error")).to_have_text("wrong email, password or code")
        await page.locator("#password-error").evaluate("e => e.textContent = ''")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Authenticator code").fill(code_at(secret, 1))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#password-error")).to_contain_text("Too many failed attempts")
    await context.close()

    records = await admin_client.tenants.ListAuditRecords(
        tenancy_pb2.ListAuditRecordsRequest(
            tenant_id=tenant.tenant.tenant_id, action_prefix="/mevaas.tenancy.v1.SignInService/"
        )
    )
    kinds = [(r.action.rsplit("/", 1)[1], events_pb2.AuditOutcome.Name(r.outcome)) for r in records.records]
    assert ("CreateEnrolment", "AUDIT_OUTCOME_SUCCEEDED") in kinds
    assert ("CompleteEnrolment", "AUDIT_OUTCOME_SUCCEEDED") in kinds
    assert kinds.count(("SignIn", "AUDIT_OUTCOME_SUCCEEDED")) == 1
    assert kinds.count(("SignIn", "AUDIT_OUTCOME_FAILED")) == 7  # 1 + 5 wrong, 1 while locked
    assert ("EndSession", "AUDIT_OUTCOME_SUCCEEDED") in kinds


async def test_single_sign_on_with_the_tenants_oidc_provider(
    gateway_url: str, browser: Browser, admin_client: MevaasClient, oidc_provider: OidcProvider
) -> None:
    tenant = await branded_tenant(admin_client, "SSO Corp", "#114466", "https://sso.example/s.png")
    slug = tenant.tenant.slug
    user = await admin_client.tenants.CreateUser(
        tenancy_pb2.CreateUserRequest(
            idempotency_key=str(uuid.uuid4()),
            tenant_id=tenant.tenant.tenant_id,
            email="bob@sso.example",
            roles=[common_pb2.ROLE_VIEWER],
        )
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway_url}/v1/mevaas.tenancy.v1.SignInService/SetOidcProvider",
            json={
                "provider": {
                    "issuer": oidc_provider.issuer,
                    "clientId": CLIENT_ID,
                    "clientSecret": CLIENT_SECRET,
                }
            },
            headers={"X-API-Key": tenant.owner_key},
        ) as reply,
    ):
        assert reply.status == 200, await reply.text()
    oidc_provider.person = {"sub": "bob-at-idp", "email": "bob@sso.example", "email_verified": True}
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{gateway_url}/t/{slug}/")
    # Through the provider and back: signed in as bob, a viewer.
    await page.get_by_role("link", name="Sign in with single sign-on").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    me: Any = await page.evaluate("fetch('/portal/session').then(r => r.json())")
    assert me["roles"] == ["viewer"] and me["slug"] == slug
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["mevaas_session"]["httpOnly"] and cookies["mevaas_session"]["sameSite"] == "Strict"
    assert "mevaas_oidc" not in cookies  # the round trip's state is gone once used
    sent = oidc_provider.token_requests[-1]
    assert sent["redirect_uri"] == f"{gateway_url}/portal/oidc/callback" and sent["code_verifier"]

    # Someone the tenant does not know: back on the sign-in page, told why, with no session.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to SSO Corp")).to_be_visible()
    oidc_provider.person = {"sub": "eve", "email": "eve@elsewhere.example", "email_verified": True}
    await page.get_by_role("link", name="Sign in with single sign-on").click()
    await expect(page.locator("#sign-in-message")).to_contain_text(
        "no user of this tenant has the email eve@elsewhere.example"
    )
    assert not [c for c in await context.cookies() if c["name"] == "mevaas_session"]

    # A callback that this browser did not start (no sealed state cookie) opens nothing.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gateway_url}/portal/oidc/callback?code=stolen&state=guess", allow_redirects=False
        ) as reply,
    ):
        assert reply.status == 302 and "not%20started%20here" in reply.headers["Location"]
        assert "mevaas_session" not in reply.cookies
    assert user.user.user_id
    await context.close()
