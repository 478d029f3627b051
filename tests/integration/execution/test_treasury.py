"""The treasury on the devnet: after a real flash arbitrage lands, every holding of the wallet and
its executor (native and every configured token) is booked and equals the chain to the wei; a
transfer outside the platform is reported as drift (status, alert on exec.<tenant>.treasury)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas.risk.v1 import risk_pb2
from mevaas_chain import abi
from mevaas_core.auth import Role
from mevaas_core.bus import Bus
from mevaas_core.db import tenant_transaction
from mevaas_execution.treasury import store
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.execution import approved, block_production, build_opportunity, publish_decision, wait_for
from tests.integration.execution.helpers import TenantSession, clients, start_running, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2
ETH = 10**18


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trader(
    execution_service: Any, tenancy_service: Any, devnet: Devnet
) -> AsyncIterator[tuple[TenantSession, execution_pb2.ExecutionSession]]:
    tenant = await tenant_with_wallet(clients(tenancy_service), execution_service, devnet.main)
    session = await start_running(tenant, devnet.chains)
    yield tenant, session
    await tenant.client.close()


async def chain_balance(chain: DevnetChain, holder: str, token: str, block: int) -> int:
    if not token:
        return int(await chain.client.request("eth_getBalance", [holder, hex(block)]), 16)
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(holder), block))


async def included_arbitrage(tenant: TenantSession, devnet: Devnet, bus: Bus, strategy_id: str) -> str:
    opportunity = await build_opportunity(devnet.main, tenant.tenant_id, strategy_id)
    await publish_decision(bus, approved(opportunity))

    async def status(wanted: int) -> execution_pb2.Execution | None:
        listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
        return next(
            (
                e
                for e in listed.executions
                if e.opportunity_id == opportunity.opportunity_id and e.status == wanted
            ),
            None,
        )

    await wait_for(lambda: status(S.EXECUTION_RESULT_STATUS_SUBMITTED), timeout_s=20)
    await devnet.main.mine(2)  # the block holding it and one on top (the chain's confirmations)
    included: execution_pb2.Execution = await wait_for(
        lambda: status(S.EXECUTION_RESULT_STATUS_INCLUDED), timeout_s=20
    )
    return included.execution_id


async def test_holdings_equal_the_chain_after_a_flash_arbitrage_and_drift_is_reported(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession],
    devnet: Devnet,
    bus: Bus,
    execution_service: Any,
) -> None:
    tenant, session = trader
    chain = devnet.main
    treasury = execution_service.core.treasury
    execution_id = await included_arbitrage(tenant, devnet, bus, session.strategy_id)
    tokens = {t.address.lower() for t in chain.deployment.tokens}

    async def booked() -> list[Any] | None:
        async with tenant_transaction(execution_service.pool, tenant.tenant_id) as conn:
            rows = await store.ledger(conn, tenant.tenant_id, chain.spec.chain_id, tenant.wallet.lower())
        return (
            (await treasury.holdings(tenant.tenant_id))
            if any(r["reference"] == execution_id for r in rows)
            else None
        )

    holdings = await wait_for(booked, timeout_s=20)
    kinds = {(h["holder_kind"], h["token"]) for h in holdings if h["chain_id"] == chain.spec.chain_id}
    assert kinds == {(kind, token) for kind in ("wallet", "executor") for token in tokens | {""}}
    for h in holdings:
        on_chain = await chain_balance(chain, h["holder_address"], h["token"], h["read_block"])
        assert int(h["chain_amount"]) == on_chain, h
        assert int(h["ledger_amount"]) == on_chain and h["status"] == "matched", h
    # The arbitrage's profit sits in the executor and is booked to it as an execution movement.
    async with tenant_transaction(execution_service.pool, tenant.tenant_id) as conn:
        executor = next(h["holder_address"] for h in holdings if h["holder_kind"] == "executor")
        movements = await store.ledger(conn, tenant.tenant_id, chain.spec.chain_id, executor)
        wallet_moves = await store.ledger(conn, tenant.tenant_id, chain.spec.chain_id, tenant.wallet.lower())
    assert any(m["kind"] == "execution" and int(m["amount"]) > 0 for m in movements)
    assert any(
        m["kind"] == "gas" and int(m["amount"]) < 0 and m["reference"] == execution_id for m in wallet_moves
    )

    # WETH sent to the executor by hand: the reconciliation reports it, the ledger does not absorb it.
    alerts: list[execution_pb2.TreasuryDrift] = []

    async def collect(msg: Any) -> None:
        alerts.append(execution_pb2.TreasuryDrift.FromString(msg.data))

    subscription = await bus.nc.subscribe(f"exec.{tenant.tenant_id}.treasury", cb=collect)
    weth = chain.deployment.weth.lower()
    gift = 12_345
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=executor,
        amounts={"WETH": gift},
    )
    await treasury.reconcile_all()
    after = {(h["holder_address"], h["token"]): h for h in await treasury.holdings(tenant.tenant_id)}
    drifting = after[(executor, weth)]
    assert drifting["status"] == "drift"
    assert int(drifting["chain_amount"]) - int(drifting["ledger_amount"]) == gift
    assert all(h["status"] == "matched" for key, h in after.items() if key != (executor, weth))

    async def alerted() -> execution_pb2.TreasuryDrift | None:
        return next((a for a in alerts if a.token_address.lower() == weth), None)

    alert: execution_pb2.TreasuryDrift = await wait_for(alerted, timeout_s=10)
    assert alert.holder_kind == "executor" and int(alert.drift) == gift
    assert alert.holder_address.lower() == executor
    # A second reconciliation of the same drift alerts nothing new.
    await treasury.reconcile_all()
    assert len([a for a in alerts if a.token_address.lower() == weth]) == 1
    await subscription.unsubscribe()
    assert uuid.UUID(alert.event_id)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_withdraw_and_deposit_move_funds_book_them_and_refuse_bad_input(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession],
    devnet: Devnet,
    execution_service: Any,
    risk_service: Any,
    tenancy_service: Any,
) -> None:
    tenant, _ = trader
    chain = devnet.main
    chain_id = chain.spec.chain_id
    treasury = execution_service.core.treasury
    holdings = await treasury.holdings(tenant.tenant_id)
    executor = next(h["holder_address"] for h in holdings if h["holder_kind"] == "executor")
    wallet = tenant.wallet.lower()
    weth = chain.deployment.weth.lower()
    outsider = "0x" + uuid.uuid4().hex[:8] + "00" * 16

    def drifts() -> dict[tuple[str, str], int]:
        return {
            (h["holder_address"], h["token"]): int(h["chain_amount"]) - int(h["ledger_amount"])
            for h in holdings
        }

    before_drift = drifts()
    head = await chain.client.block_number()
    nonce = int(await chain.client.request("eth_getTransactionCount", [tenant.wallet, "latest"]), 16)
    executor_weth = await chain_balance(chain, executor, weth, head)
    assert executor_weth > 0  # the arbitrage profit (and the hand transfer) of the first test

    def withdraw(**fields: Any) -> execution_pb2.WithdrawRequest:
        values: dict[str, Any] = {
            "idempotency_key": str(uuid.uuid4()),
            "chain_id": chain_id,
            "wallet_address": tenant.wallet,
            "token_address": chain.deployment.weth,
            "amount": str(executor_weth),
        }
        values.update(fields)
        return execution_pb2.WithdrawRequest(**values)

    # Bad input: each refused naming its field, and nothing moves.
    zero = await rpc_error(tenant.stub.Withdraw(withdraw(amount="0")))
    assert zero.code() == grpc.StatusCode.INVALID_ARGUMENT and "amount" in (zero.details() or "")
    outside = await rpc_error(tenant.stub.Withdraw(withdraw(to_address=outsider)))
    assert outside.code() == grpc.StatusCode.INVALID_ARGUMENT and "to_address" in (outside.details() or "")
    too_much = await rpc_error(tenant.stub.Withdraw(withdraw(amount=str(executor_weth + 1))))
    assert too_much.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"amount {executor_weth + 1} exceeds" in (too_much.details() or "")
    foreign = await rpc_error(tenant.stub.Withdraw(withdraw(wallet_address=outsider)))
    assert foreign.code() == grpc.StatusCode.NOT_FOUND and outsider in (foreign.details() or "")
    deposit_too_much = await rpc_error(
        tenant.stub.Deposit(
            execution_pb2.DepositRequest(
                idempotency_key=str(uuid.uuid4()),
                chain_id=chain_id,
                wallet_address=tenant.wallet,
                amount=str(10**30),
            )
        )
    )
    assert deposit_too_much.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await chain_balance(chain, executor, weth, await chain.client.block_number()) == executor_weth
    assert int(await chain.client.request("eth_getTransactionCount", [tenant.wallet, "latest"]), 16) == nonce

    async with block_production(chain):
        # The executor's WETH to the wallet; a retry with the same key moves nothing again.
        request = withdraw()
        first = (await tenant.stub.Withdraw(request)).transfer
        again = (await tenant.stub.Withdraw(request)).transfer
        # One ETH from the wallet into the executor's inventory.
        deposit = (
            await tenant.stub.Deposit(
                execution_pb2.DepositRequest(
                    idempotency_key=str(uuid.uuid4()),
                    chain_id=chain_id,
                    wallet_address=tenant.wallet,
                    amount=str(ETH),
                )
            )
        ).transfer
        # Once risk allow-lists the outsider, a withdrawal may go there.
        async with clients(tenancy_service)(
            tenant.owner_key, risk=f"127.0.0.1:{risk_service.grpc_port}"
        ) as owner:
            await owner.risk.UpdateLimits(
                risk_pb2.UpdateLimitsRequest(
                    limits=common_pb2.RiskLimits(withdrawal_allowlist=[outsider]),
                    update_mask=field_mask_pb2.FieldMask(paths=["withdrawal_allowlist"]),
                )
            )
        out = (
            await tenant.stub.Withdraw(withdraw(token_address="", amount=str(ETH // 4), to_address=outsider))
        ).transfer
    assert (
        first.status == "included"
        and again.transfer_id == first.transfer_id
        and again.tx_hash == first.tx_hash
    )
    assert (deposit.status, out.status) == ("included", "included")
    head = await chain.client.block_number()
    assert await chain_balance(chain, executor, weth, head) == 0
    assert await chain_balance(chain, executor, "", head) == ETH - ETH // 4
    assert await chain_balance(chain, outsider, "", head) == ETH // 4

    holdings = await treasury.holdings(tenant.tenant_id)
    for h in holdings:
        assert int(h["chain_amount"]) == await chain_balance(
            chain, h["holder_address"], h["token"], h["read_block"]
        ), h
    # The transfers are booked exactly: whatever drift there was before is still all there is.
    assert drifts() == before_drift
    async with tenant_transaction(execution_service.pool, tenant.tenant_id) as conn:
        moves = await store.ledger(conn, tenant.tenant_id, chain_id, executor)
        wallet_moves = await store.ledger(conn, tenant.tenant_id, chain_id, wallet)
    assert {
        (m["kind"], m["token"], int(m["amount"])) for m in moves if m["reference"] == first.transfer_id
    } == {("withdrawal", weth, -executor_weth)}
    assert ("withdrawal", weth, executor_weth) in {
        (m["kind"], m["token"], int(m["amount"])) for m in wallet_moves if m["reference"] == first.transfer_id
    }
    assert ("deposit", "", ETH) in {(m["kind"], m["token"], int(m["amount"])) for m in moves}


ZERO = "0x" + "00" * 20


async def test_positions_equal_the_chain_per_holder_and_wallets_list_their_live_executor(
    trader: tuple[TenantSession, execution_pb2.ExecutionSession],
    devnet: Devnet,
    execution_service: Any,
    analytics_service: Any,
    analytics_channel: Any,
) -> None:
    """GetPositions (analytics) asks execution's treasury over rpc.execution.treasury_holdings:
    every token of the wallet and of its executor equals balanceOf / eth_getBalance at the block
    the position names, to the wei, and unpriced is explicit (no value), never 0."""
    tenant, _ = trader
    chain = devnet.main
    chain_id = chain.spec.chain_id
    wallet = tenant.wallet.lower()
    channel, md = analytics_channel(tenant.tenant_id, Role.VIEWER)
    async with channel:
        portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        got = await portfolio.GetPositions(
            portfolio_pb2.GetPositionsRequest(chain_id=chain_id, include_zero=True), metadata=md
        )
        bad = await rpc_error(
            portfolio.GetPositions(portfolio_pb2.GetPositionsRequest(wallet_address="nope"), metadata=md)
        )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "wallet_address" in (bad.details() or "")
    tokens = {t.address.lower() for t in chain.deployment.tokens} | {ZERO}
    assert {p.token.address.lower() for p in got.positions} == tokens
    executors = {p.executor_address.lower() for p in got.positions}
    assert len(executors) == 1 and "" not in executors
    (executor,) = executors
    for p in got.positions:
        token = "" if p.token.address == ZERO else p.token.address.lower()
        assert p.wallet_address == wallet and p.token.symbol and p.token.chain_id == chain_id
        assert int(p.wallet_balance) == await chain_balance(chain, wallet, token, p.as_of_block), p
        assert int(p.executor_balance) == await chain_balance(chain, executor, token, p.as_of_block), p
        assert int(p.balance) == int(p.wallet_balance) + int(p.executor_balance)
        assert p.unpriced == (not p.HasField("notional_value")) and p.unpriced == (not p.price_source)
        assert bool(p.unpriced_reason) == p.unpriced
    weth = next(p for p in got.positions if p.token.address.lower() == chain.deployment.weth.lower())
    # The withdrawal test before this one moved all the executor's WETH to the wallet.
    assert weth.token.symbol == "WETH" and int(weth.executor_balance) == 0 < int(weth.wallet_balance)
    assert (got.unpriced_count == 0) == got.HasField("total_notional_value")

    listed = await tenant.stub.ListWallets(execution_pb2.ListWalletsRequest())
    (listed_wallet,) = [w for w in listed.wallets if w.address.lower() == wallet]
    live = [e for e in listed_wallet.executors if e.chain_id == chain_id]
    assert [(e.address.lower(), e.liveness, e.problem) for e in live] == [
        (executor, execution_pb2.EXECUTOR_LIVENESS_LIVE, "")
    ]
