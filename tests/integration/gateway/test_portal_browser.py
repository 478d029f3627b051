"""The portal in a real headless Chromium (Debian's, installed by `make setup`), driven by
Playwright against a real gateway in front of the five services on 127.0.0.1: white-label per
tenant, sign-in errors, a key of another tenant refused, inline validation from the service's
field violations, a live alert arriving over SSE, a viewer without mutating controls, and the
phone-sized viewport."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from mevaas.common.v1 import common_pb2
from mevaas_sdk import MevaasClient
from tests.fixtures.fleet import Fleet
from tests.fixtures.portal import api_key, branded_tenant, snap

pytestmark = pytest.mark.integration


async def sign_in(page: Page, url: str, key: str) -> None:
    await page.goto(url)
    await page.get_by_text("Use an API key instead").click()
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in with the key").click()


async def test_portal_white_label_sign_in_validation_and_live_alert(
    gateway_url: str, browser: Browser, admin_client: MevaasClient, fleet: Fleet
) -> None:
    domain = f"portal-{uuid.uuid4().hex[:8]}.acme.example"
    acme = await branded_tenant(
        admin_client, "Acme Capital", "#aa2200", "https://cdn.acme.example/logo.png", domain
    )
    globex = await branded_tenant(admin_client, "Globex Trading", "#0033cc", "https://globex.example/g.svg")
    acme_url = f"{gateway_url}/t/{acme.tenant.slug}/"
    globex_url = f"{gateway_url}/t/{globex.tenant.slug}/"

    # The tenant is found by its custom domain (Host) as well as by path; unknown paths are 404.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway_url}/", headers={"Host": domain}) as reply:
            assert reply.status == 200
            assert "Sign in to Acme Capital" in await reply.text()
        async with http.get(f"{gateway_url}/t/no-such-tenant/") as reply:
            assert reply.status == 404
        async with http.get(f"{gateway_url}/") as reply:  # the shared domain's root: choose a portal
            assert reply.status == 200
            assert "portal name" in await reply.text()
            assert "script-src 'self'" in reply.headers["Content-Security-Policy"]

    context = await browser.new_context()
    page = await context.new_page()

    # Each tenant's sign-in page carries its own name, logo and colours.
    await page.goto(acme_url)
    await expect(page.get_by_role("heading", name="Sign in to Acme Capital")).to_be_visible()
    assert await page.locator("img.logo").get_attribute("src") == "https://cdn.acme.example/logo.png"
    assert await page.locator("header.bar").evaluate("e => getComputedStyle(e).backgroundColor") == (
        "rgb(170, 34, 0)"
    )
    await page.goto(globex_url)
    await expect(page.get_by_role("heading", name="Sign in to Globex Trading")).to_be_visible()
    assert await page.locator("img.logo").get_attribute("src") == "https://globex.example/g.svg"
    assert await page.locator("header.bar").evaluate("e => getComputedStyle(e).backgroundColor") == (
        "rgb(0, 51, 204)"
    )
    assert "Acme" not in await page.content()
    await snap(page, "sign-in-globex")

    # Bad input and a key of another tenant are refused with a message, not a session.
    await sign_in(page, globex_url, "not-a-key")
    await expect(page.locator("#api-key-error")).to_have_text("an API key starts with mvs_")
    await sign_in(page, globex_url, acme.owner_key)
    await expect(page.locator("#api-key-error")).to_have_text("this API key is not for this portal")
    assert not [c for c in await context.cookies() if c["name"] == "mevaas_session"]

    # The owner signs in; the overview draws from the real API (no data yet: says so).
    await sign_in(page, acme_url, acme.owner_key)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_text("No sessions yet.")).to_be_visible()
    await expect(page.get_by_text("No executions yet.")).to_be_visible()
    await snap(page, "overview")

    # A strategy with a bad field: the service's field violation is shown next to the field.
    await page.get_by_role("link", name="Strategies").click()
    await page.get_by_role("button", name="Create strategy").click()
    await expect(page.locator("[aria-invalid=true]").first).to_be_visible()
    errors = await page.locator("#strategy-form .error").all_inner_texts()
    assert any(text.strip() for text in errors), errors
    await snap(page, "strategy-inline-errors")

    # A live alert: the kill switch engaged elsewhere (gRPC) appears on the alerts page over SSE.
    await page.get_by_role("link", name="Alerts").click()
    await expect(page.get_by_text("No alerts since you opened the portal.")).to_be_visible()
    await engage_kill_switch(acme.owner_key, gateway_url)
    await expect(page.locator("#alert-list li").first).to_contain_text("engaged: drill from the desk")
    await snap(page, "live-alert")

    # Risk page: figures in whole tokens with the symbol, and the kill switch shown as engaged.
    await page.get_by_role("link", name="Risk").click()
    await expect(page.locator("#kill-state")).to_contain_text("Engaged: drill from the desk")
    await snap(page, "risk")
    # An out-of-range limit is refused by the risk service and shown at the form.
    await page.get_by_label("Max slippage (basis points)").fill("20000")
    await page.get_by_role("button", name="Save limits").click()
    await expect(page.locator("#limits-form [aria-invalid=true]")).to_have_count(1)
    assert (await page.locator("#err-limits-max_slippage_bps").inner_text()).strip()
    await context.close()


async def engage_kill_switch(owner_key: str, gateway_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway_url}/v1/mevaas.risk.v1.RiskService/SetKillSwitch",
            json={"engaged": True, "reason": "drill from the desk"},
            headers={"X-API-Key": owner_key},
        ) as reply,
    ):
        assert reply.status == 200, await reply.text()


async def test_viewer_sees_no_mutating_controls_and_forged_writes_fail(
    gateway_url: str, browser: Browser, admin_client: MevaasClient
) -> None:
    tenant = await branded_tenant(admin_client, "Viewer Co", "#225522", "https://viewer.example/v.png")
    viewer_key = await api_key(admin_client, tenant.tenant.tenant_id, common_pb2.ROLE_VIEWER)
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await sign_in(page, f"{gateway_url}/t/{tenant.tenant.slug}/", viewer_key)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # Phone-sized: the page does not scroll sideways.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.get_by_role("link", name="Strategies").click()
    await expect(page.get_by_role("heading", name="Your strategies")).to_be_visible()
    assert await page.get_by_role("button", name="Create strategy").count() == 0
    await page.get_by_role("link", name="Risk").click()
    await expect(page.locator("#kill-state")).to_be_visible()
    assert await page.locator("#kill-toggle").count() == 0
    await snap(page, "risk-viewer-phone")

    # A forged write from the viewer's session: without the CSRF header the gateway refuses it;
    # with it, the service refuses the viewer's role.
    forged: Any = await page.evaluate(
        """async () => {
            const r = await fetch('/v1/mevaas.risk.v1.RiskService/SetKillSwitch', {method: 'POST',
                credentials: 'same-origin', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({engaged: true, reason: 'forged'})});
            return [r.status, await r.json()];
        }"""
    )
    assert forged[0] == 403 and "CSRF" in forged[1]["message"]
    with_csrf: Any = await page.evaluate(
        """async () => {
            const csrf = document.cookie.split('; ').find(c => c.startsWith('mevaas_csrf=')).slice(12);
            const r = await fetch('/v1/mevaas.risk.v1.RiskService/SetKillSwitch', {method: 'POST',
                credentials: 'same-origin', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: JSON.stringify({engaged: true, reason: 'forged'})});
            return [r.status, await r.json()];
        }"""
    )
    assert with_csrf[0] == 403 and with_csrf[1]["status"] == "PERMISSION_DENIED"
    await context.close()
