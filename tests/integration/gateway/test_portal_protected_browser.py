"""Protected transactions and compliance in a real Chromium against the five services and a gateway
on the devnet. Transactions sent through the HTTP API (two from a sanctioned sender, refused at
ingress; one accepted and billed, given a backrun refund larger than a float holds) are listed
through HTTP (POST paged, GET filtered, a bad page token answered 400 with its field violation),
shown on the protected page to a viewer, filtered there, and exported as CSV equal row by row to
the API's answer (fee and refund columns exact). The compliance page shows the sanctioned sender
among the refused parties and exports the sanctions hits equal to GetComplianceReport's; a viewer
is told the report is not theirs."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from playwright.async_api import Browser, Page, expect

from mevaas.common.v1 import common_pb2
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import fund, wait_for
from tests.fixtures.fleet import Fleet
from tests.fixtures.portal import api_key, branded_tenant, snap
from tests.integration.protection.helpers import signed

pytestmark = pytest.mark.integration

EXECUTION = "mevaas.execution.v1.ExecutionService"
ANALYTICS = "mevaas.analytics.v1.AnalyticsService"
# The devnet demo entry of the shipped sanctions sample (its key is published in docs/protection.md).
SANCTIONED_KEY = "0xac665b474a4107de0d848d98aa00c6fb18da5404b700d4b9788571f807980f38"
# More than 2**53: a float would lose the last digits.
REFUND = 123_456_789_012_345_678_901_234_567
GAS_REFUND = 21_000 * 10**9 + 7
BACKRUN_PROFIT = 987_654_321_987_654_321_987
FAILED = "PROTECTED_TRANSACTION_STATUS_FAILED"


async def post(gateway_url: str, key: str, method: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway_url}/v1/{method}", json=body, headers={"X-API-Key": key}) as reply,
    ):
        return reply.status, await reply.json()


async def ok(gateway_url: str, key: str, method: str, body: dict[str, Any]) -> Any:
    status, data = await post(gateway_url, key, method, body)
    assert status == 200, data
    return data


async def sign_in(page: Page, url: str, key: str) -> None:
    await page.goto(url)
    await page.get_by_text("Use an API key instead").click()
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in with the key").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


async def downloaded(page: Page, button: str) -> list[dict[str, str]]:
    async with page.expect_download() as info:
        await page.locator(f"#{button}").click()
    text = Path(await (await info.value).path()).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def name(value: str, prefix: str) -> str:
    return value.replace(prefix, "").lower().replace("_", " ") or "—"


def expected_row(t: dict[str, Any]) -> dict[str, str]:
    """What the CSV must say for one transaction of the API's JSON (every amount its string)."""
    fee = t.get("protectionFee", {})
    refund = t.get("refund", {})
    return {
        "protected_transaction_id": t["protectedTransactionId"],
        "chain_id": t["chainId"],
        "tx_hash": t["txHash"],
        "sender": t["sender"],
        "nonce": t.get("nonce", "0"),
        "mode": name(t["mode"], "PROTECTION_MODE_"),
        "status": name(t["status"], "PROTECTED_TRANSACTION_STATUS_"),
        "error": t.get("error", ""),
        "max_block_number": t.get("maxBlockNumber", "0"),
        "block_number": t.get("blockNumber", "0"),
        "received_at": t.get("receivedAt", ""),
        "submitted_at": t.get("submittedAt", ""),
        "included_at": t.get("includedAt", ""),
        "protection_fee": fee.get("amount", ""),
        "fee_currency": fee.get("currencyCode", ""),
        "refund_base_units": refund.get("amount", ""),
        "refund_token_address": refund.get("token", {}).get("address", ""),
        "gas_refund_wei": refund.get("gasRefund", ""),
        "backrun_profit_base_units": refund.get("backrunProfit", ""),
        "backrun_tx_hash": refund.get("backrunTxHash", ""),
        "refund_token_symbol": refund.get("token", {}).get("symbol", ""),
        "refund": whole_tokens(int(refund["amount"]), refund["token"]["decimals"]) if refund else "",
    }


def whole_tokens(amount: int, decimals: int) -> str:
    """Base units -> whole tokens by integer arithmetic, every digit, no trailing zeros."""
    whole, frac = divmod(amount, 10**decimals)
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


