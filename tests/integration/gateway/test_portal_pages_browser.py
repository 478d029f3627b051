"""The portal's pages that act, in a real Chromium against the five services and a gateway:
execution sessions refused in discovery (the service's reason shown on the page), then, after
the onboarding checklist's advance to deployment, started, paused, resumed and stopped from the
page (each confirmed; a dismissed confirmation changes nothing), role-gated; backtests' refusals
shown at their fields; admin: users added, re-roled, given an enrolment link
and deleted, API keys created (secret shown once) and revoked (the key stops working) - and none
of it offered to a trader, whose forged admin call the service refuses."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from google.protobuf.json_format import MessageToDict
from playwright.async_api import Browser, Dialog, Page, expect

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import block_production, fund, wait_for
from tests.fixtures.portal import api_key, branded_tenant, snap
from tests.fixtures.strategy import strategy_config

pytestmark = pytest.mark.integration


async def api(gateway_url: str, key: str, method: str, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway_url}/v1/{method}", json=body, headers={"X-API-Key": key}) as reply,
    ):
        data = await reply.json()
        assert reply.status == 200, data
        return data


async def sign_in_with_key(page: Page, url: str, key: str) -> None:
    await page.goto(url)
    await page.get_by_text("Use an API key instead").click()
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in with the key").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


class Confirmations:
    """Answers the page's window.confirm dialogs: accept or dismiss, and remembers the questions."""

    def __init__(self, page: Page) -> None:
        self.accept = True
        self.asked: list[str] = []
        page.on("dialog", self._answer)

    async def _answer(self, dialog: Dialog) -> None:
        self.asked.append(dialog.message)
        await (dialog.accept() if self.accept else dialog.dismiss())


async def session_state(page: Page) -> str:
    return (await page.locator("#sessions .state").first.inner_text()).strip()


