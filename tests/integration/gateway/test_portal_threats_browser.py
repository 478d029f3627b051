"""The protection page's sandwich threats and a refund in a token the chain registry does not know,
in a real Chromium against the five services and a gateway on the devnet. Two threats are recorded
in analytics' read model as its threat consumer records them (one priced at a block by a pool-mid
source; one whose victim loss is in a token of unknown decimals and whose attacker profit had no
price): the page shows each amount in whole tokens with its USD value and how it was priced, or
"unpriced" with the reason, the totals over the priced amounts with the unpriced counts, and a CSV
equal to GetExecutionReport's threats. A refund in an unknown token is shown in base units, said so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from playwright.async_api import Browser, expect

from mevaas.common.v1 import common_pb2
from mevaas_core.db import platform_transaction
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from tests.fixtures.execution import fund
from tests.fixtures.fleet import Fleet
from tests.fixtures.portal import api_key, branded_tenant, snap
from tests.integration.gateway.test_portal_protected_browser import downloaded, ok, sign_in, submit

pytestmark = pytest.mark.integration

ANALYTICS = "mevaas.analytics.v1.AnalyticsService"
# In no chain registry: its decimals are unknown.
UNKNOWN = "0x" + "0f" * 20
POOL = "0x" + "9a" * 20
# Analytics records USD prices and values with 18 decimal places.
Z18 = "0" * 18
USDC_LOSS = 1_234_567_891  # 1234.567891 USDC
WETH_PROFIT = 123_456_789_012_345_678  # 0.123456789012345678 WETH
UNKNOWN_LOSS = 98_765_432_109_876_543_210
WETH_UNPRICED = 5 * 10**17 + 1  # 0.500000000000000001 WETH, no price at its block
UNKNOWN_REFUND = 31_415_926_535_897_932_384_626


async def record_threat(
    fleet: Fleet,
    tenant_id: str,
    chain_id: int,
    seen_at: datetime,
    block: int,
    values: dict[str, tuple[str, int, int | None, tuple[str, str, str] | None, str]],
) -> str:
    """A threat with its two valuations, as analytics' threat consumer writes them. values: per
    component, (token, amount, decimals, (usd price, usd value, source) or None, unpriced reason)."""
    tx_hash = "0x" + uuid.uuid4().hex * 2
    victim = Account.create().address.lower()
    async with platform_transaction(fleet.runtimes["analytics"].pool) as conn:
        loss_token, loss = values["victim_loss"][:2]
        profit_token, profit = values["attacker_profit"][:2]
        await conn.execute(
            "INSERT INTO analytics.threats (tenant_id, chain_id, tx_hash, event_id, sender, block_number,"
            " pool, token, attacker_profit, exposure_token, exposure, safe_slippage_bps, seen_at, payload)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            tenant_id,
            chain_id,
            tx_hash,
            str(uuid.uuid4()),
            victim,
            block,
            POOL,
            profit_token,
            Decimal(profit),
            loss_token,
            Decimal(loss),
            37,
            seen_at,
            b"",
        )
        for component, (token, amount, decimals, price, reason) in values.items():
            await conn.execute(
                "INSERT INTO analytics.threat_valuations (tenant_id, chain_id, tx_hash, component, token,"
                " amount, decimals, priced, usd_price, usd_value, price_source, price_block,"
                " price_observed_at, unpriced_reason, valued_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                tenant_id,
                chain_id,
                tx_hash,
                component,
                f"{chain_id}:{token}",
                Decimal(amount),
                decimals,
                price is not None,
                Decimal(price[0]) if price else None,
                Decimal(price[1]) if price else None,
                price[2] if price else "",
                block if price else 0,
                seen_at if price else None,
                reason,
                seen_at,
            )
    return tx_hash


async def test_threats_panel_and_unknown_token_refund(
    gateway_url: str,
    browser: Browser,
    admin_client: MevaasClient,
    fleet: Fleet,
    devnet: Devnet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fleet's analytics is started without a chain registry; it reads one per call (from
    # MEVAAS_CHAINS_FILE when it has no file of its own), as a deployment's analytics has the
    # devnet's: it names the tokens' symbols from it.
    registry = tmp_path / "chains.json"
    devnet.registry.write(registry)
    monkeypatch.setenv("MEVAAS_CHAINS_FILE", str(registry))
    tenant = await branded_tenant(admin_client, "Sandwich Watch", "#2e6b3a", "https://watch.example/w.png")
    tenant_id = tenant.tenant.tenant_id
    viewer = await api_key(admin_client, tenant_id, common_pb2.ROLE_VIEWER)
    chain_id = devnet.main.spec.chain_id
    usdc = devnet.main.deployment.token("USDC").address.lower()
    weth = devnet.main.deployment.token("WETH").address.lower()
    now = datetime.now(UTC).replace(microsecond=0)
    source = f"pool-mid:{chain_id}:{POOL}"
    priced_tx = await record_threat(
        fleet,
        tenant_id,
        chain_id,
        now - timedelta(minutes=5),
        812,
        {
            "victim_loss": (usdc, USDC_LOSS, 6, (f"1.{Z18}", "1234.567891000000000000", source), ""),
            "attacker_profit": (weth, WETH_PROFIT, 18, (f"3000.{Z18}", "370.370367037037034000", source), ""),
        },
    )
    unpriced_tx = await record_threat(
        fleet,
        tenant_id,
        chain_id,
        now - timedelta(minutes=50),
        790,
        {
            "victim_loss": (UNKNOWN, UNKNOWN_LOSS, None, None, f"decimals of {chain_id}:{UNKNOWN} unknown"),
            "attacker_profit": (
                weth,
                WETH_UNPRICED,
                18,
                None,
                f"no price for {chain_id}:{weth} at block 790",
            ),
        },
    )
    # A refund in a token the registry does not know (the booking is out of scope here).
    user = Account.create()
    await fund(devnet.main, user.address)
    accepted = await submit(gateway_url, tenant.owner_key, devnet, user, 0)
    async with platform_transaction(fleet.runtimes["execution"].pool) as conn:
        await conn.execute(
            "UPDATE execution.protected_transactions SET backrun_tx_hash = $2, backrun_profit = $3, "
            "refund_token = $4, refund_amount = $5, gas_refund = 0 WHERE protected_transaction_id = $1",
            accepted["protectedTransactionId"],
            "0x" + "c2" * 32,
            Decimal(UNKNOWN_REFUND * 2),
            UNKNOWN,
            Decimal(UNKNOWN_REFUND),
        )

    report = await ok(
        gateway_url,
        viewer,
        f"{ANALYTICS}/GetExecutionReport",
        {"timeframe": {"preset": "TIMEFRAME_PRESET_LAST_30_DAYS"}},
    )
    threats: list[dict[str, Any]] = report["threats"]
    assert [t["txHash"] for t in threats] == [priced_tx, unpriced_tx]
    assert report["threatTotals"] == {
        "threats": "2",
        "victimLoss": {"currencyCode": "USD", "amount": "1234.567891000000000000"},
        "victimLossUnpricedCount": "1",
        "attackerProfit": {"currencyCode": "USD", "amount": "370.370367037037034000"},
        "attackerProfitUnpricedCount": "1",
    }

    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await sign_in(page, f"{gateway_url}/t/{tenant.tenant.slug}/", viewer)
    await page.get_by_role("link", name="Protected").click()
    await expect(page.get_by_role("heading", name="Sandwich threats")).to_be_visible()

    refund = page.locator("#protected tbody tr").first.locator("td.refund")
    await expect(refund).to_have_text(f"{UNKNOWN_REFUND:,} base units of unknown token {UNKNOWN}")
    await expect(refund.locator(".amount")).to_have_attribute("title", f"token {UNKNOWN}: decimals unknown")

    await expect(page.locator("#threat-count .figure")).to_have_text("2")
    await expect(page.locator("#threat-victim-loss .figure")).to_have_text(
        "1234.567891000000000000 USD + 1 unpriced"
    )
    await expect(page.locator("#threat-attacker-profit .figure")).to_have_text(
        "370.370367037037034000 USD + 1 unpriced"
    )
    rows = page.locator("#threats tbody tr")
    await expect(rows).to_have_count(2)
    first, second = rows.nth(0).locator("td"), rows.nth(1).locator("td")
    await expect(first.nth(2)).to_have_text(priced_tx)
    await expect(first.nth(3)).to_have_text(threats[0]["victim"])
    await expect(first.nth(4)).to_have_text(
        f"1,234.567891 USDC1234.567891000000000000 USD, priced at block 812 by {source}"
    )
    await expect(first.nth(5)).to_have_text(
        f"0.123456789012345678 WETH370.370367037037034000 USD, priced at block 812 by {source}"
    )
    await expect(second.nth(4)).to_have_text(
        f"{UNKNOWN_LOSS:,} base units of unknown token {UNKNOWN}"
        f"unpriced: decimals of {chain_id}:{UNKNOWN} unknown"
    )
    await expect(second.nth(5)).to_have_text(
        f"0.500000000000000001 WETHunpriced: no price for {chain_id}:{weth} at block 790"
    )
    await expect(first.nth(4).locator(".amount")).to_have_attribute(
        "title", f"{USDC_LOSS:,} base units of {usdc}"
    )
    await snap(page, "threats")

    exported = await downloaded(page, "export-threats")
    assert [r["tx_hash"] for r in exported] == [priced_tx, unpriced_tx]
    assert {k: v for k, v in exported[0].items() if k.startswith("victim_loss")} == {
        "victim_loss_token_address": usdc,
        "victim_loss_token_symbol": "USDC",
        "victim_loss_base_units": str(USDC_LOSS),
        "victim_loss_amount": "1234.567891",
        "victim_loss_usd": "1234.567891000000000000",
        "victim_loss_price_usd": f"1.{Z18}",
        "victim_loss_price_source": source,
        "victim_loss_price_block": "812",
        "victim_loss_unpriced_reason": "",
    }
    assert {k: v for k, v in exported[1].items() if k.startswith("victim_loss")} == {
        "victim_loss_token_address": UNKNOWN,
        "victim_loss_token_symbol": "",
        "victim_loss_base_units": str(UNKNOWN_LOSS),
        "victim_loss_amount": "",
        "victim_loss_usd": "",
        "victim_loss_price_usd": "",
        "victim_loss_price_source": "",
        "victim_loss_price_block": "",
        "victim_loss_unpriced_reason": f"decimals of {chain_id}:{UNKNOWN} unknown",
    }
    assert (exported[1]["attacker_profit_amount"], exported[1]["attacker_profit_usd"]) == (
        "0.500000000000000001",
        "",
    )
    assert (exported[0]["seen_at"], exported[0]["victim"], exported[0]["block_number"]) == (
        threats[0]["seenAt"],
        threats[0]["victim"],
        "812",
    )
    await context.close()