async def submit(gateway_url: str, key: str, devnet: Devnet, account: Any, nonce: int) -> dict[str, Any]:
    raw = await signed(devnet.main, account, nonce=nonce, to=account.address, value=1, gas=21_000)
    reply = await ok(
        gateway_url,
        key,
        f"{EXECUTION}/SubmitProtectedTransaction",
        {
            "idempotencyKey": str(uuid.uuid4()),
            "chainId": str(devnet.main.spec.chain_id),
            "rawTransaction": raw,
            "mode": "PROTECTION_MODE_PRIVATE_BUNDLE",
        },
    )
    return dict(reply["transaction"])


async def test_protected_list_over_http_and_on_the_page_with_csv(
    gateway_url: str, browser: Browser, admin_client: MevaasClient, fleet: Fleet, devnet: Devnet
) -> None:
    tenant = await branded_tenant(admin_client, "Shield Co", "#24507a", "https://shield.example/s.png")
    owner = tenant.owner_key
    viewer = await api_key(admin_client, tenant.tenant.tenant_id, common_pb2.ROLE_VIEWER)
    sanctioned = Account.from_key(SANCTIONED_KEY)
    user = Account.create()
    await fund(devnet.main, user.address)
    refused = [await submit(gateway_url, owner, devnet, sanctioned, n) for n in (10, 11)]
    accepted = await submit(gateway_url, owner, devnet, user, 0)
    assert [t["status"] for t in refused] == [FAILED, FAILED]
    assert accepted["status"] != FAILED and accepted["protectionFee"] == {
        "currencyCode": "USD",
        "amount": "2.00",
    }
    # The order-flow auction's refund, as its booking records it (a backrun is out of scope here).
    async with platform_transaction(fleet.runtimes["execution"].pool) as conn:
        await conn.execute(
            "UPDATE execution.protected_transactions SET backrun_tx_hash = $2, backrun_profit = $3, "
            "refund_token = $4, refund_amount = $5, gas_refund = $6 WHERE protected_transaction_id = $1",
            accepted["protectedTransactionId"],
            "0x" + "b1" * 32,
            Decimal(BACKRUN_PROFIT),
            devnet.main.deployment.token("WETH").address,
            Decimal(REFUND),
            Decimal(GAS_REFUND),
        )

    # HTTP: POST one a page (three pages, newest first), GET filtered by query parameters.
    listed: list[dict[str, Any]] = []
    token = ""
    for _ in range(3):
        reply = await ok(
            gateway_url,
            viewer,
            f"{EXECUTION}/ListProtectedTransactions",
            {"page": {"pageSize": 1, "pageToken": token}},
        )
        listed += reply["transactions"]
        token = reply["page"].get("nextPageToken", "")
    assert token == ""
    ids = [t["protectedTransactionId"] for t in listed]
    assert ids == [
        accepted["protectedTransactionId"],
        *[t["protectedTransactionId"] for t in reversed(refused)],
    ]
    refund = listed[0]["refund"]
    assert (refund["amount"], refund["gasRefund"], refund["backrunProfit"]) == (
        str(REFUND),
        str(GAS_REFUND),
        str(BACKRUN_PROFIT),
    )
    # Execution names the refund token from its chain registry.
    assert (refund["token"]["symbol"], refund["token"]["decimals"]) == ("WETH", 18)
    async with (
        aiohttp.ClientSession(headers={"X-API-Key": viewer}) as http,
        http.get(
            f"{gateway_url}/v1/{EXECUTION}/ListProtectedTransactions",
            params={"status": FAILED, "sender": sanctioned.address},
        ) as got,
    ):
        assert got.status == 200
        assert {t["protectedTransactionId"] for t in (await got.json())["transactions"]} == set(ids[1:])
    status, error = await post(
        gateway_url, viewer, f"{EXECUTION}/ListProtectedTransactions", {"page": {"pageToken": "nope!"}}
    )
    assert status == 400 and error["status"] == "INVALID_ARGUMENT", error
    assert [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])] == ["page.page_token"]

    # The page, as a viewer: every transaction, the refund to the wei, a filter, the CSV export.
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await sign_in(page, f"{gateway_url}/t/{tenant.tenant.slug}/", viewer)
    await page.get_by_role("link", name="Protected").click()
    await expect(page.get_by_role("heading", name="Protected transactions")).to_be_visible()
    rows = page.locator("#protected tbody tr")
    await expect(rows).to_have_count(3)
    # In whole tokens to the last wei, the base units on hover; the gas part in ETH.
    refund_cell = rows.first.locator("td.refund")
    await expect(refund_cell).to_have_text(
        "123,456,789.012345678901234567 WETH (gas 0.000021000000000007 ETH)"
    )
    await expect(refund_cell.locator(".amount").first).to_have_attribute(
        "title", f"{REFUND:,} base units of {devnet.main.deployment.token('WETH').address}"
    )
    await expect(rows.first).to_contain_text("2.00 USD")
    await expect(rows.nth(1)).to_contain_text("sanctioned counterparty")
    await snap(page, "protected")
    exported = await downloaded(page, "export-protected")
    # The accepted one may move on meanwhile (submitted, included): the file is the API's answer
    # of when it was made, before or after this check's own read.
    now = (await ok(gateway_url, viewer, f"{EXECUTION}/ListProtectedTransactions", {}))["transactions"]
    assert exported in ([expected_row(t) for t in listed], [expected_row(t) for t in now])
    assert exported[0]["refund_base_units"] == str(REFUND) and exported[0]["gas_refund_wei"] == str(
        GAS_REFUND
    )
    assert (exported[0]["refund_token_symbol"], exported[0]["refund"]) == (
        "WETH",
        "123456789.012345678901234567",
    )

    await page.locator("#f-status").select_option(FAILED)
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(rows).to_have_count(2)
    failed_rows = await downloaded(page, "export-protected")
    assert failed_rows == [expected_row(t) for t in listed[1:]]
    # A bad sender is shown at its field, from the API's field violation.
    await page.locator("#f-sender").fill("0x12")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.locator("#err-sender")).to_contain_text("address")
    await expect(page.locator("#f-sender")).to_have_attribute("aria-invalid", "true")

    # The compliance report is not a viewer's.
    await page.get_by_role("link", name="Compliance").click()
    await expect(page.get_by_text("PERMISSION_DENIED")).to_be_visible()
    await context.close()


