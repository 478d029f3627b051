"""`mevaas api ...` (every RPC, from the protos) and `mevaas watch` as subprocesses against the
real services: generated commands call the RPC and print its answer, errors carry the field,
`watch` shows a real execution land and a deposit move the balances, live."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_chain import abi
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.execution import approved, block_production, build_opportunity, publish_decision
from tests.integration.cli.process import MEVAAS, MevaasProcess, for_services
from tests.integration.execution.helpers import TenantSession, clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

ETH = 10**18


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trader(
    execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[tuple[TenantSession, execution_pb2.ExecutionSession]]:
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    session = await start_running(tenant, devnet.chains)
    chain = devnet.main
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=tenant.wallet,
        amounts={"WETH": 2 * ETH},
    )
    yield tenant, session
    await tenant.client.close()


@pytest.fixture
def mevaas(
    trader: tuple[TenantSession, Any],
    tmp_path: Path,
    tenancy_service: Any,
    strategy_service: Any,
    risk_service: Any,
    execution_service: Any,
    analytics_service: Any,
) -> MevaasProcess:
    return for_services(
        tmp_path,
        trader[0].owner_key,
        tenancy=tenancy_service,
        strategy=strategy_service,
        risk=risk_service,
        execution=execution_service,
        analytics=analytics_service,
    )


async def test_watch_shows_an_execution_land_and_a_deposit_move_balances(
    mevaas: MevaasProcess,
    trader: tuple[TenantSession, execution_pb2.ExecutionSession],
    devnet: Devnet,
    bus: Bus,
    analytics_channel: Any,
) -> None:
    from mevaas_core.auth import Role

    tenant, session = trader
    chain = devnet.main
    process = await asyncio.create_subprocess_exec(
        MEVAAS, "watch", "--json", "--interval", "0.3", "--for", "120", "--session", session.session_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=mevaas.environment(), cwd=mevaas.home,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    notice = (await process.stderr.readline()).decode()
    assert notice.startswith("polling every 0.3s: the gRPC API has no streaming RPC")
    assert (await process.stderr.readline()).decode().startswith("watching ")  # the baseline is taken

    channel, md = analytics_channel(tenant.tenant_id, Role.VIEWER)
    async with channel:
        before = await portfolio_pb2_grpc.PortfolioServiceStub(channel).GetPositions(
            portfolio_pb2.GetPositionsRequest(chain_id=chain.spec.chain_id), metadata=md
        )
    weth_before = next(p for p in before.positions if p.token.symbol == "WETH")

    events: list[dict[str, Any]] = []

    async def until(predicate: Any) -> dict[str, Any]:
        async with asyncio.timeout(60):
            while True:  # on a timeout, `events` in the traceback shows what watch did print
                found = next((e for e in events if predicate(e)), None)
                if found:
                    return found
                line = await process.stdout.readline()  # type: ignore[union-attr]
                assert line, (await process.stderr.read()).decode()  # type: ignore[union-attr]
                events.append(json.loads(line))

    try:
        async with block_production(chain):
            opportunity = await build_opportunity(chain, tenant.tenant_id, session.strategy_id)
            await publish_decision(bus, approved(opportunity))
            landed = await until(
                lambda e: (
                    e["event"] == "execution"
                    and e["opportunity_id"] == opportunity.opportunity_id
                    and e["status"] == "EXECUTION_RESULT_STATUS_INCLUDED"
                )
            )
            await tenant.stub.Deposit(
                execution_pb2.DepositRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain.spec.chain_id,
                    wallet_address=tenant.wallet,
                    token_address=chain.deployment.weth,
                    amount=str(ETH // 4),
                )
            )
            moved = await until(
                lambda e: (
                    e["event"] == "position"
                    and e["token"]["symbol"] == "WETH"
                    and int(e["wallet_balance"]) == int(weth_before.wallet_balance) - ETH // 4
                )
            )
    finally:
        process.terminate()
        await process.wait()
    assert int(landed["realized_profit"]) > 0 and landed["tx_hashes"]
    # What watch printed is the chain at the block it names, to the wei.
    block = int(moved["as_of_block"])
    held = await chain.client.call(chain.deployment.weth, abi.balance_of(moved["executor_address"]), block)
    assert (
        int(moved["executor_balance"]) == abi.decode_uint(held) > int(weth_before.executor_balance) + ETH // 4
    )
    submitted = [e for e in events if e.get("execution_id") == landed["execution_id"]]
    assert [e["status"] for e in submitted][-1] == "EXECUTION_RESULT_STATUS_INCLUDED"


async def test_generated_commands_call_every_kind_of_rpc(
    mevaas: MevaasProcess, trader: tuple[TenantSession, Any], devnet: Devnet
) -> None:
    tenant, session = trader
    me = await mevaas.json("api", "auth", "who-am-i")
    assert me["tenant_id"] == tenant.tenant_id and "ROLE_OWNER" in me["roles"]
    # Scalar, flag and enum options; a message option as JSON.
    positions = await mevaas.json(
        "api", "portfolio", "get-positions", "--chain-id", str(devnet.main.spec.chain_id), "--include-zero",
        "--page", '{"page_size": 3}',
    )  # fmt: skip
    assert len(positions["positions"]) == 3 and positions["page"]["next_page_token"]
    sessions = await mevaas.json("api", "execution", "list-execution-sessions")
    assert session.session_id in [s["session_id"] for s in sessions["sessions"]]
    # (After the watch test: engaging the switch stops the tenant's session.)
    switched = await mevaas.json("api", "risk", "set-kill-switch", "--engaged", "--reason", "drill")
    assert switched["kill_switch"]["engaged"] is True
    released = await mevaas.json(
        "api",
        "risk",
        "set-kill-switch",
        "--request",
        '{"engaged": false}',
    )
    assert released["kill_switch"].get("engaged", False) is False
    breaches = await mevaas.json("api", "risk", "list-breaches")
    assert isinstance(breaches.get("breaches", []), list)
    missing = await mevaas(
        "api", "protection", "get-protected-transaction", "--protected-transaction-id", str(uuid.uuid4())
    )
    assert missing.code == 1 and missing.error.startswith("error NOT_FOUND")

    # Field violations, one line each; with --json as a document on stderr.
    bad = await mevaas("api", "risk", "get-var", "--confidence", "1.5", "--method", "parametric")
    assert bad.code == 1 and bad.error.startswith("error INVALID_ARGUMENT: invalid confidence")
    bad_json = await mevaas("api", "risk", "get-var", "--confidence", "1.5", "--json")
    assert [v["field"] for v in json.loads(bad_json.stderr)["error"]["field_violations"]] == ["confidence"]
    not_json = await mevaas("api", "portfolio", "get-positions", "--page", "{")
    assert not_json.code == 2 and "--page: not valid JSON" in not_json.error
    unknown_enum = await mevaas("api", "risk", "get-var", "--method", "magic")
    assert unknown_enum.code == 2 and "magic" in unknown_enum.error

    # Starting a session says, on stderr, that it trades live (stdout stays the session's JSON).
    started = await mevaas.ok("exec", "start", str(uuid.uuid4()), "--json")
    session_id = json.loads(started.stdout)["session_id"]
    notice = " ".join(started.stderr.split())
    assert notice.startswith(f"LIVE TRADING: session {session_id} signs and sends real transactions")
    assert f"mevaas watch --session {session_id}" in notice
