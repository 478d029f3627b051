"""The portal's reporting pages in a real Chromium against the five services and a gateway on the
devnet: a session started from the page captures a real arbitrage and the overview shows the
execution and its PnL as they land (live, no reload); the kill switch is engaged and released from
the risk page; and every CSV export (PnL, executions, positions, invoice lines) downloads rows equal
to what the HTTP API answers for the same request, amounts as exact strings (base units and whole
tokens, never a float)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.protobuf.json_format import MessageToDict
from playwright.async_api import Dialog, Page, expect

from mevaas.common.v1 import common_pb2
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.e2e import blocks_pass
from tests.fixtures.execution import block_production, fund, open_gap, wait_for
from tests.fixtures.fleet import Fleet
from tests.fixtures.portal import branded_tenant, snap
from tests.fixtures.strategy import strategy_config
from tests.integration.tenancy.helpers import TRADING_PHASE, advance_onboarding

pytestmark = pytest.mark.integration

EXECUTION = "mevaas.execution.v1.ExecutionService"
PORTFOLIO = "mevaas.portfolio.v1.PortfolioService"
ANALYTICS = "mevaas.analytics.v1.AnalyticsService"
THIRTY_DAYS = {"preset": "TIMEFRAME_PRESET_LAST_30_DAYS"}
FINAL = {f"EXECUTION_RESULT_STATUS_{s}" for s in ("INCLUDED", "REVERTED", "DROPPED", "STALE", "FAILED")}
ALL_PAGES = {"page": {"pageSize": 500, "pageToken": ""}}


@pytest.fixture
def fleet(
    tenancy_service: ServiceRuntime[Any],
    strategy_service: ServiceRuntime[Any],
    risk_service: ServiceRuntime[Any],
    fleet_execution: ServiceRuntime[Any],
    analytics_service: ServiceRuntime[Any],
) -> Fleet:
    """The fleet with execution asking the strategy service for a session's strategy (as in
    production), so a session trades what its strategy says."""
    return Fleet(
        {
            "tenancy": tenancy_service,
            "strategy": strategy_service,
            "risk": risk_service,
            "execution": fleet_execution,
            "analytics": analytics_service,
        }
    )


async def api(gateway_url: str, key: str, path: str, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway_url}/v1/{path}", json=body, headers={"X-API-Key": key}) as reply,
    ):
        data = await reply.json()
        assert reply.status == 200, data
        return data


def whole(amount: str, decimals: int) -> str:
    """Base units in whole tokens, every digit: what the CSV must say (computed without floats)."""
    if amount == "":
        return ""
    text = format(Decimal(int(amount)).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def name(value: str, prefix: str) -> str:
    return value.replace(prefix, "").lower().replace("_", " ") or "—"


async def downloaded_bytes(page: Page, button: str) -> bytes:
    async with page.expect_download() as info:
        await page.locator(f"#{button}").click()
    download = await info.value
    return Path(await download.path()).read_bytes()


async def downloaded(page: Page, button: str) -> list[dict[str, str]]:
    text = (await downloaded_bytes(page, button)).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_live_executions_kill_switch_and_csv_exports(
    gateway_url: str, browser: Any, admin_client: MevaasClient, devnet: Devnet
) -> None:
    tenant = await branded_tenant(admin_client, "Ledger Co", "#1d5c4f", "https://ledger.example/l.png")
    owner = tenant.owner_key
    await advance_onboarding(admin_client, tenant.tenant, TRADING_PHASE)  # live sessions allowed
    wallet = await api(
        gateway_url,
        owner,
        f"{EXECUTION}/CreateWallet",
        {"idempotencyKey": str(uuid.uuid4()), "makeDefault": True},
    )
    for chain in devnet.chains:
        await fund(chain, wallet["wallet"]["address"])
    config = strategy_config(
        devnet.main.config, name="ledger-flash", type_=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE
    )
    await api(
        gateway_url,
        owner,
        "mevaas.strategy.v1.StrategyService/CreateStrategy",
        {"idempotencyKey": str(uuid.uuid4()), "config": MessageToDict(config)},
    )

    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await page.goto(f"{gateway_url}/t/{tenant.tenant.slug}/")
    await page.get_by_text("Use an API key instead").click()
    await page.get_by_label("API key").fill(owner)
    await page.get_by_role("button", name="Sign in with the key").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_text("No realised PnL yet.")).to_be_visible()

    async def executions() -> list[dict[str, Any]]:
        listed = await api(gateway_url, owner, f"{EXECUTION}/ListExecutions", ALL_PAGES)
        return list(listed.get("executions", []))

    session_id = ""
    try:
        async with block_production(*devnet.chains, block_time_s=1.0):
            # A live session started from the sessions page (confirmed).
            await page.get_by_role("link", name="Sessions").click()
            await page.get_by_role("button", name="Start session").click()
            await expect(page.locator("#sessions .state")).to_have_count(1)

            async def running() -> str:
                listed = await api(gateway_url, owner, f"{EXECUTION}/ListExecutionSessions", {})
                session = listed["sessions"][0]
                assert session["state"] != "EXECUTION_STATE_FAILED", session
                return str(session["sessionId"]) if session["state"] == "EXECUTION_STATE_RUNNING" else ""

            session_id = await wait_for(running, timeout_s=60)

            # The overview is open while a price gap opens: the arbitrage and its PnL appear on it.
            await page.get_by_role("link", name="Overview").click()
            await expect(page.get_by_text("No executions yet.")).to_be_visible()
            await blocks_pass(devnet.main)

            async def included() -> bool:
                return any(e["status"] == "EXECUTION_RESULT_STATUS_INCLUDED" for e in await executions())

            # On a loaded machine an opportunity can miss its deadline block (stale): a new gap
            # then gives the strategy another one.
            for _ in range(3):
                await open_gap(devnet.main, share=15)
                try:
                    await wait_for(included, timeout_s=30)
                    break
                except TimeoutError:
                    continue
            statuses = [e["status"] for e in await executions()]
            assert "EXECUTION_RESULT_STATUS_INCLUDED" in statuses, statuses
            await expect(page.locator("#executions td", has_text="included").first).to_be_visible(
                timeout=30_000
            )
            # Analytics books the result just after execution announces it: the page draws again.
            await expect(page.locator(".cards .figure").first).to_contain_text("WETH", timeout=30_000)
            await snap(page, "overview-live")
            await api(gateway_url, owner, f"{EXECUTION}/StopExecution", {"sessionId": session_id})
            session_id = ""

            # Blocks go on until every execution of the wave is final (a submitted one needs them)
            # and analytics has booked each realised profit (its trade count is theirs).
            async def settled() -> bool:
                listed = await executions()
                perf = await api(
                    gateway_url, owner, f"{PORTFOLIO}/GetPerformance", {"timeframe": THIRTY_DAYS}
                )
                booked = sum(int(m.get("tradeCount", 0)) for m in perf.get("metrics", []))
                realised = [e for e in listed if e.get("realizedProfit", "") != ""]
                return all(e["status"] in FINAL for e in listed) and booked == len(realised) > 0

            try:
                await wait_for(settled, timeout_s=60)
            except TimeoutError:
                perf = await api(
                    gateway_url, owner, f"{PORTFOLIO}/GetPerformance", {"timeframe": THIRTY_DAYS}
                )
                raise AssertionError(
                    f"not settled: {[(e['status'], e.get('realizedProfit')) for e in await executions()]} {perf}"
                ) from None
    finally:
        if session_id:  # a failed run must not leave a session trading on the shared devnet
            await api(gateway_url, owner, f"{EXECUTION}/StopExecution", {"sessionId": session_id})

    # The kill switch, engaged and released from the risk page (each confirmed), as risk says.
    await page.get_by_role("link", name="Risk").click()
    await page.locator("#kill-reason").fill("end of day")
    await page.get_by_role("button", name="Engage kill switch").click()
    await expect(page.locator("#kill-state")).to_have_text("Engaged: end of day")
    kill = await api(gateway_url, owner, "mevaas.risk.v1.RiskService/GetKillSwitch", {})
    assert kill["killSwitch"]["engaged"] is True
    await page.get_by_role("button", name="Release kill switch").click()
    await expect(page.locator("#kill-state")).to_have_text("Released: trading allowed.")
    kill = await api(gateway_url, owner, "mevaas.risk.v1.RiskService/GetKillSwitch", {})
    assert not kill["killSwitch"].get("engaged")

    # Analytics: PnL and executions exported, equal to the API's answer for the same request.
    await page.get_by_role("link", name="Analytics").click()
    await expect(page.locator("#executions td", has_text="included").first).to_be_visible()
    await snap(page, "analytics")
    pnl_csv = await downloaded(page, "export-pnl")
    perf = await api(gateway_url, owner, f"{PORTFOLIO}/GetPerformance", {"timeframe": THIRTY_DAYS})
    landed = await executions()
    # A PnL denomination comes by address only; the portal names it with the symbol the same
    # token carries in the executions.
    known = {
        (e["profitToken"]["chainId"], e["profitToken"]["address"].lower()): e["profitToken"]["symbol"]
        for e in landed
    }

    def symbol(token: dict[str, Any]) -> str:
        return str(token["symbol"] or known.get((token["chainId"], token["address"].lower()), ""))

    expected_pnl = [
        {
            "denomination": symbol(s["denomination"]),
            "chain_id": s["denomination"]["chainId"],
            "token_address": s["denomination"]["address"],
            "day": p["time"],
            "pnl_base_units": p["pnl"],
            "pnl": whole(p["pnl"], s["denomination"]["decimals"]),
            "cumulative_base_units": p["cumulativePnl"],
            "cumulative": whole(p["cumulativePnl"], s["denomination"]["decimals"]),
            "trades": str(p.get("tradeCount", "0")),
        }
        for s in perf["dailyPnl"]
        for p in s["points"]
    ]
    assert pnl_csv == expected_pnl and any(int(r["pnl_base_units"]) != 0 for r in pnl_csv)
    # The last day's cumulative PnL is the sum of the executions' realised profit, to the wei.
    weth = [e for e in landed if e["profitToken"]["symbol"] == "WETH" and e.get("realizedProfit")]
    assert int(pnl_csv[-1]["cumulative_base_units"]) == sum(int(e["realizedProfit"]) for e in weth)

    executions_csv = await downloaded(page, "export-executions")
    expected_executions = [
        {
            "execution_id": e["executionId"],
            "session_id": e["sessionId"],
            "strategy_id": e["strategyId"],
            "status": name(e["status"], "EXECUTION_RESULT_STATUS_"),
            "chain_id": e["chainId"],
            "block_number": e["blockNumber"],
            "profit_token": e["profitToken"]["symbol"],
            "profit_token_address": e["profitToken"]["address"],
            "expected_profit_base_units": e["expectedProfit"],
            "realized_profit_base_units": e["realizedProfit"],
            "realized_profit": whole(e["realizedProfit"], e["profitToken"]["decimals"]),
            "gas_used": e["gasUsed"],
            "gas_cost_wei": e["gasCost"],
            "tx_hashes": " ".join(e["txHashes"]),
            "created_at": e.get("createdAt", ""),
            "finalized_at": e.get("finalizedAt", ""),
        }
        for e in landed
    ]
    assert executions_csv == expected_executions
    assert "included" in {r["status"] for r in executions_csv}

    # Opportunities filtered by status, and exported as the API renders them (ExportReport).
    await page.locator("#opp-status").select_option("OPPORTUNITY_STATUS_INCLUDED")
    await page.get_by_role("button", name="Filter").click()
    captured = await api(
        gateway_url,
        owner,
        f"{ANALYTICS}/ListOpportunities",
        {"status": "OPPORTUNITY_STATUS_INCLUDED", "page": {"pageSize": 50}},
    )
    assert captured["opportunities"]
    await expect(page.locator("#opportunities tbody tr")).to_have_count(len(captured["opportunities"]))
    exported = await downloaded_bytes(page, "export-opportunities-csv")
    rendered = await api(
        gateway_url,
        owner,
        f"{ANALYTICS}/ExportReport",
        {"format": "EXPORT_FORMAT_CSV", "opportunities": {"status": "OPPORTUNITY_STATUS_INCLUDED"}},
    )
    assert exported == base64.b64decode(rendered["content"])
    assert hashlib.sha256(exported).hexdigest() == rendered["sha256"]
    assert len(list(csv.DictReader(io.StringIO(exported.decode())))) == len(captured["opportunities"])

    # Treasury: the wallet's and its executor's holdings read from the chain, exported as such.
    await page.get_by_role("link", name="Treasury").click()
    await expect(page.locator("#positions table")).to_be_visible()
    await snap(page, "treasury")
    positions_csv = await downloaded(page, "export-positions")
    positions = await api(gateway_url, owner, f"{PORTFOLIO}/GetPositions", ALL_PAGES)
    expected_positions = [
        {
            "chain_id": p["token"]["chainId"],
            "token": p["token"]["symbol"],
            "token_address": p["token"]["address"],
            "decimals": str(p["token"]["decimals"]),
            "wallet_address": p["walletAddress"],
            "wallet_balance_base_units": p["walletBalance"],
            "executor_address": p["executorAddress"],
            "executor_balance_base_units": p["executorBalance"],
            "balance_base_units": p["balance"],
            "balance": whole(p["balance"], p["token"]["decimals"]),
            "realized_pnl_base_units": p["realizedPnl"],
            "value_usd": p["notionalValue"]["amount"] if "notionalValue" in p else "",
            "price_usd": p["price"]["amount"] if "price" in p else "",
            "price_source": p["priceSource"],
            "unpriced_reason": p["unpricedReason"],
            "as_of_block": p["asOfBlock"],
        }
        for p in positions["positions"]
    ]
    assert positions_csv == expected_positions
    # The wallet's 100 ETH (less the gas of its executor deployments) is among them.
    assert any(
        r["wallet_address"].lower() == wallet["wallet"]["address"].lower() and r["token"] == "ETH"
        for r in positions_csv
    )

    # Invoices: the current period's lines (the performance fee on the captured profit among them).
    await page.get_by_role("link", name="Invoices").click()
    invoices_csv = await downloaded(page, "export-invoices")
    invoices = await api(gateway_url, owner, f"{ANALYTICS}/ListInvoices", ALL_PAGES)
    expected_lines = [
        {
            "invoice": inv["number"],
            "status": name(inv["status"], "INVOICE_STATUS_"),
            "period_start": inv.get("period", {}).get("start", ""),
            "period_end": inv.get("period", {}).get("end", ""),
            "kind": name(line["kind"], "LINE_ITEM_KIND_"),
            "description": line["description"],
            "quantity": line.get("quantity", {}).get("value", ""),
            "unit_price": line.get("unitPrice", {}).get("amount", ""),
            "rate_percent": line.get("ratePercent", {}).get("value", ""),
            "amount": line.get("amount", {}).get("amount", ""),
            "currency": (line.get("amount") or line.get("unitPrice") or inv.get("total") or {}).get(
                "currencyCode", ""
            ),
            "unpriced": "true" if line["unpriced"] else "false",
            "token": line.get("token", {}).get("symbol", ""),
            "token_amount_base_units": line["tokenAmount"],
        }
        for inv in invoices["invoices"]
        for line in inv["lineItems"]
    ]
    assert invoices_csv == expected_lines and invoices_csv
    await context.close()