async def test_compliance_page_lists_refused_parties_and_exports_hits(
    gateway_url: str, browser: Browser, admin_client: MevaasClient, fleet: Fleet, devnet: Devnet
) -> None:
    tenant = await branded_tenant(admin_client, "Ledger Guard", "#5a2a6e", "https://guard.example/g.png")
    officer = await api_key(admin_client, tenant.tenant.tenant_id, common_pb2.ROLE_COMPLIANCE)
    sanctioned = Account.from_key(SANCTIONED_KEY)
    refused = [await submit(gateway_url, tenant.owner_key, devnet, sanctioned, n) for n in (20, 21)]
    assert all(t["status"] == FAILED for t in refused)
    request = {"timeframe": {"preset": "TIMEFRAME_PRESET_LAST_30_DAYS"}, "auditPage": {"pageSize": 20}}

    async def hits() -> list[dict[str, Any]]:
        # Analytics records the refusals from execution's events, a moment after they happen.
        report = (await ok(gateway_url, officer, f"{ANALYTICS}/GetComplianceReport", request))["report"]
        found = report.get("sanctionedCounterpartyHits", [])
        return list(found) if len(found) >= 2 else []

    reported = await wait_for(hits)
    assert {h["txHash"] for h in reported} == {t["txHash"] for t in refused}
    assert {h["address"].lower() for h in reported} == {sanctioned.address.lower()}

    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await sign_in(page, f"{gateway_url}/t/{tenant.tenant.slug}/", officer)
    await page.get_by_role("link", name="Compliance").click()
    await expect(page.get_by_role("heading", name="Compliance")).to_be_visible()
    parties = page.locator("#refused-parties tbody tr")
    await expect(parties).to_have_count(1)
    await expect(parties.first).to_contain_text(reported[0]["address"])
    await expect(parties.first).to_contain_text("refused at protected-transaction ingress")
    await expect(page.locator("#sanctions-hits tbody tr")).to_have_count(2)
    await expect(page.locator("#compliance-figures .figure").first).to_have_text("2")
    await snap(page, "compliance")
    exported = await downloaded(page, "export-sanctions")
    assert exported == [
        {
            "detected_at": h.get("detectedAt", ""),
            "chain_id": h["chainId"],
            "address": h["address"],
            "list_name": h["listName"],
            "action": h["action"],
            "tx_hash": h.get("txHash", ""),
            "opportunity_id": h.get("opportunityId", ""),
        }
        for h in reported
    ]
    await context.close()