async def test_session_controls_backtest_errors_and_onboarding(
    gateway_url: str, browser: Browser, admin_client: MevaasClient, devnet: Devnet
) -> None:
    tenant = await branded_tenant(admin_client, "Desk Co", "#334455", "https://desk.example/d.png")
    owner = tenant.owner_key
    wallet = await api(
        gateway_url,
        owner,
        "mevaas.execution.v1.ExecutionService/CreateWallet",
        {"idempotencyKey": str(uuid.uuid4()), "makeDefault": True},
    )
    for chain in devnet.chains:  # the executors' deployment costs gas on every chain
        await fund(chain, wallet["wallet"]["address"])
    config = MessageToDict(strategy_config(devnet.main.config, name="desk-arb"))
    created = await api(
        gateway_url,
        owner,
        "mevaas.strategy.v1.StrategyService/CreateStrategy",
        {"idempotencyKey": str(uuid.uuid4()), "config": config},
    )
    context = await browser.new_context()
    page = await context.new_page()
    answers = Confirmations(page)
    await sign_in_with_key(page, f"{gateway_url}/t/{tenant.tenant.slug}/", owner)

    # Start: asked first; dismissing starts nothing.
    await page.get_by_role("link", name="Sessions").click()
    await expect(page.get_by_text("No sessions yet.")).to_be_visible()
    await expect(page.get_by_label("Strategy")).to_have_value(created["strategy"]["strategyId"])
    answers.accept = False
    await page.get_by_role("button", name="Start session").click()
    await expect(page.get_by_text("No sessions yet.")).to_be_visible()
    assert answers.asked[-1] == "Start trading live with desk-arb (v1)?"
    # In discovery the service refuses a live session, and the page says why and what to do.
    answers.accept = True
    await page.get_by_role("button", name="Start session").click()
    refusal = page.locator("#start-form .form-error")
    await expect(refusal).to_contain_text("onboarding phase 'discovery'")
    await expect(refusal).to_contain_text("AdvanceOnboarding")
    await expect(page.get_by_text("No sessions yet.")).to_be_visible()

    # Onboarding: the checklist of the current phase; the owner advances it (asked first).
    await page.get_by_role("link", name="Onboarding").click()
    await expect(page.locator("#phase")).to_have_text("Current phase: discovery")
    await expect(page.locator("li.current")).to_contain_text("Name your owners and admins")
    await page.get_by_role("button", name="Advance to setup").click()
    await expect(page.locator("#phase")).to_have_text("Current phase: setup")
    await expect(page.locator("li.done")).to_have_count(1)
    assert "setup phase" in answers.asked[-1]
    await snap(page, "onboarding")
    got = await admin_client.tenants.GetTenant(
        tenancy_pb2.GetTenantRequest(tenant_id=tenant.tenant.tenant_id)
    )
    assert got.tenant.onboarding_phase == common_pb2.ONBOARDING_PHASE_SETUP

    await page.get_by_role("button", name="Advance to deployment").click()
    await expect(page.locator("#phase")).to_have_text("Current phase: deployment")
    await expect(page.locator("#live-gate")).to_have_text("Live sessions are allowed.")

    # From deployment on, the session starts.
    await page.get_by_role("link", name="Sessions").click()
    await page.get_by_role("button", name="Start session").click()
    await expect(page.locator("#sessions .state")).to_have_count(1)
    assert await session_state(page) in ("starting", "running")

    async def running() -> bool:
        listed = await api(
            gateway_url, owner, "mevaas.execution.v1.ExecutionService/ListExecutionSessions", {}
        )
        assert listed["sessions"][0]["state"] != "EXECUTION_STATE_FAILED", listed
        return bool(listed["sessions"][0]["state"] == "EXECUTION_STATE_RUNNING")

    async with block_production(*devnet.chains):
        await wait_for(running, timeout_s=60)
    await page.reload()
    await expect(page.locator("#sessions .state").first).to_have_text("running")

    # Pause (dismissed, then accepted), resume, stop: the state the service reports each time.
    answers.accept = False
    await page.get_by_role("button", name="Pause").click()
    assert await session_state(page) == "running"
    answers.accept = True
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#sessions .state").first).to_have_text("paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#toast")).to_contain_text("Resume")
    assert (await page.locator("#toast").inner_text()) == "Resume: done."
    await expect(page.locator("#sessions .state").first).to_have_text("running")
    await snap(page, "sessions")
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("#sessions .state").first).to_have_text("stopped")
    assert await page.get_by_role("button", name="Stop").count() == 0
    sessions = await api(gateway_url, owner, "mevaas.execution.v1.ExecutionService/ListExecutionSessions", {})
    assert [s["state"] for s in sessions["sessions"]] == ["EXECUTION_STATE_STOPPED"]

    # Backtests: a range the service refuses is shown at its field; an unknown id is NOT_FOUND.
    await page.get_by_role("link", name="Backtests").click()
    await page.get_by_label("Chain id").fill(str(devnet.main.config.chain_id))
    await page.get_by_label("From block").fill("10")
    await page.get_by_label("To block").fill("5")
    await page.get_by_role("button", name="Run backtest").click()
    await expect(page.locator("#backtest-form [aria-invalid=true]").first).to_be_visible()
    await page.get_by_label("Backtest id").fill(str(uuid.uuid4()))
    await page.get_by_role("button", name="Show result").click()
    await expect(page.locator("#backtest-lookup .form-error")).to_contain_text("not found")

    # A viewer sees the sessions but no control, and no admin page.
    viewer = await api_key(admin_client, tenant.tenant.tenant_id, common_pb2.ROLE_VIEWER)
    await context.clear_cookies()
    await sign_in_with_key(page, f"{gateway_url}/t/{tenant.tenant.slug}/", viewer)
    await page.get_by_role("link", name="Sessions").click()
    await expect(page.locator("#sessions .state")).to_have_count(1)
    assert await page.get_by_role("button", name="Start session").count() == 0
    assert await page.locator("#sessions button").count() == 0
    assert await page.locator("#advance").count() == 0
    await expect(page.get_by_role("link", name="Admin", exact=True)).to_be_hidden()
    await context.close()


