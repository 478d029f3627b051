"""Liquidations end to end through the running fleet on the devnet's real Aave V3 market
(tenancy, strategy, risk, execution, each its own runtime, over NATS and gRPC): a PriceFeed drop
puts one borrower under HF 1; the tenant's liquidation session finds it, risk approves, the
executor contract liquidates it in one transaction, and

* the realised profit is the figure Aave's and the pairs' integer math give on the chain state
  the transaction met, and it is the strategy's predicted profit to the wei: the liquidation is
  sized to move the same amounts at every block time of a window, so time passing changes
  nothing, and any other state change in between must be a recorded transaction's;
* the borrower's debt and collateral changed exactly as Aave's math says;
* inventory-financed (the debt is the strategy's base token, held by the executor) and
  flash-financed (the executor holds none of the debt token before);
* a position repaid before the liquidation lands is dropped with the reason, nothing is sent,
  nothing moves, the session keeps running and risk releases the reservation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas_chain import abi
from mevaas_chain.executor import decode_liquidated
from mevaas_chain.lending.math import account_data, ray_div, ray_mul
from mevaas_core.bus import Bus
from mevaas_execution.domain.planning import gas_rate, in_profit_token
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import MAX_UINT, mint_tokens
from mevaas_sdk import MevaasClient
from mevaas_strategies.liquidation import STEADY_WINDOW_S
from tests.fixtures.devnet import send
from tests.fixtures.e2e import (
    FINAL,
    collect_opportunities,
    create_strategy,
    default_wallet,
    executor_of,
    reservations_released,
    start_running,
    tenant_of,
)
from tests.fixtures.execution import block_production, fund, wait_for
from tests.fixtures.strategy import strategy_config
from tests.integration.e2e import liquidation_chain as lc

pytestmark = pytest.mark.integration

S = common_pb2
STABLES = ("USDC", "USDT", "DAI")
# The block time the fleet's strategy engine assumes for the devnet, whose configuration names none
# (``chain.config`` here follows the test's block production, not the engine's).
ENGINE_BLOCK_TIME_S = 12


@dataclass
class Session:
    client: MevaasClient
    chain: DevnetChain
    tenant_id: str
    strategy_id: str
    session_id: str
    wallet: str
    executor: str
    opportunities: dict[str, events_pb2.Opportunity]

    @property
    def execution(self) -> execution_pb2_grpc.ExecutionServiceAsyncStub:
        stub: execution_pb2_grpc.ExecutionServiceAsyncStub = self.client.stub(
            "execution", execution_pb2_grpc.ExecutionServiceStub
        )
        return stub

    async def executions(self) -> list[execution_pb2.Execution]:
        listed = await self.execution.ListExecutions(
            execution_pb2.ListExecutionsRequest(session_id=self.session_id)
        )
        return list(listed.executions)


async def start_session(
    client: MevaasClient, chain: DevnetChain, bus: Bus, base: str, delay_ms: int = 0
) -> tuple[Session, Any]:
    """A liquidation strategy in ``base`` running on a funded wallet; collects its opportunities."""
    wallet = await default_wallet(client)
    tenant_id = await tenant_of(client)
    await fund(chain, wallet.address)
    # Within the plan's allocation cap: $1M of a stablecoin, or 100 WETH.
    units = (10**6 if base in STABLES else 100) * 10 ** chain.config.token(base).decimals
    config = strategy_config(
        chain.config,
        name=f"liq-{uuid.uuid4().hex[:8]}",
        type_=S.STRATEGY_TYPE_LIQUIDATION,
        base=base,
        symbols=("WETH", *STABLES),
        allocation=units,
        max_position=units,
    )
    config.parameters.execution_settings.execution_delay_ms = delay_ms
    strategy = await create_strategy(client, config)
    collected = await collect_opportunities(bus, tenant_id, strategy.strategy_id)
    # Activation deploys the executor: blocks must be mined meanwhile.
    async with block_production(chain, block_time_s=0.3):
        session_id = await start_running(client, strategy.strategy_id)
    executor = (await executor_of(client, wallet.address, chain.spec.chain_id)).lower()
    session = Session(
        client, chain, tenant_id, strategy.strategy_id, session_id, wallet.address, executor, collected.items
    )
    return session, collected.subscription


async def stop(session: Session) -> None:
    await session.execution.StopExecution(execution_pb2.StopExecutionRequest(session_id=session.session_id))


async def pinned(chain: DevnetChain, price: int) -> None:
    assert chain.lending is not None
    await chain.lending.oracle.pin("WETH", lc.usd(price), chain.transact)


async def restore(chain: DevnetChain) -> None:
    assert chain.lending is not None
    await chain.lending.oracle.pin("WETH", Decimal(chain.spec.weth_usd_price), chain.transact)
    chain.lending.oracle.unpin("WETH")


async def check_landed(
    session: Session, included: execution_pb2.Execution, target: lc.Target, competitor: str | None = None
) -> int:
    """Every figure of a landed liquidation against the chain; returns its realised gross profit.
    ``competitor``: the test's own transaction that moved the route's pools in between."""
    chain = session.chain
    opportunity = session.opportunities[included.opportunity_id]
    action = opportunity.liquidation
    assert action.borrower.lower() == target.borrower.lower()
    receipt = await chain.client.get_receipt(included.tx_hashes[0])
    assert receipt is not None and int(receipt["status"], 16) == 1
    block = int(receipt["blockNumber"], 16)
    header, parent = await chain.client.get_block(block), await chain.client.get_block(block - 1)
    detected = await chain.client.get_block(opportunity.detected_block)
    assert header is not None and parent is not None and detected is not None
    at = int(header["timestamp"], 16)
    event = decode_liquidated(receipt, session.executor)
    assert event is not None

    # What the transaction met (the state after the previous block, at its block's time), with
    # Aave's and the pairs' integer math, is exactly what the executor made.
    met = await lc.aave_state(chain, target.borrower, parent["hash"])
    sized = lc.sizing(met, action, at)
    met_reserves = await lc.route_reserves(chain, action, block - 1)
    met_profit = lc.profit(action, sized, met_reserves, met.flash_loan_premium)
    assert event.profit == met_profit
    assert (event.debt_repaid, event.collateral_received) == (
        sized.debt_to_cover,
        sized.collateral_to_liquidator,
    )
    call = lc.liquidation_call(receipt, action.pool)
    assert (call.debt_to_cover, call.collateral) == (sized.debt_to_cover, sized.collateral_to_liquidator)
    assert call.liquidator.lower() == session.executor.lower() and not call.receive_a_token

    # The strategy's prediction is the same math on the state it saw (sized at its head's time,
    # or the next block's when only that is under 1).
    seen = await lc.aave_state(chain, target.borrower, detected["hash"])
    seen_at = int(detected["timestamp"], 16)
    if not account_data(seen.position, seen.reserves, seen.prices, seen_at).liquidatable:
        seen_at += ENGINE_BLOCK_TIME_S
    seen_reserves = await lc.route_reserves(chain, action, opportunity.detected_block)
    predicted_sizing = lc.sizing(seen, action, seen_at)
    assert (predicted_sizing.debt_to_cover, predicted_sizing.collateral_to_liquidator) == (
        int(action.debt_to_cover),
        int(action.expected_collateral),
    )
    predicted = lc.profit(action, predicted_sizing, seen_reserves, seen.flash_loan_premium)
    assert predicted == int(opportunity.expected_profit)
    # Realised is predicted, to the wei: time alone (within the steady window it was sized for)
    # changes nothing. Anything else that moved in between (the pair's prices, the borrower's
    # balances, the route's pools) must be a recorded transaction's doing, and the figures then
    # are the ones checked above on the state that transaction left.
    assert seen_at <= at <= seen_at + STEADY_WINDOW_S
    moved = lc.moved(seen, met, seen_reserves, met_reserves, action)
    if competitor is not None:
        assert moved == ["pools"]
    if moved:
        competing = await lc.competing(chain, action, opportunity.detected_block + 1, block, receipt)
        assert competing, f"{moved} moved between detection and inclusion, and no transaction did it"
        if competitor is not None:
            assert competitor in competing and event.profit != int(opportunity.expected_profit)
    else:
        assert sized.outcome == predicted_sizing.outcome
        assert event.profit == int(opportunity.expected_profit)

    # Net of gas, at the rate the opportunity was priced at, is what execution reports.
    rate = gas_rate(opportunity, chain.config)
    assert int(included.realized_profit) == event.profit - in_profit_token(int(included.gas_cost), rate)
    assert (
        await lc.balance(chain, action.debt_asset.address, session.executor, block)
        - await lc.balance(chain, action.debt_asset.address, session.executor, block - 1)
        == event.profit
    )

    # The borrower: debt burnt and collateral moved (to the executor and the protocol's fee) as
    # scaled amounts at the block's indexes.
    debt_reserve, collateral_reserve = met.reserves[target.debt], met.reserves[target.collateral]
    debt_index, income_index = debt_reserve.normalized_debt(at), collateral_reserve.normalized_income(at)
    debt_after = ray_mul(
        met.position.scaled_debt[target.debt] - ray_div(sized.debt_to_cover, debt_index), debt_index
    )
    scaled_collateral = met.position.scaled_collateral[target.collateral]
    burnt = ray_div(sized.collateral_to_liquidator, income_index) + ray_div(sized.protocol_fee, income_index)
    collateral_after = ray_mul(scaled_collateral - burnt, income_index)
    assert await lc.balance(chain, debt_reserve.variable_debt_token, target.borrower, block) == debt_after
    assert await lc.balance(chain, collateral_reserve.a_token, target.borrower, block) == collateral_after
    assert debt_after < met.position.debt_balance(debt_reserve, at)
    return event.profit


async def run_liquidation(client: MevaasClient, devnet: Devnet, bus: Bus, *, flash: bool) -> None:
    chain = devnet.main
    target = await lc.lone_target(chain, frozenset(chain.config.token(s).address for s in STABLES))
    debt_symbol = next(t.symbol for t in chain.deployment.tokens if t.address == target.debt)
    # Inventory: the debt is the base token, held by the executor. Flash: the base is WETH.
    session, subscription = await start_session(client, chain, bus, "WETH" if flash else debt_symbol)
    stopped = False
    try:
        if not flash:
            await mint_tokens(
                chain.client,
                chain.transact,
                chain.deployment,
                deployer=chain.deployer,
                to=session.executor,
                amounts={debt_symbol: 10**6 * 10 ** chain.config.token(debt_symbol).decimals},
            )
        async with block_production(chain, block_time_s=0.3):
            # The strategy engine learns of the session from exec.<tenant>.session: a block or two.
            loaded_from = await chain.client.block_number() + 2

            async def next_blocks() -> bool:
                return await chain.client.block_number() >= loaded_from

            await wait_for(next_blocks)
            held_before = await lc.balance(chain, target.debt, session.executor)
            await pinned(chain, target.price)

            async def landed() -> execution_pb2.Execution | None:
                for e in await session.executions():
                    opp = session.opportunities.get(e.opportunity_id)
                    if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED and opp is not None:
                        assert opp.liquidation.borrower.lower() == target.borrower.lower()
                        return e
                return None

            try:
                included: execution_pb2.Execution = await wait_for(landed, timeout_s=90)
            except TimeoutError:
                executions = await session.executions()
                raise AssertionError(
                    f"nothing landed: {[(e.status, e.error) for e in executions][:5]}; "
                    f"{len(session.opportunities)} opportunities"
                ) from None
            opportunity = session.opportunities[included.opportunity_id]
            expected = events_pb2.FINANCING_INVENTORY if not flash else None
            if flash:
                assert opportunity.liquidation.financing in (
                    events_pb2.FINANCING_FLASH_LOAN,
                    events_pb2.FINANCING_FLASH_SWAP,
                )
                receipt = await chain.client.get_receipt(included.tx_hashes[0])
                assert receipt is not None
                block = int(receipt["blockNumber"], 16)
                assert held_before == 0
                assert await lc.balance(chain, target.debt, session.executor, block - 1) == 0
            else:
                assert opportunity.liquidation.financing == expected
            gross = await check_landed(session, included, target)
            assert gross > 0
            await stop(session)
            stopped = True
            await reservations_released(client)
    finally:
        await subscription.unsubscribe()
        if not stopped:
            await stop(session)
        await restore(chain)
    status = await session.execution.GetExecutionStatus(
        execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
    )
    assert status.counts.included == 1
    assert int(status.realized_profit) == int(included.realized_profit)


async def test_inventory_financed_liquidation_end_to_end(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    await run_liquidation(fleet_client, devnet, bus, flash=False)


async def test_flash_financed_liquidation_end_to_end(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    await run_liquidation(fleet_client, devnet, bus, flash=True)


async def test_a_competing_swap_before_the_liquidation_lands_is_the_recorded_difference(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.main
    target = await lc.lone_target(chain, frozenset(chain.config.token(s).address for s in STABLES))
    debt_symbol = next(t.symbol for t in chain.deployment.tokens if t.address == target.debt)
    # Execution waits 5 s after the decision: time for a competing transaction to land first.
    # No blocks but the test's meanwhile: the detection's (the price drop), the competitor's,
    # then the one the liquidation lands in, within its deadline (two blocks).
    session, subscription = await start_session(fleet_client, chain, bus, "WETH", delay_ms=5000)
    stopped = False
    try:
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=chain.deployer,
            amounts={debt_symbol: 10**9 * 10 ** chain.config.token(debt_symbol).decimals},
        )
        async with block_production(chain, block_time_s=0.3):
            loaded_from = await chain.client.block_number() + 2

            async def next_blocks() -> bool:
                return await chain.client.block_number() >= loaded_from

            await wait_for(next_blocks)
        # Clearly under 1: nothing but the competitor's block comes before the liquidation's.
        await pinned(chain, target.clearly_under)

        async def seen() -> events_pb2.Opportunity | None:
            return next(
                (
                    o
                    for o in session.opportunities.values()
                    if o.liquidation.borrower.lower() == target.borrower.lower()
                ),
                None,
            )

        first: events_pb2.Opportunity = await wait_for(seen, timeout_s=30)
        # Someone moves the pool the collateral is sold into: a donation of the debt token to
        # it, synced (a small one, within the strategy's slippage tolerance).
        hop = first.liquidation.collateral_swap[-1]
        competitor, competed_at = await lc.donate(chain, hop.pool, target.debt, share=10_000)

        async def submitted() -> list[execution_pb2.Execution] | None:
            executions = await session.executions()
            return executions if any(e.tx_hashes for e in executions) else None

        try:
            await wait_for(submitted, timeout_s=30)
        except TimeoutError:
            executions = await session.executions()
            raise AssertionError(
                f"nothing submitted: {[(e.status, e.error) for e in executions]}; "
                f"opportunities at {sorted(o.detected_block for o in session.opportunities.values())}, "
                f"donation at {competed_at}"
            ) from None

        async def landed() -> execution_pb2.Execution | None:
            for e in await session.executions():
                if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED:
                    return e
            return None

        async with block_production(chain, block_time_s=0.3):
            included: execution_pb2.Execution = await wait_for(landed, timeout_s=60)
            # The liquidation that landed was decided before the donation.
            assert session.opportunities[included.opportunity_id].detected_block < competed_at
            await check_landed(session, included, target, competitor)
            await stop(session)
            stopped = True
            # (Blocks go on: the later opportunities' executions settle by their deadlines.)
            await reservations_released(fleet_client)
    finally:
        await subscription.unsubscribe()
        if not stopped:
            await stop(session)
        await restore(chain)


async def test_a_position_repaid_before_the_liquidation_lands_is_dropped_and_nothing_is_lost(
    fleet_client: MevaasClient, devnet: Devnet, bus: Bus
) -> None:
    chain = devnet.main
    assert chain.lending is not None
    target = await lc.lone_target(chain, frozenset(chain.config.token(s).address for s in STABLES))
    debt_symbol = next(t.symbol for t in chain.deployment.tokens if t.address == target.debt)
    market_pool = chain.config.contracts["aave_pool"]
    # Execution waits 5 s after the decision (no blocks are mined meanwhile but the repay's), so
    # the repay below lands before its simulation.
    session, subscription = await start_session(fleet_client, chain, bus, "WETH", delay_ms=5000)
    try:
        # The borrower gets the tokens to repay and approves the pool now, so only the repay
        # itself is left for after the opportunity.
        await chain.client.request("anvil_impersonateAccount", [target.borrower])
        await fund(chain, target.borrower)
        debt_token = chain.config.token(debt_symbol)
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=target.borrower,
            amounts={debt_symbol: 10**6 * 10**debt_token.decimals},
        )
        await send(
            chain,
            target.borrower,
            target.debt,
            abi.encode_call("approve(address,uint256)", market_pool, MAX_UINT),
        )
        head = await chain.client.get_block("latest")
        assert head is not None
        reserve = (await lc.aave_state(chain, target.borrower, head["hash"])).reserves[target.collateral]
        scaled_before = await _scaled(chain, reserve.a_token, target.borrower)
        wallet_eth = int(await chain.client.request("eth_getBalance", [session.wallet, "latest"]), 16)
        # Clearly under 1: no blocks come to tip it over while the engine evaluates this one.
        await pinned(chain, target.clearly_under)

        async def seen() -> events_pb2.Opportunity | None:
            return next(
                (
                    o
                    for o in session.opportunities.values()
                    if o.liquidation.borrower.lower() == target.borrower.lower()
                ),
                None,
            )

        await wait_for(seen, timeout_s=30)
        repay = abi.encode_call(
            "repay(address,uint256,uint256,address)", target.debt, MAX_UINT, 2, target.borrower
        )
        receipt = await send(chain, target.borrower, market_pool, repay)
        assert int(receipt["status"], 16) == 1

        async def settled() -> list[execution_pb2.Execution] | None:
            executions = await session.executions()
            return executions if executions and all(e.status in FINAL for e in executions) else None

        executions: list[execution_pb2.Execution] = await wait_for(settled, timeout_s=60)
        dropped = [e for e in executions if e.status == S.EXECUTION_RESULT_STATUS_DROPPED]
        assert dropped and not [e for e in executions if e.status == S.EXECUTION_RESULT_STATUS_INCLUDED]
        assert any(
            f"borrower {target.borrower}" in e.error
            and "no longer liquidatable" in e.error
            and "Aave error 45" in e.error
            for e in dropped
        ), [e.error for e in executions]
        assert all(not e.tx_hashes for e in dropped)
        # Nothing moved: no transaction from the wallet, the executor holds nothing, the
        # borrower keeps its collateral; the session runs on without an error; risk released.
        await chain.producer.mine_block()
        assert int(await chain.client.request("eth_getBalance", [session.wallet, "latest"]), 16) == wallet_eth
        assert await lc.balance(chain, target.debt, session.executor) == 0
        assert await lc.balance(chain, target.collateral, session.executor) == 0
        assert await _scaled(chain, reserve.a_token, target.borrower) == scaled_before
        status = await session.execution.GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=session.session_id)
        )
        assert status.session.state == S.EXECUTION_STATE_RUNNING and status.last_error == ""
        await reservations_released(fleet_client)
    finally:
        await subscription.unsubscribe()
        await stop(session)
        await restore(chain)
        await chain.client.request("anvil_stopImpersonatingAccount", [target.borrower])


async def _scaled(chain: DevnetChain, a_token: str, holder: str) -> int:
    return abi.decode_uint(
        await chain.client.call(a_token, abi.encode_call("scaledBalanceOf(address)", holder))
    )
