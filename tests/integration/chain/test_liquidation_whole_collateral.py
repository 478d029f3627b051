"""A liquidation that takes a borrower's whole collateral, on the real Aave V3 devnet market: the
plugin sizes it at block B, it lands seconds later (the collateral's aToken balance has grown
meanwhile, the pool caps what it seizes by that balance and works the debt back from it), and
the pool's LiquidationCall moves exactly the debt and collateral predicted at B, to the wei;
the executor's profit is the one predicted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import pytest_asyncio

from mevaas_chain.executor import decode_liquidated, encode_liquidate
from mevaas_chain.lending.index import LendingIndex, LendingMarket
from mevaas_chain.lending.math import liquidation, ray_div, ray_mul
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import deploy_executor
from mevaas_strategies.actions import Liquidation
from tests.fixtures.devnet import send
from tests.fixtures.lending import weth_collateralised, weth_crossing
from tests.integration.chain.test_executor_liquidation import Market, _call, found_liquidations
from tests.integration.e2e import liquidation_chain as lc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
# Seconds between the block the liquidation is sized at and the one it lands in.
LATER_S = 5
# The WETH price as a share of the target's HF 1 crossing: an HF of about 0.7, under 0.95 (all
# the debt may go) and under the bonus's reach, so the whole collateral caps the liquidation.
DEPTH = Decimal("0.7")


@dataclass
class Target:
    borrower: str
    debt: str


@pytest_asyncio.fixture(loop_scope="session")
async def deep(devnet: Devnet) -> AsyncIterator[tuple[Market, Target]]:
    """The devnet's market with WETH pinned so deep that a WETH-collateralised borrower with one
    stablecoin debt is liquidatable for all of its collateral."""
    chain = devnet.main
    assert chain.lending is not None
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    target, price = await _target(chain, market)
    owner = chain.demo_wallets[3]
    executor = await deploy_executor(
        chain.client, chain.transact, owner=owner, factories=[d.factory for d in chain.deployment.dexes]
    )
    spot = Decimal(chain.spec.weth_usd_price)
    await chain.lending.oracle.pin("WETH", lc.usd(price) * DEPTH, chain.transact)
    try:
        yield Market(chain, market, executor, owner), target
    finally:
        await chain.lending.oracle.pin("WETH", spot, chain.transact)
        chain.lending.oracle.unpin("WETH")


async def _target(chain: DevnetChain, market: LendingMarket) -> tuple[Target, int]:
    """The largest WETH-only-collateral borrower owing one stablecoin, and its HF 1 WETH price."""
    index = LendingIndex(chain.client, market)
    await index.load()
    weth = chain.deployment.weth
    stables = {t.address for t in chain.deployment.tokens if t.symbol in ("USDC", "USDT", "DAI")}
    found: list[tuple[int, Target, int]] = []
    for position in index.borrowers():
        debts = [a for a, s in position.scaled_debt.items() if s]
        supplied = [a for a, s in position.scaled_collateral.items() if s]
        if not weth_collateralised(position, weth) or supplied != [weth] or len(debts) != 1:
            continue
        price = weth_crossing(index, position, weth, index.head_timestamp)
        if debts[0] in stables and price:
            found.append((position.scaled_collateral[weth], Target(position.user, debts[0]), price))
    assert found, "no WETH-collateralised borrower with one stablecoin debt on the devnet"
    _held, target, price = max(found, key=lambda f: f[0])
    return target, price


async def test_a_whole_collateral_liquidation_lands_seconds_later_with_the_predicted_amounts(
    deep: tuple[Market, Target],
) -> None:
    m, target = deep
    chain = m.chain
    found, view, _next = await found_liquidations(m)
    assert view.lending is not None
    (candidate,) = [c for c in found if getattr(c.action, "borrower", "").lower() == target.borrower.lower()]
    action = candidate.action
    assert isinstance(action, Liquidation) and action.debt_asset == target.debt
    lending, sized_at = view.lending, view.lending.block_timestamp
    position = lending.positions[action.borrower]
    collateral = lending.reserves[action.collateral_asset]
    balance = position.collateral_balance(collateral, sized_at)
    # The case at stake: asked for all it allows at B, the pool would seize the whole balance.
    plain = liquidation(
        position,
        lending.reserves,
        lending.prices,
        sized_at,
        collateral_asset=action.collateral_asset,
        debt_asset=action.debt_asset,
    )
    assert plain is not None and plain.collateral_to_liquidator + plain.protocol_fee == balance

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
