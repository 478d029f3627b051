"""The lending index against the real Aave V3 Pool on anvil: health factors and account data equal
``getUserAccountData`` to the wei across price moves and time, liquidation sizing equals what
``liquidationCall`` does, and a reorg rewinds the index to the chain's state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mevaas_chain import abi
from mevaas_chain.client import Call
from mevaas_chain.lending.index import LIQUIDATION_CALL_TOPIC, LendingIndex, LendingMarket, LendingReorg
from mevaas_chain.lending.math import AccountData, liquidation
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import MAX_UINT, mint_tokens
from tests.fixtures.devnet import send

pytestmark = pytest.mark.asyncio(loop_scope="session")


def market_of(chain: DevnetChain) -> LendingMarket:
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    return market


async def chain_accounts(chain: DevnetChain, index: LendingIndex) -> dict[str, AccountData]:
    users = sorted(index.positions)
    raws = await chain.client.batch_call(
        [Call(index.market.pool, abi.encode_call("getUserAccountData(address)", u)) for u in users],
        index.head[0],
    )
    return {
        u: AccountData(*abi.decode_result(["uint256"] * 6, r or b""))
        for u, r in zip(users, raws, strict=True)
    }


async def assert_exact(chain: DevnetChain, index: LendingIndex) -> int:
    expected = await chain_accounts(chain, index)
    got = {u: index.account(u) for u in expected}
    assert got == expected
    return len(expected)


async def test_health_factors_equal_the_pool_across_price_moves(devnet: Devnet) -> None:
    checked = 0
    for chain in devnet.chains:
        assert chain.lending is not None
        index = LendingIndex(chain.client, market_of(chain))
        await index.load()
        assert {b.address for b in chain.lending.borrowers} <= set(index.positions)
        checked += await assert_exact(chain, index)
        price = Decimal(chain.spec.weth_usd_price)
        try:
            for move in ("0.93", "1.04", "0.97"):
                await chain.lending.oracle.pin("WETH", price * Decimal(move), chain.transact)
                await chain.client.request("evm_increaseTime", [3600 * 24 * 3])  # interest accrues
                await chain.mine()
                updates = await index.sync()
                assert updates and all(not isinstance(u, LendingReorg) for u in updates)
                checked += await assert_exact(chain, index)
        finally:
            await chain.lending.oracle.pin("WETH", price, chain.transact)
            chain.lending.oracle.unpin("WETH")
    assert checked >= 200


async def test_liquidation_sizing_equals_liquidation_call(devnet: Devnet) -> None:
    chain = devnet.main
    assert chain.lending is not None
    index = LendingIndex(chain.client, market_of(chain))
    await index.load()
    weth = chain.deployment.weth
    price = Decimal(chain.spec.weth_usd_price)
    liquidator = chain.demo_wallets[1]
    try:
        await chain.lending.oracle.pin("WETH", price * Decimal("0.85"), chain.transact)
        await index.sync()
        under = [
            p for p in index.borrowers() if index.account(p.user).liquidatable and weth in p.scaled_collateral
        ]
        assert under, "a 15% ETH drop must put some WETH-collateral borrowers under HF 1"
        position = under[0]
        debt_asset = next(iter(position.scaled_debt))
        symbol = next(t.symbol for t in chain.deployment.tokens if t.address == debt_asset)
        now = index.head_timestamp + 12
        predicted = liquidation(
            position, index.reserves, index.prices, now, collateral_asset=weth, debt_asset=debt_asset
        )
        assert predicted is not None
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=liquidator,
            amounts={symbol: predicted.debt_to_cover * 2},
        )
        await send(
            chain,
            liquidator,
            debt_asset,
            abi.encode_call("approve(address,uint256)", index.market.pool, MAX_UINT),
        )
        await chain.client.request("evm_setNextBlockTimestamp", [now])
        receipt = await send(
            chain,
            liquidator,
            index.market.pool,
            abi.encode_call(
                "liquidationCall(address,address,address,uint256,bool)",
                weth,
                debt_asset,
                position.user,
                MAX_UINT,
                False,
            ),
            gas=2_000_000,
        )
        assert int(receipt["status"], 16) == 1
        (log,) = [entry for entry in receipt["logs"] if entry["topics"][0] == LIQUIDATION_CALL_TOPIC]
        debt_covered, collateral_paid, _, _ = abi.decode_result(
            ["uint256", "uint256", "address", "bool"], bytes.fromhex(log["data"][2:])
        )
        assert (debt_covered, collateral_paid) == (
            predicted.debt_to_cover,
            predicted.collateral_to_liquidator,
        )
        await index.sync()
        await assert_exact(chain, index)
    finally:
        await chain.lending.oracle.pin("WETH", price, chain.transact)
        chain.lending.oracle.unpin("WETH")


async def test_a_reorg_rewinds_the_index(devnet: Devnet) -> None:
    chain = devnet.main
    assert chain.lending is not None
    index = LendingIndex(chain.client, market_of(chain))
    await index.load()
    before = dict(index.prices)
    snapshot = await chain.client.request("evm_snapshot")
    price = Decimal(chain.spec.weth_usd_price)
    await chain.lending.oracle.pin("WETH", price * Decimal("0.5"), chain.transact)
    await index.sync()
    assert index.prices != before
    await chain.client.request("evm_revert", [snapshot])
    chain.lending.oracle.unpin("WETH")
    await chain.mine(2)
    events = await index.sync()
    assert isinstance(events[0], LendingReorg)
    assets = list(index.reserves)
    raw = await chain.client.call(
        index.market.oracle, abi.encode_call("getAssetsPrices(address[])", assets), index.head[0]
    )
    assert dict(index.prices) == dict(zip(assets, abi.decode_result(["uint256[]"], raw)[0], strict=True))
    weth = chain.deployment.weth
    # The halved price is gone (other tests may have moved the DEX, which the oracle follows).
    assert index.prices[weth] * 10 > before[weth] * 9
    await assert_exact(chain, index)


async def test_following_another_index_stops_at_its_block_not_the_chains_head(devnet: Devnet) -> None:
    """The strategy engine syncs the lending index to the pool index's block: a price move in a
    later block (already on chain) is not in the state of the block being evaluated."""
    chain = devnet.main
    assert chain.lending is not None
    index = LendingIndex(chain.client, market_of(chain))
    await index.load()
    await chain.mine(1)
    followed = await chain.client.block_number()
    before = dict(index.prices)
    price = Decimal(chain.spec.weth_usd_price)
    weth = chain.deployment.weth
    await chain.lending.oracle.pin("WETH", price * Decimal("0.5"), chain.transact)
    try:
        assert await chain.client.block_number() > followed
        await index.sync(until=followed)
        assert index.head[0] == followed and index.prices[weth] == before[weth]
        await assert_exact(chain, index)
        await index.sync()
        assert index.prices[weth] != before[weth]
        # Loading at a past block is that block's state, too.
        past = LendingIndex(chain.client, market_of(chain))
        await past.load(followed)
        assert past.head[0] == followed and past.prices[weth] == before[weth]
    finally:
        await chain.lending.oracle.pin("WETH", price, chain.transact)
        chain.lending.oracle.unpin("WETH")
