"""Past backtests (StrategyService.ListBacktests, served by analytics which keeps them) through the
HTTP API, the CLI and the portal, against the five services and a gateway on the devnet: newest
first in keyset pages, one strategy's only, a page token refused for other filters or when it is
not one, another tenant's backtests never shown; `mevaas backtests list`; the portal's list with
paging and a past run opened from it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer
from google.protobuf.json_format import MessageToDict
from playwright.async_api import Browser, expect
from typer.testing import CliRunner

from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from mevaas_sdk.backtest_cli import app as backtests_app
from tests.fixtures.e2e import blocks_pass
from tests.fixtures.execution import block_production
from tests.fixtures.fleet import Fleet
from tests.fixtures.portal import branded_tenant, snap
from tests.fixtures.strategy import strategy_config

pytestmark = pytest.mark.integration

STRATEGY = "mevaas.strategy.v1.StrategyService"


async def post(gateway_url: str, key: str, method: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway_url}/v1/{STRATEGY}/{method}", json=body, headers={"X-API-Key": key}) as reply,
    ):
        return reply.status, await reply.json()


async def ok(gateway_url: str, key: str, method: str, body: dict[str, Any]) -> Any:
    status, data = await post(gateway_url, key, method, body)
    assert status == 200, data
    return data


async def test_list_backtests_api_cli_and_portal(
    gateway_url: str,
    browser: Browser,
    admin_client: MevaasClient,
    devnet: Devnet,
    fleet: Fleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Analytics reads the devnet's chains (tokens of the replayed chain) per backtest.
    chains = tmp_path / "chains.json"
    devnet.registry.write(chains)
    monkeypatch.delenv("MEVAAS_CHAINS", raising=False)
    monkeypatch.setenv("MEVAAS_CHAINS_FILE", str(chains))
    tenant = await branded_tenant(admin_client, "Replay Co", "#5a2d82", "https://replay.example/r.png")
    other = await branded_tenant(admin_client, "Other Co", "#222222", "https://other.example/o.png")
    owner = tenant.owner_key
    chain = devnet.main
    strategy_ids = []
    for label in ("replay-a", "replay-b"):
        config = MessageToDict(strategy_config(chain.config, name=label))
        created = await ok(
            gateway_url, owner, "CreateStrategy", {"idempotencyKey": str(uuid.uuid4()), "config": config}
        )
        strategy_ids.append(created["strategy"]["strategyId"])
    first, second = strategy_ids

    # Five backtests over recorded blocks (3 of the first strategy, 2 of the second), in order.
    async with block_production(chain):
        await blocks_pass(chain, 3)
    head = await chain.client.block_number()
    made: list[dict[str, Any]] = []
    for i, strategy_id in enumerate((first, second, first, second, first)):
        reply = await ok(
            gateway_url,
            owner,
            "Backtest",
            {
                "idempotencyKey": str(uuid.uuid4()),
                "strategyId": strategy_id,
                "blockRange": {
                    "chainId": str(chain.spec.chain_id),
                    "fromBlock": str(head - 2 + i % 2),
                    "toBlock": str(head),
                },
            },
        )
        made.append(reply["backtest"])
    newest_first = [b["backtestId"] for b in reversed(made)]

    # Pages of two, newest first, with no trades or PnL series; the last page has no token.
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await ok(gateway_url, owner, "ListBacktests", {"page": {"pageSize": 2, "pageToken": token}})
        pages += 1
        assert len(page["backtests"]) <= 2
        for b in page["backtests"]:
            assert not b.get("trades") and not b.get("pnlSeries")
            assert b["status"] in ("BACKTEST_STATUS_SUCCEEDED", "BACKTEST_STATUS_FAILED"), b
        seen += [b["backtestId"] for b in page["backtests"]]
        token = page["page"]["nextPageToken"]
        if not token:
            break
    assert seen == newest_first and pages == 3
    full = await ok(gateway_url, owner, "GetBacktest", {"backtestId": made[0]["backtestId"]})
    assert full["backtest"]["blockRange"] == made[0]["blockRange"]

    # One strategy's backtests; its page token is refused with another filter, garbage is refused.
    only_second = await ok(
        gateway_url, owner, "ListBacktests", {"strategyId": second, "page": {"pageSize": 1}}
    )
    assert [b["backtestId"] for b in only_second["backtests"]] == [made[3]["backtestId"]]
    status, refused = await post(
        gateway_url,
        owner,
        "ListBacktests",
        {"strategyId": first, "page": {"pageToken": only_second["page"]["nextPageToken"]}},
    )
    assert status == 400
    assert refused["details"][0]["fieldViolations"][0]["field"] == "page.page_token"
    status, refused = await post(gateway_url, owner, "ListBacktests", {"page": {"pageToken": "not-a-token"}})
    assert status == 400 and refused["status"] == "INVALID_ARGUMENT"
    status, refused = await post(gateway_url, owner, "ListBacktests", {"page": {"pageSize": 5000}})
    assert status == 400
    assert refused["details"][0]["fieldViolations"][0]["field"] == "page.page_size"
    # Another tenant sees none of them.
    assert (await ok(gateway_url, other.owner_key, "ListBacktests", {})).get("backtests", []) == []

    # The CLI: every backtest, ids whole, newest first (JSON and the table).
    env = {"MEVAAS_API_KEY": owner, "XDG_CONFIG_HOME": "/nonexistent"}
    for name, runtime in fleet.runtimes.items():
        env[f"MEVAAS_{name.upper()}_ENDPOINT"] = f"127.0.0.1:{runtime.grpc_port}"
    cli = typer.Typer()
    cli.add_typer(backtests_app, name="backtests")

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["backtests", *args], env={**env, "COLUMNS": "300"})
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    listed = json.loads((await asyncio.to_thread(run, "list", "--json")).stdout)
    assert [b["backtest_id"] for b in listed["backtests"]] == newest_first
    limited = json.loads((await asyncio.to_thread(run, "list", "--limit", "3", "--json")).stdout)
    assert [b["backtest_id"] for b in limited["backtests"]] == newest_first[:3]
    shown = (await asyncio.to_thread(run, "list", "--strategy", first)).stdout
    assert all(b in shown for b in newest_first if b in {m["backtestId"] for m in made[::2]})
    assert made[1]["backtestId"] not in shown

    # The portal: the list, newest first, 20 a page; a past run opened from it.
    context = await browser.new_context()
    page_ = await context.new_page()
    await page_.goto(f"{gateway_url}/t/{tenant.tenant.slug}/")
    await page_.get_by_text("Use an API key instead").click()
    await page_.get_by_label("API key").fill(owner)
    await page_.get_by_role("button", name="Sign in with the key").click()
    await expect(page_.get_by_role("heading", name="Overview")).to_be_visible()
    await page_.get_by_role("link", name="Backtests").click()
    rows = page_.locator("#backtest-list tbody tr")
    await expect(rows).to_have_count(5)
    assert [
        await b.get_attribute("data-backtest")
        for b in await page_.locator("#backtest-list [data-backtest]").all()
    ] == newest_first
    assert await page_.locator("#backtests-more").count() == 0
    await page_.locator(f"[data-backtest='{made[2]['backtestId']}']").click()
    await expect(page_.locator("#backtest-result h3")).to_contain_text(made[2]["backtestId"])
    await snap(page_, "backtests")
    await context.close()
