"""`mevaas wallets|positions|deposit|withdraw` as a subprocess against the real tenancy, risk,
execution and analytics services on the devnet: amounts typed in tokens move exactly that many
base units on anvil, a declined confirmation moves nothing, bad input is refused per field."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mevaas.execution.v1 import execution_pb2
from mevaas_chain import abi
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.execution import block_production
from tests.integration.cli.process import MevaasProcess, for_services
from tests.integration.execution.helpers import TenantSession, clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

ETH = 10**18


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trader(
    execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[TenantSession]:
    """A tenant whose wallet holds 3 WETH and has a live executor (a session deployed it)."""
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    session = await start_running(tenant, devnet.chains)
    await tenant.stub.StopExecution(execution_pb2.StopExecutionRequest(session_id=session.session_id))
    chain = devnet.main
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=tenant.wallet,
        amounts={"WETH": 3 * ETH},
    )
    yield tenant
    await tenant.client.close()


@pytest.fixture
def mevaas(
    trader: TenantSession,
    tmp_path: Path,
    tenancy_service: Any,
    risk_service: Any,
    execution_service: Any,
    analytics_service: Any,
) -> MevaasProcess:
    return for_services(
        tmp_path,
        trader.owner_key,
        tenancy=tenancy_service,
        risk=risk_service,
        execution=execution_service,
        analytics=analytics_service,
    )


async def balance(chain: DevnetChain, holder: str, token: str = "") -> int:
    if not token:
        return int(await chain.client.request("eth_getBalance", [holder, "latest"]), 16)
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(holder), "latest"))


async def nonce(chain: DevnetChain, address: str) -> int:
    return int(await chain.client.request("eth_getTransactionCount", [address, "latest"]), 16)


async def test_wallets_and_positions_show_the_executor_and_the_chain(
    mevaas: MevaasProcess, trader: TenantSession, devnet: Devnet
) -> None:
    chain = devnet.main
    listed = await mevaas.json("wallets")
    (wallet,) = listed["wallets"]
    assert wallet["address"] == trader.wallet and wallet["is_default"] is True
    (executor,) = [e for e in wallet["executors"] if int(e["chain_id"]) == chain.spec.chain_id]
    assert executor["liveness"] == "EXECUTOR_LIVENESS_LIVE"
    table = (await mevaas.ok("wallets")).stdout
    # Whole addresses, never cut to the terminal's width, and liveness as people write it.
    assert trader.wallet in table and f"{executor['address']} live" in table

    positions = await mevaas.json("positions", "--chain", str(chain.spec.chain_id))
    weth = next(p for p in positions["positions"] if p["token"]["symbol"] == "WETH")
    assert int(weth["wallet_balance"]) == await balance(chain, trader.wallet, chain.deployment.weth)
    assert weth["executor_address"].lower() == executor["address"].lower()
    human = (await mevaas.ok("positions", "--chain", str(chain.spec.chain_id))).stdout
    assert weth["amount"] == "3" and "WETH" in human
    raw = (await mevaas.ok("positions", "--chain", str(chain.spec.chain_id), "--raw")).stdout
    assert str(3 * ETH) in raw and str(3 * ETH) not in human


async def test_deposit_and_withdraw_move_exactly_what_was_typed(
    mevaas: MevaasProcess, trader: TenantSession, devnet: Devnet
) -> None:
    chain = devnet.main
    weth = chain.deployment.weth
    wallet = trader.wallet
    on = ("--chain", str(chain.spec.chain_id))
    (executor,) = [
        e["address"]
        for e in (await mevaas.json("wallets"))["wallets"][0]["executors"]
        if int(e["chain_id"]) == chain.spec.chain_id
    ]
    # WETH is configured on every devnet chain: which one must be said.
    ambiguous = await mevaas("deposit", "1.5", "WETH", "--yes")
    assert ambiguous.code == 2 and "pass --chain" in ambiguous.error
    executor_before = await balance(chain, executor, weth)
    wallet_before = await balance(chain, wallet, weth)

    async with block_production(chain):
        deposited = await mevaas.json("deposit", "1.5", "WETH", *on, "--yes")
        assert deposited["status"] == "included" and deposited["amount"] == str(15 * ETH // 10)
        assert await balance(chain, executor, weth) == executor_before + 15 * ETH // 10
        assert await balance(chain, wallet, weth) == wallet_before - 15 * ETH // 10

        # Confirmed on stdin; the human report names the amount in tokens and in base units.
        asked = await mevaas.ok("withdraw", "0.500000000000000001", "weth", *on, stdin="y\n")
        assert "withdraw 0.500000000000000001 WETH (500000000000000001 base units)" in " ".join(
            asked.stderr.split()
        )
        assert "withdrew 0.500000000000000001 WETH (500000000000000001 base units)" in asked.stdout
        assert await balance(chain, executor, weth) == executor_before + ETH - 1
        assert await balance(chain, wallet, weth) == wallet_before - ETH + 1

        # --raw: base units, here 7 wei of WETH, named by address.
        raw = await mevaas.json("withdraw", "7", weth, *on, "--raw", "--yes")
        assert raw["amount"] == "7" and raw["token_address"].lower() == weth.lower()
        assert await balance(chain, executor, weth) == executor_before + ETH - 8

    # Declined, too precise, more than held, a destination off the allow-list: nothing moves.
    sent = await nonce(chain, wallet)
    held = await balance(chain, executor, weth)
    declined = await mevaas("withdraw", "0.1", "WETH", *on, stdin="n\n")
    assert declined.code == 7 and "nothing was sent" in declined.error
    too_precise = await mevaas("withdraw", "0.1234567890123456789", "WETH", *on, "--yes")
    assert too_precise.code == 2 and "19 decimal places but WETH has 18" in too_precise.error
    unknown = await mevaas("withdraw", "1", "NOPE", *on, "--yes")
    assert unknown.code == 2 and "unknown token 'NOPE'" in unknown.error and "WETH" in unknown.error
    too_much = await mevaas("withdraw", "1000", "WETH", *on, "--yes")
    assert too_much.code == 1 and too_much.error.startswith("error FAILED_PRECONDITION")
    outsider = "0x" + uuid.uuid4().hex[:8] + "00" * 16
    off_list = await mevaas("withdraw", "0.1", "WETH", *on, "--to", outsider, "--yes", "--json")
    assert off_list.code == 1
    error = json.loads(off_list.stderr)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in error["field_violations"]] == ["to_address"]
    assert await nonce(chain, wallet) == sent and await balance(chain, executor, weth) == held


async def test_a_viewer_is_denied_with_exit_code_3(
    trader: TenantSession, mevaas: MevaasProcess, tenancy_service: Any
) -> None:
    from mevaas.common.v1 import common_pb2
    from mevaas.tenancy.v1 import tenancy_pb2

    async with clients(tenancy_service)(trader.owner_key) as owner:
        created = await owner.tenants.CreateApiKey(
            tenancy_pb2.CreateApiKeyRequest(
                idempotency_key=str(uuid.uuid4()), name="look", roles=[common_pb2.ROLE_VIEWER]
            )
        )
    denied = await mevaas(
        "deposit", "1", "WETH", "--chain", "31337", "--yes", env={"MEVAAS_API_KEY": created.secret}
    )
    assert denied.code == 3 and denied.error.startswith("error PERMISSION_DENIED")
    assert "[viewer]" in denied.error
