"""Flash arbitrage through each flash provider on the devnet: the same cycle, borrowed through the
first pair's Uniswap V2 flash swap (`executeFlash`) and through the Aave V3 pool's flashLoanSimple
(`executeFlashLoan`), each realises the profit the provider's quote predicts, to the wei (the
Aave premium from FLASHLOAN_PREMIUM_TOTAL as the lending index read it on chain); `choose`
takes the cheaper of the two; the flash-loan callback refuses strangers."""

from __future__ import annotations

from functools import partial
from operator import mul

import pytest
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.executor import (
    ExecutorHop,
    decode_executed,
    encode_execute_flash,
    encode_execute_flash_loan,
)
from mevaas_chain.lending.index import LendingIndex, LendingMarket
from mevaas_chain.lending.math import percent_mul
from mevaas_chain.pool_index import PoolIndex
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import deploy_executor
from mevaas_strategies.actions import Hop
from mevaas_strategies.flash_providers import FLASH_PROVIDERS, FlashQuote, choose
from mevaas_strategies.market import ChainMarket, LendingState
from tests.fixtures.devnet import call_error, send
from tests.integration.chain.test_executor import _make_gap, _pool

pytestmark = pytest.mark.integration


async def _market(chain: DevnetChain) -> ChainMarket:
    lending_market = LendingMarket.from_contracts(chain.config.contracts)
    assert lending_market is not None
    lending, pools = LendingIndex(chain.client, lending_market), PoolIndex(chain.client, chain.config.dexes)
    await lending.load()
    await pools.load()
    return ChainMarket(
        chain_id=chain.config.chain_id,
        block_number=lending.head[0],
        block_hash=lending.head[1],
        base_fee=10**9,
        priority_fee=10**9,
        pools=pools.pools,
        wrapped_native=chain.deployment.weth,
        lending=LendingState(
            "aave_v3",
            lending_market.pool,
            lending.head_timestamp,
            lending.reserves,
            lending.positions,
            lending.prices,
            lending.flash_loan_premium,
        ),
    )


async def test_a_flash_cycle_lands_through_each_provider_and_the_cheapest_is_chosen(devnet: Devnet) -> None:
    chain = devnet.main
    assert chain.lending is not None
    owner = chain.demo_wallets[3]
    factories = {d.name: d.factory for d in chain.deployment.dexes}
    executor = await deploy_executor(
        chain.client, chain.transact, owner=owner, factories=list(factories.values())
    )
    weth = chain.deployment.token("WETH").address
    uni, sushi = _pool(chain, "uniswap", "WETH", "USDC"), _pool(chain, "sushiswap", "WETH", "USDC")
    landed: dict[str, int] = {}
    for provider in ("uniswap_v2", "aave_v3"):
        amm_hops, result = await _make_gap(chain, [uni, sushi], uni, "USDC", 300_000 * 10**6)
        market = await _market(chain)
        assert market.lending is not None
        premium = market.lending.flash_loan_premium
        # The devnet pool's premium as configured (updateFlashloanPremiumTotal(5)), read on chain.
        assert premium == 5
        dex_of = {uni.address: "uniswap", sushi.address: "sushiswap"}
        hops = tuple(
            Hop(
                chain.config.chain_id,
                h.pool.address,
                dex_of[h.pool.address],
                h.token_in,
                h.token_out,
                result.amounts[i],
                result.amounts[i + 1],
                h.pool.fee_bps,
            )
            for i, h in enumerate(amm_hops)
        )
        quotes = {name: FLASH_PROVIDERS[name].quote(market, hops) for name in ("uniswap_v2", "aave_v3")}
        assert all(isinstance(q, FlashQuote) for q in quotes.values()), quotes
        aave = quotes["aave_v3"]
        assert isinstance(aave, FlashQuote) and aave.fee == percent_mul(result.amount_in, 5) > 0
        # Both can lend; the flash swap charges nothing beyond the cycle's swap and less gas.
        choice = choose(market, hops, partial(mul, market.gas_price), ("uniswap_v2", "aave_v3"))
        assert choice.quote is not None and choice.quote.provider == "uniswap_v2" and choice.skipped == ()

        quote = quotes[provider]
        assert isinstance(quote, FlashQuote)
        predicted = result.profit - quote.fee
        executor_hops = [ExecutorHop(h.pool.address, h.zero_for_one, h.pool.fee_bps) for h in amm_hops]
        if provider == "uniswap_v2":
            data = encode_execute_flash(
                factories[dex_of[hops[0].pool]], weth, result.amount_in, executor_hops, 1
            )
        else:
            data = encode_execute_flash_loan(market.lending.pool, weth, result.amount_in, executor_hops, 1)
        before = abi.decode_uint(await chain.client.call(weth, abi.balance_of(executor)))
        receipt = await send(chain, owner, executor, data)
        assert int(receipt["status"], 16) == 1, provider
        event = decode_executed(receipt, executor)
        assert event is not None and event.flash and event.profit == predicted, (provider, event, predicted)
        after = abi.decode_uint(await chain.client.call(weth, abi.balance_of(executor)))
        assert after - before == predicted
        landed[provider] = predicted
    assert set(landed) == {"uniswap_v2", "aave_v3"}


async def test_the_flash_loan_callback_refuses_strangers(devnet: Devnet) -> None:
    chain = devnet.main
    owner = chain.demo_wallets[3]
    executor = await deploy_executor(
        chain.client, chain.transact, owner=owner, factories=[d.factory for d in chain.deployment.dexes]
    )
    weth = chain.deployment.token("WETH").address
    callback = abi.encode_call(
        "executeOperation(address,uint256,uint256,address,bytes)", weth, 10**18, 0, executor, b""
    )
    # executeOperation from anyone but the pool mid-loan, even the pool itself outside a loan.
    for sender in (chain.demo_wallets[1], chain.config.contracts["aave_pool"]):
        assert _selector("NotGenuineLender()") in (await call_error(chain, sender, executor, callback) or "")
    # Only the owner starts a flash-loan cycle.
    uni = _pool(chain, "uniswap", "WETH", "USDC")
    data = encode_execute_flash_loan(
        chain.config.contracts["aave_pool"], weth, 10**18, [ExecutorHop(uni.address, True, 30)], 0
    )
    assert _selector("NotOwner()") in (await call_error(chain, chain.demo_wallets[1], executor, data) or "")


def _selector(error: str) -> str:
    return "0x" + keccak(text=error)[:4].hex()
