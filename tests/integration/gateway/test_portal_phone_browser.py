"""The portal on a phone (390x844, touch, Chromium) against the five services and a gateway: on
every main page the document never scrolls sideways, every navigation link is on screen and
opens its page, and each table sits in a container that scrolls it on its own (so a wide table
moves, not the page)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from google.protobuf.json_format import MessageToDict
from playwright.async_api import Browser, Page, ViewportSize, expect

from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import fund
from tests.fixtures.portal import branded_tenant, snap
from tests.fixtures.strategy import strategy_config

pytestmark = pytest.mark.integration

PHONE: ViewportSize = {"width": 390, "height": 844}
# Nav link -> the heading its page draws.
PAGES = {
    "Overview": "Overview",
    "Strategies": "Strategies",
    "Sessions": "Execution sessions",
    "Backtests": "Backtests",
    "Risk": "Risk",
    "Alerts": "Alerts",
    "Analytics": "Analytics",
    "Treasury": "Treasury",
    "Invoices": "Invoices",
    "Protected": "Protected transactions",
    "Compliance": "Compliance",
    "Onboarding": "Onboarding",
    "Admin": "Admin",
}

# What breaks a phone layout, measured in the page: the document wider than the screen, elements
# reaching past its right edge (outside a scrolling container), tables not in one.
LAYOUT = """() => {
  const width = window.innerWidth;
  const scrolls = (e) => { for (let p = e.parentElement; p; p = p.parentElement)
    if (["auto", "scroll"].includes(getComputedStyle(p).overflowX)) return true; return false; };
  const past = [...document.querySelectorAll("body *")].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > width + 1 && !scrolls(e) && getComputedStyle(e).position !== "fixed";
  }).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`);
  const loose = [...document.querySelectorAll("table")].filter((t) => {
    const wrap = t.parentElement;
    return !wrap || getComputedStyle(wrap).overflowX !== "auto" || wrap.getBoundingClientRect().right > width + 1;
  }).length;
  return { scrollWidth: document.documentElement.scrollWidth, width, past: past.slice(0, 5), loose,
           tables: document.querySelectorAll("table").length };
}"""


async def layout(page: Page) -> dict[str, Any]:
    measured: dict[str, Any] = await page.evaluate(LAYOUT)
    return measured


async def test_main_pages_fit_a_phone(
    gateway_url: str, browser: Browser, admin_client: MevaasClient, devnet: Devnet
) -> None:
    tenant = await branded_tenant(admin_client, "Pocket Capital", "#7a3e00", "https://pocket.example/p.png")
    owner = tenant.owner_key
    async with aiohttp.ClientSession(headers={"X-API-Key": owner}) as http:
        async with http.post(
            f"{gateway_url}/v1/mevaas.execution.v1.ExecutionService/CreateWallet",
            json={"idempotencyKey": str(uuid.uuid4()), "makeDefault": True},
        ) as reply:
            wallet = (await reply.json())["wallet"]["address"]
        config = MessageToDict(
            strategy_config(devnet.main.config, name="a-strategy-with-a-long-name-for-a-phone")
        )
        async with http.post(
            f"{gateway_url}/v1/mevaas.strategy.v1.StrategyService/CreateStrategy",
            json={"idempotencyKey": str(uuid.uuid4()), "config": config},
        ) as reply:
            assert reply.status == 200, await reply.text()
    await fund(devnet.main, wallet)  # the treasury page then has a positions table

    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = await context.new_page()
    await page.goto(f"{gateway_url}/t/{tenant.tenant.slug}/")
    assert (await layout(page))["scrollWidth"] <= PHONE["width"]  # the sign-in page
    await page.get_by_text("Use an API key instead").click()
    await page.get_by_label("API key").fill(owner)
    await page.get_by_role("button", name="Sign in with the key").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    tables = 0
    for link, heading in PAGES.items():
        # Every link is on screen and opens its page by a tap.
        target = page.get_by_role("navigation").get_by_role("link", name=link)
        box = await target.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (link, box)
        assert box["height"] >= 24, (link, box)  # a tap target (WCAG 2.5.8)
        await target.tap()
        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await page.wait_for_load_state("networkidle")
        measured = await layout(page)
        assert measured["scrollWidth"] <= PHONE["width"], (link, measured)
        assert measured["past"] == [] and measured["loose"] == 0, (link, measured)
        tables += measured["tables"]
        if link in ("Overview", "Treasury", "Admin", "Analytics"):
            await snap(page, f"phone-{link.lower()}")
    assert tables >= 5  # strategies, limits, positions, users and keys at least were measured

    # A wide table scrolls inside its container: the positions table is wider than the phone.
    await page.get_by_role("navigation").get_by_role("link", name="Treasury", exact=True).tap()
    wrap = page.locator("#positions .table-wrap")
    await expect(wrap).to_be_visible()
    sizes = await wrap.evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert sizes[0] > sizes[1]
    await wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    assert await wrap.evaluate("w => w.scrollLeft") > 0
    assert await page.evaluate("window.scrollX") == 0
    await context.close()
