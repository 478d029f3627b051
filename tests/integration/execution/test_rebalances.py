"""Rebalances executed (issue 9, item 8), on real NATS, PostgreSQL, anvil, risk and tenancy: a
RebalanceCommand on exec.<tenant>.rebalance (as PortfolioService.Rebalance sends it) is planned
from the wallet's chain balances and the one price source, each trade checked by risk and sent by
the pipeline; the rebalance reaches COMPLETED with both trades on chain, the wallet moved by
exactly what the trades spent (gas included) and the treasury's holdings equal balanceOf. A
command delivered again trades nothing more. A trade risk rejects fails the rebalance with risk's
reason and sends nothing; a target the price source cannot price fails it naming the token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas.risk.v1 import risk_pb2
from mevaas_core.auth import Role
from mevaas_core.bus import Bus
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.execution import ExecutionHarness, block_production, wait_for
from tests.integration.execution.cross_chain import holdings
from tests.integration.execution.helpers import TenantSession, clients, tenant_with_wallet

pytestmark = pytest.mark.integration

S = common_pb2
P = portfolio_pb2
ETHER = 10**18
FINAL = (P.REBALANCE_STATUS_COMPLETED, P.REBALANCE_STATUS_FAILED)


def target(chain: DevnetChain, symbol: str, weight: str) -> S.RebalanceTarget:
    token = chain.deployment.token(symbol)
    return S.RebalanceTarget(
        token=S.Token(chain_id=chain.spec.chain_id, address=token.address, symbol=symbol),
        target_weight_percent=S.Decimal(value=weight),
    )


async def send(
    bus: Bus,
    tenant: TenantSession,
    targets: list[S.RebalanceTarget],
    *,
    rebalance_id: str = "",
    msg_id: str = "",
) -> events_pb2.RebalanceCommand:
    now = Timestamp()
    now.GetCurrentTime()
    command = events_pb2.RebalanceCommand(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant.tenant_id,
        occurred_at=now,
        rebalance_id=rebalance_id or str(uuid.uuid4()),
        targets=targets,
        max_slippage_bps=100,
        wallet_address=tenant.wallet,
    )
    await bus.publish(
        f"exec.{tenant.tenant_id}.rebalance",
        command,
        msg_id=msg_id or command.rebalance_id,
        tenant_id=tenant.tenant_id,
    )
    return command


async def final(tenant: TenantSession, chain: DevnetChain, rebalance_id: str) -> P.RebalanceResult:
    async def done() -> P.RebalanceResult | None:
        try:
            got = await tenant.stub.GetRebalance(execution_pb2.GetRebalanceRequest(rebalance_id=rebalance_id))
        except Exception:  # NOT_FOUND until the command is consumed
            return None
        return got.result if got.result.status in FINAL else None

    async with block_production(chain, block_time_s=0.3):
        result: P.RebalanceResult = await wait_for(done, timeout_s=90)
    return result


@asynccontextmanager
async def funded_tenant(
    harness: ExecutionHarness, tenancy_service: Any, chain: DevnetChain, weth: int, **runtime: Any
) -> AsyncIterator[tuple[Any, TenantSession]]:
    """A running execution (with ``runtime`` settings) and a new tenant whose wallet holds
    ``weth``; the tenant's client closed and the runtime stopped after."""
    started = await harness.start(**runtime)
    tenant = await tenant_with_wallet(clients(tenancy_service), started, chain)
    try:
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=tenant.wallet,
            amounts={"WETH": weth},
        )
        yield started, tenant
    finally:
        await tenant.client.close()
        await harness.stop(started)


