"""The Executor swapping Uniswap V3 pools (deployed from the npm artifacts on the shared devnet):
a mixed V2/V3 cycle and a V3-only cycle pay, hop by hop, exactly what ``route_quote`` predicts,
and the callback pays only the genuine pool of an allowed factory that the executor is calling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.contracts.build import compile_contracts
from mevaas_chain.executor import (
    HOP_V2,
    HOP_V3,
    ExecutorHop,
    decode_executed,
    encode_execute,
    encode_set_v3_factory,
)
from mevaas_chain.route_quote import read_route_pools, route_amounts
from mevaas_chain.v3_pools import decode_swap_log, exact_input_single, read_pool_state
from mevaas_local.devnet import Devnet, DevnetChain, PoolInfo
from mevaas_local.devnet.deploy import NO_DEADLINE, Batch, deploy_data
from mevaas_local.devnet.uniswap_v3 import (
    CORE,
    V3Deployment,
    V3Pool,
    load_hardhat_artifact,
)
from tests.fixtures.devnet import call_error, send, skew_pool
from tests.fixtures.uniswap_v3 import deploy_funded_v3

pytestmark = pytest.mark.integration

FAKE_POOL_SOURCE = Path(__file__).resolve().parents[2] / "fixtures" / "contracts" / "FakeV3Pool.sol"


def _selector(error: str) -> str:
    return keccak(text=error)[:4].hex()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uniswap_v3(devnet: Devnet) -> V3Deployment:
    """V3 on the main chain, its factory allowed by the devnet's executor, which holds inventory."""
    chain = devnet.main
    return await deploy_funded_v3(
        chain, executor_owner=chain.executor_owner, funded=[chain.deployment.contracts["executor"]]
    )


def _v2(chain: DevnetChain, a: str, b: str) -> PoolInfo:
    ta, tb = chain.deployment.token(a).address, chain.deployment.token(b).address
    return next(p for p in chain.deployment.pools if p.dex == "uniswap" and {p.token0, p.token1} == {ta, tb})


def _v3(chain: DevnetChain, v3d: V3Deployment, a: str, b: str, fee: int) -> V3Pool:
    ta, tb = chain.deployment.token(a).address, chain.deployment.token(b).address
    return next(p for p in v3d.pools if p.fee == fee and {p.token0, p.token1} == {ta, tb})


Leg = tuple[str, str, str, int]  # (pool, token0, token1, kind)


def _route(start: str, legs: Sequence[Leg]) -> list[ExecutorHop]:
    hops, token = [], start
    for pool, token0, token1, kind in legs:
        zero_for_one = token == token0
        hops.append(ExecutorHop(pool, zero_for_one, 30, kind))
        token = token1 if zero_for_one else token0
    assert token == start
    return hops


