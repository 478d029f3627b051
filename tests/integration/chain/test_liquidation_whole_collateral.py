"""A liquidation that takes a borrower's whole collateral, on the real Aave V3 devnet market: the
plugin sizes it at block B, it lands seconds later (the collateral's aToken balance has grown
meanwhile, the pool caps what it seizes by that balance and works the debt back from it), and
the pool's LiquidationCall moves exactly the debt and collateral predicted at B, to the wei;
the executor's profit is the one predicted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from mevaas_chain.executor import decode_liquidated, encode_liquidate
from mevaas_chain.lending.index import LendingMarket
from mevaas_chain.lending.math import liquidation, ray_div, ray_mul
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import deploy_executor
from mevaas_strategies.actions import Liquidation
from mevaas_strategies.market import LendingState
from tests.fixtures.devnet import send
from tests.integration.chain.test_executor_liquidation import Market, _call, found_liquidations
from tests.integration.e2e import liquidation_chain as lc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
# Seconds between the block the liquidation is sized at and the one it lands in.
LATER_S = 5
# WETH's oracle price as a share of its spot: borrowers on WETH collateral (health factors up to
# 1.3 at spot) end up around 0.5-0.8, under 0.95 (all the debt may go) and so far under that the
# bonus on it would be more than the collateral: the whole collateral caps the liquidation.
DEPTH = Decimal("0.6")


@pytest_asyncio.fixture(loop_scope="session")
async def deep(devnet: Devnet) -> AsyncIterator[Market]:
    """The devnet's market with WETH's oracle price pinned deep under its pools' price."""
    chain = devnet.main
    assert chain.lending is not None
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    owner = chain.demo_wallets[3]
    executor = await deploy_executor(
        chain.client, chain.transact, owner=owner, factories=[d.factory for d in chain.deployment.dexes]
    )
    # Undone afterwards: the whole collateral sold at a deep discount moves the pools a lot, and
    # leaves its borrower owing with (next to) nothing as collateral, under HF 1 for good: later
    # tests on the shared devnet would see neither as they expect.
    snapshot = await chain.client.request("evm_snapshot")
    spot = Decimal(chain.spec.weth_usd_price)
    await chain.lending.oracle.pin("WETH", spot * DEPTH, chain.transact)
    try:
        yield Market(chain, market, executor, owner)
    finally:
        await chain.client.request("evm_revert", [snapshot])
        chain.lending.oracle.unpin("WETH")
        # Past the reverted height, so that followers of the chain see one longer chain.
        await chain.mine(4)


def _whole(lending: LendingState, action: Liquidation) -> bool:
    """Asked for as much as allowed at the head (what sizing used to propose), the pool would
    seize the borrower's whole collateral."""
    plain = liquidation(
        lending.positions[action.borrower],
        lending.reserves,
        lending.prices,
        lending.block_timestamp,
        collateral_asset=action.collateral_asset,
        debt_asset=action.debt_asset,
    )
    reserve = lending.reserves[action.collateral_asset]
    balance = lending.positions[action.borrower].collateral_balance(reserve, lending.block_timestamp)
    return plain is not None and plain.collateral_to_liquidator + plain.protocol_fee == balance


async def test_a_whole_collateral_liquidation_lands_seconds_later_with_the_predicted_amounts(
    deep: Market,
) -> None:
    m = deep
    chain = m.chain
    found, view, _next = await found_liquidations(m)
    lending = view.lending
    assert lending is not None
    # The most profitable on WETH collateral (which earns interest: its balance grows every
    # second) that the whole collateral caps.
    whole = [
        c
        for c in found
        if isinstance(c.action, Liquidation)
        and c.action.collateral_asset == chain.deployment.weth
        and _whole(lending, c.action)
    ]
    assert whole, "no whole-collateral liquidation on WETH after the drop"
    candidate = whole[0]
    action = candidate.action
    assert isinstance(action, Liquidation)
    sized_at = lending.block_timestamp
    position = lending.positions[action.borrower]
    collateral = lending.reserves[action.collateral_asset]
    balance = position.collateral_balance(collateral, sized_at)

    landed_at = sized_at + LATER_S
    factory = (
        chain.config.dex(action.collateral_swap[-1].dex).factory if action.financing == "flash_swap" else ""
    )
    await chain.client.request("evm_setNextBlockTimestamp", [landed_at])
    data = encode_liquidate(_call(action), action.financing, factory)
    receipt = await send(chain, m.owner, m.executor, data, gas=3_000_000)
    assert int(receipt["status"], 16) == 1
    block = await chain.client.get_block(int(receipt["blockNumber"], 16))
    assert block is not None and int(block["timestamp"], 16) == landed_at
    # Meanwhile the collateral earned interest: the cap the pool met is not the one at B.
    index = collateral.normalized_income(landed_at)
    assert index > collateral.normalized_income(sized_at)

    call = lc.liquidation_call(receipt, action.pool)
    assert (call.debt_to_cover, call.collateral) == (action.debt_to_cover, action.expected_collateral)
    event = decode_liquidated(receipt, m.executor)
    assert event is not None
    assert (event.debt_repaid, event.collateral_received) == (
        action.debt_to_cover,
        action.expected_collateral,
    )
    assert event.profit == candidate.expected_profit
    # Aave's math at B for the request made agrees, and it took (all but what one unit of the
    # debt asset is worth of) the whole collateral.
    predicted = liquidation(
        position,
        lending.reserves,
        lending.prices,
        sized_at,
        collateral_asset=action.collateral_asset,
        debt_asset=action.debt_asset,
        debt_to_cover=action.debt_to_cover,
    )
    assert predicted is not None
    assert (predicted.debt_to_cover, predicted.collateral_to_liquidator) == (
        action.debt_to_cover,
        action.expected_collateral,
    )
    assert 0 <= balance - (predicted.collateral_to_liquidator + predicted.protocol_fee) < 10**12
    # The borrower keeps its scaled balance less the liquidator's and the fee's, at the block's index.
    scaled = position.scaled_collateral[action.collateral_asset]
    burnt = ray_div(predicted.collateral_to_liquidator, index) + ray_div(predicted.protocol_fee, index)
    assert await lc.balance(chain, collateral.a_token, action.borrower) == ray_mul(scaled - burnt, index)