async def test_admin_users_roles_and_api_keys(
    gateway_url: str, browser: Browser, admin_client: MevaasClient
) -> None:
    tenant = await branded_tenant(admin_client, "Admin Co", "#663300", "https://admin.example/a.png")
    tenant_id = tenant.tenant.tenant_id
    context = await browser.new_context()
    page = await context.new_page()
    answers = Confirmations(page)
    await sign_in_with_key(page, f"{gateway_url}/t/{tenant.tenant.slug}/", tenant.owner_key)
    await page.get_by_role("link", name="Admin", exact=True).click()
    await expect(page.get_by_role("heading", name="Users")).to_be_visible()

    # Add a user: a bad email is shown at its field, a good one appears in the table.
    form = page.locator("#user-form")
    await form.get_by_label("Email").fill("not an email")
    await form.get_by_role("button", name="Add user").click()
    await expect(page.locator("#err-email")).not_to_be_empty()
    await form.get_by_label("Email").fill("kim@admin.example")
    await form.get_by_label("trader").check()
    await form.get_by_role("button", name="Add user").click()
    row = page.locator("tr", has=page.locator("[data-user='kim@admin.example']"))
    await expect(row).to_be_visible()
    await expect(row.get_by_label("trader")).to_be_checked()

    # Re-role: trader -> compliance + viewer, saved at tenancy.
    await row.get_by_label("trader").uncheck()
    await row.get_by_label("compliance").check()
    await row.get_by_role("button", name="Save roles").click()
    await expect(page.locator("#toast")).to_have_text("Roles of kim@admin.example saved.")
    row = page.locator("tr", has=page.locator("[data-user='kim@admin.example']"))
    await expect(row.get_by_label("compliance")).to_be_checked()
    users = await admin_client.tenants.ListUsers(tenancy_pb2.ListUsersRequest(tenant_id=tenant_id))
    kim = next(u for u in users.users if u.email == "kim@admin.example")
    assert sorted(kim.roles) == sorted([common_pb2.ROLE_COMPLIANCE, common_pb2.ROLE_VIEWER])

    # An enrolment link that opens the enrolment page for kim.
    await row.get_by_role("button", name="Enrolment link").click()
    link = (await page.locator("#enrolment-url").inner_text()).strip()
    assert f"/t/{tenant.tenant.slug}/#/enrol/mve_" in link
    enrol_page = await context.new_page()
    await enrol_page.goto(link)
    await expect(enrol_page.get_by_text("For kim@admin.example.")).to_be_visible()
    await enrol_page.close()

    # A new API key: its secret shown once and usable; revoked (confirmed), it stops working.
    keys = page.locator("#key-form")
    await keys.get_by_label("Key name").fill("ci-reader")
    await keys.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#key-secret").inner_text()).strip()
    assert secret.startswith("mvs_")
    async with aiohttp.ClientSession() as http:
        probe = f"{gateway_url}/v1/mevaas.tenancy.v1.AuthService/WhoAmI"
        async with http.post(probe, json={}, headers={"X-API-Key": secret}) as reply:
            assert reply.status == 200
        await snap(page, "admin")
        await page.locator("[data-revoke='ci-reader']").click()
        assert "Revoke the key ci-reader?" in answers.asked[-1]
        key_row = page.locator("tr", has=page.locator("[data-key='ci-reader']"))
        await expect(key_row).to_contain_text("revoked")
        async with http.post(probe, json={}, headers={"X-API-Key": secret}) as reply:
            assert reply.status == 401

    # Delete kim (confirmed): gone from the table and from tenancy.
    await (
        page.locator("tr", has=page.locator("[data-user='kim@admin.example']"))
        .get_by_role("button", name="Delete")
        .click()
    )
    await expect(page.locator("[data-user='kim@admin.example']")).to_have_count(0)
    users = await admin_client.tenants.ListUsers(tenancy_pb2.ListUsersRequest(tenant_id=tenant_id))
    assert "kim@admin.example" not in [u.email for u in users.users]

    # A trader: no admin link, the page says who manages it, and a forged call is refused.
    trader = await api_key(admin_client, tenant_id, common_pb2.ROLE_TRADER)
    await context.clear_cookies()
    await sign_in_with_key(page, f"{gateway_url}/t/{tenant.tenant.slug}/", trader)
    await expect(page.get_by_role("link", name="Admin", exact=True)).to_be_hidden()
    await page.goto(f"{gateway_url}/t/{tenant.tenant.slug}/#/admin")
    await expect(page.get_by_text("Users and API keys are managed by owners and admins.")).to_be_visible()
    forged: Any = await page.evaluate(
        """async () => {
            const csrf = document.cookie.split('; ').find(c => c.startsWith('mevaas_csrf=')).slice(12);
            const r = await fetch('/v1/mevaas.tenancy.v1.TenantService/CreateUser', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: JSON.stringify({idempotencyKey: crypto.randomUUID(), email: 'x@y.example', roles: ['ROLE_OWNER']})});
            return [r.status, (await r.json()).status];
        }"""
    )
    assert forged == [403, "PERMISSION_DENIED"]
    await context.close()
