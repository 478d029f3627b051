"""The inspector on devnet blocks holding real Aave V3 liquidations: the collateral the liquidator
received is found with its exact amount when paid as the underlying and when paid as aTokens
(``receiveAToken``, moved by ``transferOnLiquidation`` rather than an ERC-20 transfer)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mevaas_chain import abi
from mevaas_chain.lending.index import LIQUIDATION_CALL_TOPIC, LendingIndex, LendingMarket
from mevaas_inspector import inspect_rpc_block
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import MAX_UINT, mint_tokens
from tests.fixtures.devnet import send
from tests.fixtures.lending import weth_collateralised, weth_crossing

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_liquidations_in_both_receive_modes_have_exact_received_amounts(devnet: Devnet) -> None:
    chain = devnet.main
    assert chain.lending is not None
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    index = LendingIndex(chain.client, market)
    weth = chain.deployment.weth
    price = Decimal(chain.spec.weth_usd_price)
    liquidator = chain.demo_wallets[3]
    await index.load()
    # Earlier tests on the shared devnet move prices, liquidate and top up borrowers, so the drop
    # is the one that puts the two most exposed WETH-collateralised borrowers under HF 1 now.
    crossings = sorted(
        (
            (weth_crossing(index, p, weth, index.head_timestamp), p)
            for p in index.borrowers()
            if weth_collateralised(p, weth)
        ),
        key=lambda c: -c[0],
    )
    assert len(crossings) >= 2 and crossings[1][0] > 0, "fewer than two borrowers a WETH drop can liquidate"
    try:
        # Just under the second crossing, not at it: there a wei of interest either way (the
        # blocks before the calls) can tip a health factor back over 1.
        price = Decimal(crossings[1][0] * 995 // 1000) / 10**8
        await chain.lending.oracle.pin("WETH", price, chain.transact)
        await index.load()
        under = [
            p for p in index.borrowers() if index.account(p.user).liquidatable and weth in p.scaled_collateral
        ]
        assert len(under) >= 2
        for position, receive_a_token in ((under[0], False), (under[1], True)):
            debt = next(iter(position.scaled_debt))
            symbol = next(t.symbol for t in chain.deployment.tokens if t.address == debt)
            await mint_tokens(
                chain.client,
                chain.transact,
                chain.deployment,
                deployer=chain.deployer,
                to=liquidator,
                amounts={symbol: index.account(position.user).total_debt_base * 10**18},
            )
            await send(
                chain, liquidator, debt, abi.encode_call("approve(address,uint256)", market.pool, MAX_UINT)
            )
            receipt = await send(
                chain,
                liquidator,
                market.pool,
                abi.encode_call(
                    "liquidationCall(address,address,address,uint256,bool)",
                    weth,
                    debt,
                    position.user,
                    MAX_UINT,
                    receive_a_token,
                ),
                gas=2_000_000,
            )
            assert int(receipt["status"], 16) == 1
            (log,) = [e for e in receipt["logs"] if e["topics"][0] == LIQUIDATION_CALL_TOPIC]
            covered, seized, _, _ = abi.decode_result(
                ["uint256", "uint256", "address", "bool"], bytes.fromhex(log["data"][2:])
            )
            found = await inspect_rpc_block(
                chain.relay.url, int(receipt["blockNumber"], 16), aave_pools=[market.pool]
            )
            (liq,) = found.liquidations
            assert liq.transaction_hash == receipt["transactionHash"]
            assert (liq.liquidator_user, liq.liquidated_user) == (liquidator.lower(), position.user.lower())
            assert (liq.debt_token_address, liq.debt_purchase_amount) == (debt.lower(), covered)
            paid_in = index.reserves[weth].a_token if receive_a_token else weth
            assert (liq.received_token_address, liq.received_amount) == (paid_in.lower(), seized)
            # Without the devnet pool named, the mainnet-only inspector does not claim it.
            blind = await inspect_rpc_block(chain.relay.url, int(receipt["blockNumber"], 16))
            assert blind.liquidations == ()
    finally:
        await chain.lending.oracle.pin("WETH", price, chain.transact)
        chain.lending.oracle.unpin("WETH")
