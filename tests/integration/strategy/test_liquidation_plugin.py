"""The liquidation plugin on the real devnet market: after an ETH price drop it proposes the
positions under HF 1, and executing its action (liquidationCall, then the collateral sold back
through its route) realises exactly the profit its route predicts."""

from __future__ import annotations

from typing import Any

import pytest

from mevaas_chain import abi
from mevaas_chain.lending.index import LendingMarket
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, mint_tokens
from mevaas_strategies.actions import Liquidation
from mevaas_strategies.liquidation import LiquidationStrategy
from mevaas_strategies.market import MarketView
from tests.fixtures.devnet import send
from tests.fixtures.lending import liquidation_market, liquidation_spec, weth_dropped

pytestmark = pytest.mark.asyncio(loop_scope="session")
BLOCK_TIME = 12


async def test_liquidations_are_found_and_realise_their_predicted_profit(devnet: Devnet) -> None:
    chain = devnet.main
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    liquidator = chain.demo_wallets[2]
    async with weth_dropped(chain):
        chain_market, lending = await liquidation_market(chain, market, BLOCK_TIME)
        view = MarketView({chain.config.chain_id: chain_market})
        now = lending.head_timestamp + BLOCK_TIME
        under = {p.user for p in lending.borrowers() if lending.account(p.user, now).liquidatable}
        assert under
        candidates = LiquidationStrategy(
            liquidation_spec(chain.config.chain_id, chain.deployment.weth)
        ).on_market_update(view, None)
        actions = [c.action for c in candidates]
        assert all(isinstance(a, Liquidation) for a in actions)
        # One candidate per borrower, only borrowers under 1, all of them profitable net of gas.
        borrowers = [a.borrower for a in actions if isinstance(a, Liquidation)]
        assert len(borrowers) == len(set(borrowers)) and set(borrowers) <= under and borrowers
        assert all(c.net_profit > 0 for c in candidates)

        best = max(candidates, key=lambda c: c.net_profit)
        action = best.action
        assert isinstance(action, Liquidation)
        debt_symbol = next(t.symbol for t in chain.deployment.tokens if t.address == action.debt_asset)
        await mint_tokens(
            chain.client,
            chain.transact,
            chain.deployment,
            deployer=chain.deployer,
            to=liquidator,
            amounts={debt_symbol: action.debt_to_cover},
        )
        routers = {d.name: d.router for d in chain.deployment.dexes}
        await send(
            chain,
            liquidator,
            action.debt_asset,
            abi.encode_call("approve(address,uint256)", market.pool, MAX_UINT),
        )
        # The seized collateral goes back along the route one hop at a time, each on its own DEX's
        # router (the best route may cross DEXes), each hop's exact output as its minimum.
        for hop in action.collateral_swap:
            router = routers[hop.dex]
            assert router is not None, hop.dex
            await send(
                chain, liquidator, hop.token_in, abi.encode_call("approve(address,uint256)", router, MAX_UINT)
            )
        debt_before = abi.decode_uint(await chain.client.call(action.debt_asset, abi.balance_of(liquidator)))
        assert action.collateral_swap[0].amount_in == action.expected_collateral
        txs: list[dict[str, Any]] = [
            {
                "from": liquidator,
                "to": market.pool,
                "gas": hex(2_000_000),
                "data": "0x"
                + abi.encode_call(
                    "liquidationCall(address,address,address,uint256,bool)",
                    action.collateral_asset,
                    action.debt_asset,
                    action.borrower,
                    action.debt_to_cover,
                    False,
                ).hex(),
            },
            *(
                {
                    "from": liquidator,
                    "to": routers[hop.dex],
                    "gas": hex(500_000),
                    "data": "0x"
                    + abi.encode_call(
                        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                        hop.amount_in,
                        hop.amount_out,
                        [hop.token_in, hop.token_out],
                        liquidator,
                        NO_DEADLINE,
                    ).hex(),
                }
                for hop in action.collateral_swap
            ),
        ]
        await chain.client.request("evm_setNextBlockTimestamp", [now])
        receipts = await chain.producer.transact(txs)
        assert [int(r["status"], 16) for r in receipts] == [1] * len(txs)
        debt_after = abi.decode_uint(await chain.client.call(action.debt_asset, abi.balance_of(liquidator)))
        # With WETH as the base token no debt here is inventory: the plugin flash-finances, and its
        # expected profit is this plain liquidation's less the loan's cost (exact per financing in
        # tests/integration/chain/test_executor_liquidation.py).
        assert action.financing in ("flash_loan", "flash_swap")
        plain = action.collateral_swap[-1].amount_out - action.debt_to_cover
        assert debt_after - debt_before == plain
        assert 0 < best.expected_profit <= plain
