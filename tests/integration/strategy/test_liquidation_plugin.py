"""The liquidation plugin on the real devnet market: after an ETH price drop it proposes the
positions under HF 1, and executing its action (liquidationCall, then the collateral sold back
through its route) realises exactly the profit its route predicts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mevaas.common.v1 import common_pb2
from mevaas_chain import abi
from mevaas_chain.lending.index import LendingIndex, LendingMarket
from mevaas_chain.pool_index import PoolIndex
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, mint_tokens
from mevaas_strategies.actions import Liquidation
from mevaas_strategies.liquidation import LiquidationStrategy
from mevaas_strategies.market import ChainMarket, LendingState, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from tests.fixtures.devnet import send

pytestmark = pytest.mark.asyncio(loop_scope="session")
BLOCK_TIME = 12


def spec(chain_id: int, base: str) -> StrategySpec:
    return StrategySpec(
        strategy_id="s1",
        tenant_id="t1",
        version=1,
        type=common_pb2.STRATEGY_TYPE_LIQUIDATION,
        chain_ids=(chain_id,),
        tokens=(),
        dexes=frozenset(),
        base_token=TokenRef(chain_id, base),
        allocation=0,
        max_position=0,
        max_hops=2,
        min_profit=1,
        max_slippage_bps=50,
        max_gas_price_wei=0,
        execution_delay_ms=0,
        retry_attempts=0,
        submission_mode=0,
    )


async def test_liquidations_are_found_and_realise_their_predicted_profit(devnet: Devnet) -> None:
    chain = devnet.main
    assert chain.lending is not None
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    lending, pools = LendingIndex(chain.client, market), PoolIndex(chain.client, chain.config.dexes)
    price = Decimal(chain.spec.weth_usd_price)
    liquidator = chain.demo_wallets[2]
    try:
        await chain.lending.oracle.pin("WETH", price * Decimal("0.86"), chain.transact)
        await lending.load()
        await pools.load()
        assert lending.head == pools.head
        header = await chain.client.get_block(lending.head[0])
        assert header is not None
        view = MarketView(
            {
                chain.config.chain_id: ChainMarket(
                    chain_id=chain.config.chain_id,
                    block_number=lending.head[0],
                    block_hash=lending.head[1],
                    base_fee=int(header["baseFeePerGas"], 16),
                    priority_fee=10**9,
                    pools=pools.pools,
                    wrapped_native=chain.deployment.weth,
                    symbols={t.address: t.symbol for t in chain.deployment.tokens},
                    decimals={t.address: t.decimals for t in chain.deployment.tokens},
                    block_time_s=BLOCK_TIME,
                    lending=LendingState(
                        "aave_v3",
                        market.pool,
                        lending.head_timestamp,
                        lending.reserves,
                        lending.positions,
                        lending.prices,
                    ),
                )
            }
        )
        now = lending.head_timestamp + BLOCK_TIME
        under = {p.user for p in lending.borrowers() if lending.account(p.user, now).liquidatable}
        assert under
        candidates = LiquidationStrategy(spec(chain.config.chain_id, chain.deployment.weth)).on_market_update(
            view, None
        )
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
    finally:
        await chain.lending.oracle.pin("WETH", price, chain.transact)
        chain.lending.oracle.unpin("WETH")