async def _best(
    chain: DevnetChain, start: str, legs: Sequence[Leg], cap: int
) -> tuple[list[ExecutorHop], list[int]] | None:
    """The most profitable of a grid of inputs up to ``cap`` (fine near the top, geometric below),
    over both directions of the cycle, as ``route_quote`` predicts it on the head block."""
    block = await chain.client.block_number()
    inputs = sorted({cap * k // 32 for k in range(1, 33)} | {cap >> s for s in range(1, 16)})
    best: tuple[list[ExecutorHop], list[int]] | None = None
    for order in (list(legs), list(legs)[::-1]):
        hops = _route(start, order)
        pools = await read_route_pools(chain.client, hops, block)
        for amount in inputs:
            amounts = route_amounts(amount, hops, pools)
            gain = amounts[-1] - amounts[0]
            if gain > 0 and (best is None or gain > best[1][-1] - best[1][0]):
                best = (hops, amounts)
    return best


def _hop_outputs(receipt: dict[str, Any], hops: Sequence[ExecutorHop]) -> list[int]:
    """What each hop's pool paid out, from its own Swap event in the receipt."""
    outputs = []
    for hop in hops:
        logs = [log for log in receipt["logs"] if log["address"].lower() == hop.pair.lower()]
        if hop.kind == HOP_V3:
            (event,) = [e for e in map(decode_swap_log, logs) if e is not None]
            outputs.append(-(event.amount1 if hop.zero_for_one else event.amount0))
        else:
            (swap,) = [log for log in logs if log["topics"][0] == abi.SWAP_TOPIC]
            _, _, out0, out1 = decode(["uint256"] * 4, bytes.fromhex(swap["data"][2:]))
            outputs.append(out1 if hop.zero_for_one else out0)
    return outputs


async def _execute_best(
    chain: DevnetChain, start: str, legs: Sequence[Leg], open_gap: Callable[[int], Awaitable[None]], cap: int
) -> None:
    """Open a gap (doubling it until a cycle pays), execute the best predicted input, and check
    every hop and the profit against the prediction, to the wei."""
    executor = chain.deployment.contracts["executor"]
    found = None
    for attempt in range(8):
        await open_gap(attempt)
        found = await _best(chain, start, legs, cap)
        if found is not None:
            break
    assert found is not None, "could not open a profitable gap"
    hops, amounts = found
    profit = amounts[-1] - amounts[0]
    receipt = await send(
        chain, chain.executor_owner, executor, encode_execute(start, amounts[0], hops, profit), gas=2_000_000
    )
    assert int(receipt["status"], 16) == 1
    assert _hop_outputs(receipt, hops) == amounts[1:]
    event = decode_executed(receipt, executor)
    assert event is not None and event.profit == profit and event.amount_in == amounts[0]


async def test_mixed_v2_v3_cycle_pays_each_hop_as_predicted(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    usdc_weth, usdt_weth = _v2(chain, "WETH", "USDC"), _v2(chain, "WETH", "USDT")
    stable = _v3(chain, uniswap_v3, "USDC", "USDT", 500)
    # WETH -> USDC (V2) -> USDT (V3) -> WETH (V2), or back: both a V2 hop feeding a V3 pool (paid
    # from the executor in the callback) and a V3 pool paying straight into a V2 pair.
    legs = [
        (usdc_weth.address, usdc_weth.token0, usdc_weth.token1, HOP_V2),
        (stable.address, stable.token0, stable.token1, HOP_V3),
        (usdt_weth.address, usdt_weth.token0, usdt_weth.token1, HOP_V2),
    ]

    async def open_gap(attempt: int) -> None:
        await skew_pool(chain, usdc_weth.address, "WETH", (100 * 10**18) << attempt)

    await _execute_best(chain, weth, legs, open_gap, 200 * 10**18)


async def test_v3_only_two_hop_cycle_pays_each_hop_as_predicted(
    devnet: Devnet, uniswap_v3: V3Deployment
) -> None:
    chain = devnet.main
    weth = chain.deployment.token("WETH").address
    usdc = chain.deployment.token("USDC").address
    low, high = _v3(chain, uniswap_v3, "WETH", "USDC", 500), _v3(chain, uniswap_v3, "WETH", "USDC", 3000)
    legs = [(p.address, p.token0, p.token1, HOP_V3) for p in (low, high)]

    async def open_gap(attempt: int) -> None:
        # Sell WETH into the 0.3% pool through SwapRouter: WETH gets cheaper there.
        sold = (50 * 10**18) << attempt
        data = exact_input_single(weth, usdc, high.fee, chain.deployer, sold, deadline=NO_DEADLINE)
        assert int((await send(chain, chain.deployer, uniswap_v3.router, data))["status"], 16) == 1

    await _execute_best(chain, weth, legs, open_gap, 200 * 10**18)


async def _deploy(chain: DevnetChain, bytecode: bytes, types: Sequence[str], args: Sequence[object]) -> str:
    batch = Batch(chain.client)
    address = await batch.deploy(chain.deployer, deploy_data(bytecode, types, args))
    await batch.flush(chain.transact)
    return address


async def _balance(chain: DevnetChain, token: str, owner: str) -> int:
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(owner)))


async def test_a_fake_pool_is_refused(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    executor = chain.deployment.contracts["executor"]
    weth = chain.deployment.token("WETH").address
    real = _v3(chain, uniswap_v3, "WETH", "USDC", 500)
    fake_art = compile_contracts({FAKE_POOL_SOURCE.name: FAKE_POOL_SOURCE.read_text()})["FakeV3Pool"]
    # It claims the allowed factory and the real pool's tokens and fee.
    fake = await _deploy(
        chain,
        fake_art.bytecode,
        ["address", "address", "address", "uint24"],
        [uniswap_v3.factory, real.token0, real.token1, real.fee],
    )
    held = await _balance(chain, weth, executor)
    assert held > 10**18

    # Calling the callback outside any swap of the executor's.
    steal = abi.encode_call("steal(address,address,uint256)", executor, weth, 10**18)
    err = await call_error(chain, chain.deployer, fake, steal)
    assert err is not None and _selector("NotGenuinePool()") in err
    receipt = await send(chain, chain.deployer, fake, steal)
    assert int(receipt["status"], 16) == 0
    assert await _balance(chain, weth, executor) == held

    # Routed through by the owner: the allowed factory's getPool names another pool.
    back = _v2(chain, "WETH", "USDC")
    hops = _route(
        weth,
        [(fake, real.token0, real.token1, HOP_V3), (back.address, back.token0, back.token1, HOP_V2)],
    )
    err = await call_error(chain, chain.executor_owner, executor, encode_execute(weth, 10**18, hops, 0))
    assert err is not None and _selector("NotGenuinePool()") in err


async def test_a_genuine_pool_of_another_factory_is_refused(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    executor = chain.deployment.contracts["executor"]
    weth = chain.deployment.token("WETH").address
    real = _v3(chain, uniswap_v3, "WETH", "USDC", 500)
    other_factory = await _deploy(
        chain, load_hardhat_artifact(CORE, "UniswapV3Factory.sol/UniswapV3Factory").bytecode, [], []
    )
    created = await send(
        chain,
        chain.deployer,
        other_factory,
        abi.encode_call("createPool(address,address,uint24)", real.token0, real.token1, real.fee),
        gas=6_000_000,
    )
    assert int(created["status"], 16) == 1
    pool = abi.decode_address(
        await chain.client.call(
            other_factory,
            abi.encode_call("getPool(address,address,uint24)", real.token0, real.token1, real.fee),
        )
    )
    price = (await read_pool_state(chain.client, real.address)).sqrt_price_x96
    init = await send(chain, chain.deployer, pool, abi.encode_call("initialize(uint160)", price))
    assert int(init["status"], 16) == 1

    back = _v2(chain, "WETH", "USDC")
    hops = _route(
        weth,
        [(pool, real.token0, real.token1, HOP_V3), (back.address, back.token0, back.token1, HOP_V2)],
    )
    err = await call_error(chain, chain.executor_owner, executor, encode_execute(weth, 10**18, hops, 0))
    assert err is not None and _selector("FactoryNotAllowed()") in err


async def test_factory_setters_are_owner_only(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    executor = chain.deployment.contracts["executor"]
    stranger = chain.deployer
    assert stranger.lower() != chain.executor_owner.lower()
    allowed = abi.encode_call("allowedV3Factory(address)", uniswap_v3.factory)
    for data in (
        encode_set_v3_factory(uniswap_v3.factory, False),
        abi.encode_call("setFactory(address,bool)", chain.deployment.dexes[0].factory, False),
    ):
        err = await call_error(chain, stranger, executor, data)
        assert err is not None and _selector("NotOwner()") in err
        assert int((await send(chain, stranger, executor, data))["status"], 16) == 0
    assert abi.decode_uint(await chain.client.call(executor, allowed)) == 1

    # The owner can disallow and allow again.
    for flag in (False, True):
        receipt = await send(
            chain, chain.executor_owner, executor, encode_set_v3_factory(uniswap_v3.factory, flag)
        )
        assert int(receipt["status"], 16) == 1
        assert abi.decode_uint(await chain.client.call(executor, allowed)) == int(flag)


async def test_an_unknown_hop_kind_is_refused(devnet: Devnet, uniswap_v3: V3Deployment) -> None:
    chain = devnet.main
    executor = chain.deployment.contracts["executor"]
    weth = chain.deployment.token("WETH").address
    pool = _v3(chain, uniswap_v3, "WETH", "USDC", 500)
    back = _v2(chain, "WETH", "USDC")
    hops = _route(
        weth,
        [(pool.address, pool.token0, pool.token1, HOP_V3), (back.address, back.token0, back.token1, HOP_V2)],
    )
    # ExecutorHop refuses kind 2 in Python: the call is encoded by hand, as any caller could.
    raw = [(h.pair, h.zero_for_one, h.fee_bps, 2 if h.kind == HOP_V3 else h.kind) for h in hops]
    data = keccak(text="execute(address,uint256,(address,bool,uint16,uint8)[],uint256)")[:4] + encode(
        ["address", "uint256", "(address,bool,uint16,uint8)[]", "uint256"], [weth, 10**18, raw, 0]
    )
    err = await call_error(chain, chain.executor_owner, executor, data)
    assert err is not None and _selector("BadPath()") in err
