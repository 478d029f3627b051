"""Flash arbitrage through every flash provider on the devnet, with Uniswap V3 (the npm artifacts)
and a Balancer V2 vault (the mainnet bytecode from @balancer-labs/v2-deployments) deployed: the
same V2 cycle, financed by the first pair's flash swap (`executeFlash`), the Aave pool's
flashLoanSimple (`executeFlashLoan`), a V3 pool's flash (`executeFlashV3`) and the vault's
flashLoan (`executeFlashBalancer`), realises the profit its quote predicts, fee included, to the
wei; `choose` takes the cheapest, and the choice moves when the vault's fee rises above the V3
pool's or the vault cannot lend the amount; forged callbacks are refused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from operator import mul

import pytest
import pytest_asyncio
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.amm.arbitrage import ArbitrageResult
from mevaas_chain.executor import (
    HOP_V2,
    HOP_V3,
    ExecutorHop,
    decode_executed,
    encode_execute_flash,
    encode_execute_flash_balancer,
    encode_execute_flash_loan,
    encode_execute_flash_v3,
    encode_set_balancer_vault,
    encode_set_v3_factory,
)
from mevaas_chain.flash_lenders import LenderPlan, read_lenders, resolve_lenders
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.balancer import (
    BalancerDeployment,
    deploy_balancer_vault,
    flash_loan_fee,
    set_flash_loan_fee,
)
from mevaas_local.devnet.core import spec_prices
from mevaas_local.devnet.deploy import PoolInfo, deploy_executor
from mevaas_local.devnet.uniswap_v3 import V3Deployment, deploy_uniswap_v3
from mevaas_strategies.actions import Hop
from mevaas_strategies.flash_providers import FLASH_PROVIDERS, FlashQuote, FlashSkip, choose
from mevaas_strategies.market import ChainMarket
from tests.fixtures.devnet import call_error, send, skew_pool
from tests.integration.chain.test_executor import _make_gap, _pool
from tests.integration.chain.test_executor_flash_providers import _market
from tests.integration.chain.test_executor_v3 import _best, _v3

pytestmark = pytest.mark.integration

VAULT_WETH = 50 * 10**18
PROVIDERS = ("uniswap_v2", "uniswap_v3", "aave_v3", "balancer_v2")


@dataclass(frozen=True)
class Lenders:
    v3: V3Deployment
    balancer: BalancerDeployment
    plans: tuple[LenderPlan, ...]
    executor: str
    owner: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lenders(devnet: Devnet) -> Lenders:
    chain = devnet.main
    prices = {symbol: float(p) for symbol, p in spec_prices(chain.spec).items()}
    v3 = await deploy_uniswap_v3(
        chain.client, chain.transact, chain.deployment, deployer=chain.deployer, prices=prices
    )
    balancer = await deploy_balancer_vault(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        liquidity={"WETH": VAULT_WETH},
    )
    owner = chain.demo_wallets[3]
    executor = await deploy_executor(
        chain.client, chain.transact, owner=owner, factories=[d.factory for d in chain.deployment.dexes]
    )
    for call in (
        encode_set_v3_factory(v3.factory, True),
        encode_set_balancer_vault(balancer.vault),
    ):
        assert int((await send(chain, owner, executor, call))["status"], 16) == 1
    configured = [("uniswap_v3", p.address) for p in v3.pools] + [("balancer_v2", balancer.vault)]
    plans = await resolve_lenders(chain.client, configured, [t.address for t in chain.deployment.tokens])
    return Lenders(v3, balancer, plans, executor, owner)


async def _cycle(
    chain: DevnetChain,
) -> tuple[list[PoolInfo], ArbitrageResult, tuple[Hop, ...], list[ExecutorHop]]:
    uni, sushi = _pool(chain, "uniswap", "WETH", "USDC"), _pool(chain, "sushiswap", "WETH", "USDC")
    amm_hops, result = await _make_gap(chain, [uni, sushi], uni, "USDC", 300_000 * 10**6)
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
    executor_hops = [ExecutorHop(h.pool.address, h.zero_for_one, h.pool.fee_bps) for h in amm_hops]
    return [uni, sushi], result, hops, executor_hops


async def _market_with_lenders(chain: DevnetChain, lenders: Lenders) -> ChainMarket:
    market = await _market(chain)
    market.flash_lenders = await read_lenders(chain.client, lenders.plans, market.block_number)
    return market


def _calldata(
    chain: DevnetChain, quote: FlashQuote, hops: Sequence[Hop], executor_hops: list[ExecutorHop]
) -> bytes:
    weth, amount = hops[0].token_in, hops[0].amount_in
    encoders: dict[str, Callable[[], bytes]] = {
        "uniswap_v2": lambda: encode_execute_flash(
            chain.config.dex(hops[0].dex).factory, weth, amount, executor_hops, 1
        ),
        "aave_v3": lambda: encode_execute_flash_loan(
            chain.config.contracts["aave_pool"], weth, amount, executor_hops, 1
        ),
        "uniswap_v3": lambda: encode_execute_flash_v3(quote.lender, weth, amount, executor_hops, 1),
        "balancer_v2": lambda: encode_execute_flash_balancer(weth, amount, executor_hops, 1),
    }
    return encoders[quote.provider]()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_flash_cycle_lands_through_each_provider_with_the_predicted_profit(
    devnet: Devnet, lenders: Lenders, provider: str
) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    await set_flash_loan_fee(
        chain.client, chain.transact, lenders.balancer, admin=chain.deployer, fee=3 * 10**14
    )
    _pools, result, hops, executor_hops = await _cycle(chain)
    market = await _market_with_lenders(chain, lenders)
    quote = FLASH_PROVIDERS[provider].quote(market, hops)
    assert isinstance(quote, FlashQuote), quote
    # The flash swap lends the first pair's output; every other provider, the cycle's input.
    lent = (hops[0].token_out, hops[0].amount_out) if provider == "uniswap_v2" else (weth, result.amount_in)
    assert (quote.token, quote.amount) == lent
    if provider == "uniswap_v3":
        # The cheapest pool holding WETH: the 0.05% WETH/USDC pool, at its exact fee rounded up.
        pool = next(p for p in lenders.v3.pools if p.fee == 500 and weth in (p.token0, p.token1))
        assert quote.lender == pool.address
        assert quote.fee == -(-result.amount_in * 500 // 10**6) > 0
    if provider == "balancer_v2":
        # 0.03%, FixedPoint.mulUp, as the fees collector reports it.
        assert await flash_loan_fee(chain.client, lenders.balancer) == 3 * 10**14
        assert quote.fee == (result.amount_in * 3 * 10**14 - 1) // 10**18 + 1
    predicted = result.profit - quote.fee
    before = abi.decode_uint(await chain.client.call(weth, abi.balance_of(lenders.executor)))
    receipt = await send(chain, lenders.owner, lenders.executor, _calldata(chain, quote, hops, executor_hops))
    assert int(receipt["status"], 16) == 1, provider
    event = decode_executed(receipt, lenders.executor)
    assert event is not None and event.flash and event.profit == predicted, (provider, event, predicted)
    after = abi.decode_uint(await chain.client.call(weth, abi.balance_of(lenders.executor)))
    assert after - before == predicted


async def test_a_v3_flash_finances_a_cycle_through_another_v3_pool(devnet: Devnet, lenders: Lenders) -> None:
    """The lending pool's flash callback runs a cycle whose V3 hop calls back in turn (the
    callback slot is taken before the cycle runs); the profit is route_quote's minus the fee."""
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    lender = _v3(chain, lenders.v3, "WETH", "USDC", 500)
    hop_pool = _v3(chain, lenders.v3, "WETH", "USDC", 3000)
    uni = _pool(chain, "uniswap", "WETH", "USDC")
    legs = [
        (uni.address, uni.token0, uni.token1, HOP_V2),
        (hop_pool.address, hop_pool.token0, hop_pool.token1, HOP_V3),
    ]
    best = None
    for attempt in range(8):
        for symbol in ("USDC", "WETH"):
            best = await _best(chain, weth, legs, 20 * 10**18)
            if best is not None:
                break
            await skew_pool(
                chain, uni.address, symbol, (50_000 * 10**6 if symbol == "USDC" else 20 * 10**18) << attempt
            )
        if best is not None:
            break
    assert best is not None, "could not open a V2/V3 gap"
    hops, amounts = best
    fee = -(-amounts[0] * lender.fee // 10**6)
    predicted = amounts[-1] - amounts[0] - fee
    assert predicted > 0
    receipt = await send(
        chain,
        lenders.owner,
        lenders.executor,
        encode_execute_flash_v3(lender.address, weth, amounts[0], hops, 1),
    )
    assert int(receipt["status"], 16) == 1
    event = decode_executed(receipt, lenders.executor)
    assert event is not None and event.profit == predicted, (event, predicted)
    # The lender itself on the route: refused before it is called (it is locked while it lends).
    through_lender = [hops[0], ExecutorHop(lender.address, hops[1].zero_for_one, 30, HOP_V3)]
    error = await call_error(
        chain,
        lenders.owner,
        lenders.executor,
        encode_execute_flash_v3(lender.address, weth, amounts[0], through_lender, 0),
    )
    assert _selector("BadPath()") in (error or ""), error


async def test_choose_takes_the_cheapest_and_follows_the_vaults_fee_and_balance(
    devnet: Devnet, lenders: Lenders
) -> None:
    chain = devnet.main
    balancer = lenders.balancer
    _pools, result, hops, _executor_hops = await _cycle(chain)
    contenders = ("uniswap_v3", "balancer_v2")

    def cheapest(market: ChainMarket, names: Sequence[str]) -> str:
        costs = []
        for name in names:
            quote = FLASH_PROVIDERS[name].quote(market, hops)
            if isinstance(quote, FlashQuote):
                costs.append((quote.fee + quote.gas * market.gas_price, name))
        return min(costs)[1]

    # A free vault beats the V3 pool's 0.05%; over all four, the cheapest by fee plus gas wins.
    await set_flash_loan_fee(chain.client, chain.transact, balancer, admin=chain.deployer, fee=0)
    market = await _market_with_lenders(chain, lenders)
    choice = choose(market, hops, partial(mul, market.gas_price), contenders)
    assert choice.quote is not None and choice.quote.provider == "balancer_v2" and choice.quote.fee == 0
    everyone = choose(market, hops, partial(mul, market.gas_price))
    assert everyone.quote is not None and everyone.skipped == ()
    assert everyone.quote.provider == cheapest(market, PROVIDERS)

    # The vault's fee at 0.1%, above the pool's 0.05%: the pool is chosen.
    await set_flash_loan_fee(chain.client, chain.transact, balancer, admin=chain.deployer, fee=10**15)
    market = await _market_with_lenders(chain, lenders)
    choice = choose(market, hops, partial(mul, market.gas_price), contenders)
    assert choice.quote is not None and choice.quote.provider == "uniswap_v3"
    assert choice.quote.fee == -(-result.amount_in * 500 // 10**6)

    # Free again, but the cycle needs more WETH than the vault holds: skipped, with its reason.
    await set_flash_loan_fee(chain.client, chain.transact, balancer, admin=chain.deployer, fee=0)
    market = await _market_with_lenders(chain, lenders)
    vault = next(lender for lender in market.flash_lenders if lender.kind == "balancer_v2")
    # What it was given, whatever it lent before: the fees went on to the fees collector.
    assert vault.balances[chain.deployment.token("WETH").address] == VAULT_WETH
    assert all(lender.active for lender in market.flash_lenders)
    big = tuple(
        Hop(h.chain_id, h.pool, h.dex, h.token_in, h.token_out, vault.balances[h.token_in] + 1, 1, h.fee_bps)
        if i == 0
        else h
        for i, h in enumerate(hops)
    )
    choice = choose(market, big, partial(mul, market.gas_price), contenders)
    assert choice.quote is not None and choice.quote.provider == "uniswap_v3"
    (skip,) = choice.skipped
    assert skip.provider == "balancer_v2" and "holds" in skip.reason
    # Nor can a V3 pool lend more than it holds.
    unlendable = FLASH_PROVIDERS["uniswap_v3"].quote(
        market,
        tuple(
            Hop(h.chain_id, h.pool, h.dex, h.token_in, h.token_out, 10**40, 1, h.fee_bps) if i == 0 else h
            for i, h in enumerate(hops)
        ),
    )
    assert isinstance(unlendable, FlashSkip)


async def test_forged_flash_callbacks_are_refused(devnet: Devnet, lenders: Lenders) -> None:
    chain = devnet.main
    stranger, executor = chain.demo_wallets[1], lenders.executor
    weth = chain.deployment.token("WETH").address
    pool = next(p for p in lenders.v3.pools if p.fee == 500 and weth in (p.token0, p.token1))
    v3_callback = abi.encode_call("uniswapV3FlashCallback(uint256,uint256,bytes)", 0, 0, b"")
    # The V3 flash callback from anyone, even the genuine pool itself, when no flash is under way.
    for sender in (stranger, pool.address):
        assert _selector("NotGenuinePool()") in (await call_error(chain, sender, executor, v3_callback) or "")
    receive = abi.encode_call(
        "receiveFlashLoan(address[],uint256[],uint256[],bytes)", [weth], [10**18], [0], b""
    )
    assert _selector("NotGenuineLender()") in (await call_error(chain, stranger, executor, receive) or "")
    # Anyone may ask the vault to flash-lend to the executor: its callback refuses the loan.
    forced = abi.encode_call("flashLoan(address,address[],uint256[],bytes)", executor, [weth], [10**18], b"")
    error = await call_error(chain, stranger, lenders.balancer.vault, forced)
    assert _selector("NotGenuinePool()") in (error or ""), error

    uni = _pool(chain, "uniswap", "WETH", "USDC")
    sushi = _pool(chain, "sushiswap", "WETH", "USDC")
    zero_for_one = uni.token0 == weth
    hops = [ExecutorHop(uni.address, zero_for_one, 30), ExecutorHop(sushi.address, not zero_for_one, 30)]
    # A pool of a factory the executor no longer allows, and a V2 pair posing as a pool.
    disallow = encode_set_v3_factory(lenders.v3.factory, False)
    assert int((await send(chain, lenders.owner, executor, disallow))["status"], 16) == 1
    flash_v3 = encode_execute_flash_v3(pool.address, weth, 10**18, hops, 0)
    try:
        error = await call_error(chain, lenders.owner, executor, flash_v3)
        assert _selector("FactoryNotAllowed()") in (error or ""), error
    finally:
        allow = encode_set_v3_factory(lenders.v3.factory, True)
        assert int((await send(chain, lenders.owner, executor, allow))["status"], 16) == 1
    assert await call_error(
        chain, lenders.owner, executor, encode_execute_flash_v3(uni.address, weth, 10**18, hops, 0)
    )

    # Only the owner starts these cycles and sets their lenders.
    for data in (
        flash_v3,
        encode_execute_flash_balancer(weth, 10**18, hops, 0),
        encode_set_v3_factory(stranger, True),
        encode_set_balancer_vault(stranger),
    ):
        assert _selector("NotOwner()") in (await call_error(chain, stranger, executor, data) or "")


def _selector(error: str) -> str:
    return "0x" + keccak(text=error)[:4].hex()