async def commands_consumed(bus: Bus) -> bool:
    info = await bus.js.consumer_info("EXEC", "execution-rebalances")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_a_rebalance_with_two_trades_completes_on_chain_once(
    execution_harness: ExecutionHarness, tenancy_service: Any, risk_service: Any, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.chains[0]
    async with funded_tenant(execution_harness, tenancy_service, chain, 10 * ETHER) as (runtime, tenant):
        before = await holdings(chain, tenant.wallet)
        targets = [target(chain, "WETH", "60"), target(chain, "USDC", "25"), target(chain, "DAI", "15")]
        command = await send(bus, tenant, targets)
        # The same command again (another message: JetStream's dedupe does not hide it).
        await send(
            bus, tenant, targets, rebalance_id=command.rebalance_id, msg_id=f"{command.rebalance_id}:again"
        )
        result = await final(tenant, chain, command.rebalance_id)
        assert result.status == P.REBALANCE_STATUS_COMPLETED, result.reason
        assert len(result.trades) == 2 and len(result.execution_ids) == 2
        weth, usdc, dai = (chain.deployment.token(s).address.lower() for s in ("WETH", "USDC", "DAI"))
        assert [(t.token_in.lower(), t.token_out.lower()) for t in result.trades] == [
            (weth, usdc),
            (weth, dai),
        ]
        executions = [
            (await tenant.stub.GetExecution(execution_pb2.GetExecutionRequest(execution_id=e))).execution
            for e in result.execution_ids
        ]
        for execution in executions:
            assert execution.status == S.EXECUTION_RESULT_STATUS_INCLUDED, execution.error
            receipt = await chain.client.request("eth_getTransactionReceipt", [execution.tx_hashes[-1]])
            assert int(receipt["status"], 16) == 1
        after = await holdings(chain, tenant.wallet)
        # The wallet moved by exactly what the trades spent, and got at least their minimums.
        spent = sum(int(t.amount_in) for t in result.trades)
        assert after["WETH"] - before["WETH"] == -spent
        assert after["USDC"] - before["USDC"] >= int(result.trades[0].min_amount_out) > 0
        assert after["DAI"] - before["DAI"] >= int(result.trades[1].min_amount_out) > 0
        assert after["native"] - before["native"] == -sum(int(e.gas_cost) for e in executions)
        # 60/25/15 of the portfolio: 40% of the WETH was sold (at the mid prices the pools gave
        # USDC and DAI, within a fraction of a percent of the 1 USD they are pegged to).
        assert 399 * ETHER // 100 < spent <= 4 * ETHER
        # The treasury's holdings are balanceOf, to the wei.
        read = await runtime.core.holdings.read(
            tenant.tenant_id, chain_id=chain.spec.chain_id, wallet=tenant.wallet
        )
        by_token = {h.token.symbol: int(h.wallet_balance) for h in read}
        for symbol, balance in after.items():
            assert by_token["ETH" if symbol == "native" else symbol] == balance, symbol
        listed = await tenant.stub.ListRebalances(execution_pb2.ListRebalancesRequest())
        assert [r.rebalance_id for r in listed.rebalances] == [command.rebalance_id]
        # Risk reserved each trade's WETH and released it when the trade was final; a trade's gas
        # is not booked as strategy PnL.
        async with clients(tenancy_service)(
            tenant.owner_key, risk=f"127.0.0.1:{risk_service.grpc_port}"
        ) as owner:

            async def released() -> risk_pb2.GetExposureResponse | None:
                got = await owner.risk.GetExposure(risk_pb2.GetExposureRequest())
                open_ = sum(e.open_reservations for e in got.exposures) + got.concurrent_executions
                return None if open_ else got

            exposure: risk_pb2.GetExposureResponse = await wait_for(released, timeout_s=30)
        assert all(int(e.realized_pnl_today or 0) == 0 for e in exposure.exposures), exposure

        # Delivered once more after it completed: nothing changes, nothing trades.
        await send(
            bus, tenant, targets, rebalance_id=command.rebalance_id, msg_id=f"{command.rebalance_id}:late"
        )
        await wait_for(lambda: commands_consumed(bus), timeout_s=30)
        again = await tenant.stub.GetRebalance(
            execution_pb2.GetRebalanceRequest(rebalance_id=command.rebalance_id)
        )
        assert again.result == result
        trades = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
        assert sorted(e.execution_id for e in trades.executions) == sorted(result.execution_ids)
        assert await holdings(chain, tenant.wallet) == after


async def test_a_trade_risk_rejects_fails_the_rebalance_and_sends_nothing(
    execution_harness: ExecutionHarness, tenancy_service: Any, risk_service: Any, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.chains[0]
    async with funded_tenant(execution_harness, tenancy_service, chain, 2 * ETHER) as (_runtime, tenant):
        weth = chain.deployment.token("WETH").address
        async with clients(tenancy_service)(
            tenant.owner_key, risk=f"127.0.0.1:{risk_service.grpc_port}"
        ) as owner:
            await owner.risk.UpdateLimits(
                risk_pb2.UpdateLimitsRequest(
                    limits=S.RiskLimits(
                        denomination=S.Token(chain_id=chain.spec.chain_id, address=weth, decimals=18),
                        max_position=str(ETHER // 10),
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["denomination", "max_position"]),
                )
            )
        before = await holdings(chain, tenant.wallet)
        command = await send(bus, tenant, [target(chain, "WETH", "50"), target(chain, "USDC", "50")])
        result = await final(tenant, chain, command.rebalance_id)
        assert result.status == P.REBALANCE_STATUS_FAILED
        assert "trade 0 rejected by risk" in result.reason, result.reason
        assert f"> max_position {ETHER // 10}" in result.reason, result.reason
        assert len(result.trades) == 1 and not result.execution_ids
        assert await holdings(chain, tenant.wallet) == before


async def test_an_unpriceable_target_fails_naming_the_token_and_sends_nothing(
    execution_harness: ExecutionHarness, tenancy_service: Any, risk_service: Any, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.chains[0]
    weth, link = (chain.deployment.token(s).address for s in ("WETH", "LINK"))
    # Only a configured table prices here, and it knows WETH only: LINK cannot be priced.
    prices = f"{chain.spec.chain_id}:{weth}=3000"
    async with funded_tenant(
        execution_harness, tenancy_service, chain, ETHER, price_sources="fixed", price_table=prices
    ) as (_runtime, tenant):
        before = await holdings(chain, tenant.wallet)
        command = await send(bus, tenant, [target(chain, "WETH", "50"), target(chain, "LINK", "50")])
        result = await final(tenant, chain, command.rebalance_id)
        assert result.status == P.REBALANCE_STATUS_FAILED
        assert (
            f"target token LINK ({chain.spec.chain_id}:{link.lower()}) cannot be priced" in result.reason
        ), result.reason
        assert not result.trades and not result.execution_ids
        assert await holdings(chain, tenant.wallet) == before
        listed = await tenant.stub.ListExecutions(execution_pb2.ListExecutionsRequest())
        assert not listed.executions


async def test_a_rebalance_through_the_portfolio_api_completes_with_the_same_status_in_both_services(
    execution_harness: ExecutionHarness,
    tenancy_service: Any,
    risk_service: Any,
    analytics_channel: Any,
    devnet: Devnet,
) -> None:
    """PortfolioService.Rebalance (analytics) -> execution -> risk -> chain: both trades land and
    analytics' GetRebalance shows what execution's does (status, trades, executions)."""
    chain = devnet.chains[0]
    async with funded_tenant(execution_harness, tenancy_service, chain, 5 * ETHER) as (_runtime, tenant):
        channel, md = analytics_channel(tenant.tenant_id, Role.TRADER)
        async with channel:
            portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)
            accepted = await portfolio.Rebalance(
                P.RebalanceRequest(
                    idempotency_key=str(uuid.uuid4()),
                    targets=[
                        target(chain, "WETH", "50"),
                        target(chain, "USDC", "30"),
                        target(chain, "DAI", "20"),
                    ],
                    max_slippage_bps=100,
                ),
                metadata=md,
            )
            assert accepted.result.status == P.REBALANCE_STATUS_SUBMITTED
            rebalance_id = accepted.result.rebalance_id
            done = await final(tenant, chain, rebalance_id)
            assert done.status == P.REBALANCE_STATUS_COMPLETED, done.reason
            assert len(done.trades) == 2 and len(done.execution_ids) == 2
            for execution_id in done.execution_ids:
                execution = (
                    await tenant.stub.GetExecution(
                        execution_pb2.GetExecutionRequest(execution_id=execution_id)
                    )
                ).execution
                receipt = await chain.client.request("eth_getTransactionReceipt", [execution.tx_hashes[-1]])
                assert int(receipt["status"], 16) == 1 and execution.rebalance_id == rebalance_id

            async def shown() -> P.RebalanceResult | None:
                got = await portfolio.GetRebalance(
                    P.GetRebalanceRequest(rebalance_id=rebalance_id), metadata=md
                )
                return got.result if got.result.status == P.REBALANCE_STATUS_COMPLETED else None

            seen: P.RebalanceResult = await wait_for(shown, timeout_s=30)
            assert list(seen.trades) == list(done.trades) and seen.execution_ids == done.execution_ids
            assert seen.targets == accepted.result.targets


async def test_a_command_of_an_unknown_tenant_is_dropped_not_retried_forever(
    execution_harness: ExecutionHarness, tenancy_service: Any, risk_service: Any, bus: Bus
) -> None:
    # Tenancy knows no such tenant: the command can be recorded nowhere, and a redelivery loop
    # would hold every later command behind it in the queue's pending count.
    runtime = await execution_harness.start()
    try:
        tenant_id = f"gone-{uuid.uuid4().hex[:8]}"
        now = Timestamp()
        now.GetCurrentTime()
        command = events_pb2.RebalanceCommand(
            event_id=str(uuid.uuid4()), tenant_id=tenant_id, occurred_at=now, rebalance_id=str(uuid.uuid4())
        )
        await bus.publish(
            f"exec.{tenant_id}.rebalance", command, msg_id=command.rebalance_id, tenant_id=tenant_id
        )
        await wait_for(lambda: commands_consumed(bus), timeout_s=30)
    finally:
        # A runtime left running takes every later test's risk decisions (and drops them).
        await execution_harness.stop(runtime)
