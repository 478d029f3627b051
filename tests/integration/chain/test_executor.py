"""The Executor contract against real Uniswap V2 pairs, sized by the closed-form optimum."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.amm.arbitrage import ArbitrageResult, Hop, Pool, legs_of, optimize_route
from mevaas_chain.client import RpcError
from mevaas_chain.executor import ExecutorHop, decode_executed, encode_execute, encode_execute_flash
from mevaas_local.devnet import Devnet, DevnetChain, PoolInfo
from mevaas_local.devnet.deploy import mint_tokens
from tests.fixtures.devnet import call_error, reserves, send, skew_pool

pytestmark = pytest.mark.integration


def _selector(error: str) -> str:
    return keccak(text=error)[:4].hex()


def _pool(chain: DevnetChain, dex: str, a: str, b: str) -> PoolInfo:
    ta, tb = chain.deployment.token(a).address, chain.deployment.token(b).address
    return next(p for p in chain.deployment.pools if p.dex == dex and {p.token0, p.token1} == {ta, tb})


async def _make_gap(
    chain: DevnetChain, pools: Sequence[PoolInfo], skewed: PoolInfo, symbol: str, amount: int
) -> tuple[list[Hop], ArbitrageResult]:
    """Donate ``symbol`` to ``skewed`` until the cycle is profitable (earlier tests leave prices
    anywhere, so one donation may first close an existing gap), then size the cycle."""
    for attempt in range(8):
        await skew_pool(chain, skewed.address, symbol, amount << attempt)
        found = await _best_cycle(chain, pools, "WETH")
        if found is not None:
            return found
    raise AssertionError("could not open a profitable gap")


async def _best_cycle(
    chain: DevnetChain, pools: Sequence[PoolInfo], start: str
) -> tuple[list[Hop], ArbitrageResult] | None:
    """The more profitable direction of a cycle through ``pools`` starting in token ``start``."""
    live = []
    for p in pools:
        r0, r1 = await reserves(chain, p.address)
        live.append(Pool(p.address, p.token0, p.token1, r0, r1))
    best: tuple[list[Hop], ArbitrageResult] | None = None
    for order in (live, live[::-1]):
        hops, token = [], chain.deployment.token(start).address
        for pool in order:
            hop = Hop.from_token_in(pool, token)
            hops.append(hop)
            token = hop.token_out
        result = optimize_route(legs_of(hops))
        if result is not None and (best is None or result.profit > best[1].profit):
            best = (hops, result)
    return best


def _executor_hops(hops: Sequence[Hop]) -> list[ExecutorHop]:
    return [ExecutorHop(h.pool.address, h.zero_for_one, h.pool.fee_bps) for h in hops]


async def _eth_call_profit(chain: DevnetChain, data: bytes) -> int | None:
    executor = chain.deployment.contracts["executor"]
    try:
        raw = await chain.client.call_from(chain.executor_owner, executor, data)
    except RpcError:
        return None
    return abi.decode_uint(raw)


@pytest.fixture
async def funded_executor(devnet: Devnet) -> str:
    chain = devnet.main
    executor = chain.deployment.contracts["executor"]
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=executor,
        amounts={"WETH": 5_000 * 10**18},
    )
    return executor


async def test_own_capital_cycle_realises_the_predicted_profit(devnet: Devnet, funded_executor: str) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    uni, sushi = _pool(chain, "uniswap", "WETH", "USDC"), _pool(chain, "sushiswap", "WETH", "USDC")
    hops, result = await _make_gap(chain, [uni, sushi], uni, "USDC", 300_000 * 10**6)
    assert result.profit > 0

    # On chain, the optimum beats inputs 1% either side.
    def execute(amount: int) -> bytes:
        return encode_execute(weth, amount, _executor_hops(hops), 0)

    at_opt = await _eth_call_profit(chain, execute(result.amount_in))
    assert at_opt == result.profit
    for other in (result.amount_in * 99 // 100, result.amount_in * 101 // 100):
        profit = await _eth_call_profit(chain, execute(other))
        assert profit is None or profit < at_opt

    before = abi.decode_uint(await chain.client.call(weth, abi.balance_of(funded_executor)))
    receipt = await send(
        chain,
        chain.executor_owner,
        funded_executor,
        encode_execute(weth, result.amount_in, _executor_hops(hops), result.profit),
    )
    assert int(receipt["status"], 16) == 1
    event = decode_executed(receipt, funded_executor)
    assert event is not None and event.profit == result.profit and not event.flash
    after = abi.decode_uint(await chain.client.call(weth, abi.balance_of(funded_executor)))
    assert after - before == result.profit


async def test_flash_cycles_two_and_three_hops_realise_the_predicted_profit(
    devnet: Devnet, funded_executor: str
) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    uni_factory = chain.deployment.dexes[0].factory
    sushi_factory = chain.deployment.dexes[1].factory
    cases = [
        (
            [_pool(chain, "sushiswap", "WETH", "DAI"), _pool(chain, "uniswap", "WETH", "DAI")],
            "sushiswap",
            "DAI",
            150_000 * 10**18,
        ),
        (
            [
                _pool(chain, "uniswap", "WETH", "USDC"),
                _pool(chain, "uniswap", "USDC", "USDT"),
                _pool(chain, "sushiswap", "WETH", "USDT"),
            ],
            "uniswap",
            "USDT",
            400_000 * 10**6,
        ),
    ]
    for pools, skewed_dex, symbol, amount in cases:
        skewed = next(
            p
            for p in pools
            if p.dex == skewed_dex and chain.deployment.token(symbol).address in (p.token0, p.token1)
        )
        hops, result = await _make_gap(chain, pools, skewed, symbol, amount)
        factory = (
            uni_factory
            if next(p for p in pools if p.address == hops[0].pool.address).dex == "uniswap"
            else sushi_factory
        )
        before = abi.decode_uint(await chain.client.call(weth, abi.balance_of(funded_executor)))
        data = encode_execute_flash(factory, weth, result.amount_in, _executor_hops(hops), result.profit)
        receipt = await send(chain, chain.executor_owner, funded_executor, data)
        assert int(receipt["status"], 16) == 1, len(hops)
        event = decode_executed(receipt, funded_executor)
        assert event is not None and event.flash and event.profit == result.profit
        after = abi.decode_uint(await chain.client.call(weth, abi.balance_of(funded_executor)))
        assert after - before == result.profit


async def test_unprofitable_and_unauthorised_calls_revert(devnet: Devnet, funded_executor: str) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    uni, sushi = _pool(chain, "uniswap", "WETH", "LINK"), _pool(chain, "sushiswap", "WETH", "LINK")
    hops, result = await _make_gap(chain, [uni, sushi], sushi, "LINK", 5_000 * 10**18)
    ex_hops = _executor_hops(hops)
    owner, stranger = chain.executor_owner, chain.demo_wallets[1]

    too_greedy = encode_execute(weth, result.amount_in, ex_hops, result.profit + 1)
    error = await call_error(chain, owner, funded_executor, too_greedy)
    assert error is not None and _selector("InsufficientProfit(uint256,uint256)") in error
    flash_greedy = encode_execute_flash(
        chain.deployment.dexes[0].factory, weth, result.amount_in, ex_hops, result.profit + 1
    )
    assert await call_error(chain, owner, funded_executor, flash_greedy) is not None
    # The wrong direction of the same cycle loses money: it reverts even with minProfit 0.
    reverse = [ExecutorHop(h.pair, not h.zero_for_one, h.fee_bps) for h in reversed(ex_hops)]
    assert (
        await call_error(chain, owner, funded_executor, encode_execute(weth, result.amount_in, reverse, 0))
        is not None
    )
    receipt = await send(chain, owner, funded_executor, too_greedy)
    assert int(receipt["status"], 16) == 0

    for data in (
        encode_execute(weth, result.amount_in, ex_hops, 0),
        encode_execute_flash(chain.deployment.dexes[0].factory, weth, result.amount_in, ex_hops, 0),
        abi.encode_call("withdraw(address,address,uint256)", weth, stranger, 1),
    ):
        error = await call_error(chain, stranger, funded_executor, data)
        assert error is not None and _selector("NotOwner()") in error

    # A flash callback from anything but the pair it is borrowing from, mid-executeFlash, reverts:
    # a stranger, a genuine pair outside a flash swap, a pair-like caller claiming the executor.
    callback = abi.encode_call("uniswapV2Call(address,uint256,uint256,bytes)", funded_executor, 1, 0, b"")
    for caller in (stranger, uni.address, sushi.address):
        error = await call_error(chain, caller, funded_executor, callback)
        assert error is not None and _selector("NotGenuinePair()") in error


async def test_owner_can_withdraw(devnet: Devnet, funded_executor: str) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    owner = chain.executor_owner
    before = abi.decode_uint(await chain.client.call(weth, abi.balance_of(owner)))
    receipt = await send(
        chain,
        owner,
        funded_executor,
        abi.encode_call("withdraw(address,address,uint256)", weth, owner, 10**18),
    )
    assert int(receipt["status"], 16) == 1
    assert abi.decode_uint(await chain.client.call(weth, abi.balance_of(owner))) == before + 10**18
