"""The inspector on devnet blocks: a staged sandwich through the router and an executor arbitrage
through both DEXes are found with the profits the pairs' own Swap events imply."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import decode

from mevaas_chain import abi
from mevaas_chain.amm.arbitrage import Hop, Pool, legs_of, optimize
from mevaas_chain.amm.v2 import get_amount_out
from mevaas_chain.executor import ExecutorHop, decode_executed, encode_execute
from mevaas_inspector import inspect_rpc_block
from mevaas_local.devnet import Devnet, DevnetChain, PoolInfo
from mevaas_local.devnet.deploy import MAX_UINT, NO_DEADLINE, mint_tokens
from tests.fixtures.devnet import reserves, skew_pool

pytestmark = pytest.mark.integration

SWAP_EXACT_TOKENS = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
GWEI = 10**9


def _pool(chain: DevnetChain, dex: str, a: str, b: str) -> PoolInfo:
    ta, tb = chain.deployment.token(a).address, chain.deployment.token(b).address
    return next(p for p in chain.deployment.pools if p.dex == dex and {p.token0, p.token1} == {ta, tb})


def _swap_events(receipt: dict[str, Any], pair: str) -> list[tuple[int, int, int, int]]:
    """(amount0In, amount1In, amount0Out, amount1Out) of each Swap the pair logged."""
    return [
        tuple(int(v) for v in decode(["uint256"] * 4, bytes.fromhex(log["data"][2:])))  # type: ignore[misc]
        for log in receipt["logs"]
        if log["address"].lower() == pair.lower() and log["topics"][0] == abi.SWAP_TOPIC
    ]


def _router_swap(
    chain: DevnetChain, sender: str, amount_in: int, path: list[str], gas_price: int
) -> dict[str, Any]:
    router = chain.deployment.dexes[0].router
    assert router is not None
    data = abi.encode_call(SWAP_EXACT_TOKENS, amount_in, 0, path, sender, NO_DEADLINE)
    return {
        "from": sender,
        "to": router,
        "data": "0x" + data.hex(),
        "gas": hex(300_000),
        "gasPrice": hex(gas_price),
    }


async def _prepare_trader(chain: DevnetChain, trader: str) -> None:
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=trader,
        amounts={"WETH": 1_000 * 10**18, "USDC": 5_000_000 * 10**6},
    )
    router = chain.deployment.dexes[0].router
    approvals = [
        {
            "from": trader,
            "to": chain.deployment.token(symbol).address,
            "data": "0x" + abi.encode_call("approve(address,uint256)", router, MAX_UINT).hex(),
            "gas": hex(100_000),
        }
        for symbol in ("WETH", "USDC")
    ]
    await chain.producer.transact(approvals, require_success=True)


async def test_staged_sandwich_is_found_with_its_exact_profit(devnet: Devnet) -> None:
    chain = devnet.main
    attacker, victim = devnet.accounts[6].address, devnet.accounts[7].address
    await _prepare_trader(chain, attacker)
    await _prepare_trader(chain, victim)
    pool = _pool(chain, "uniswap", "WETH", "USDC")
    weth, usdc = chain.deployment.token("WETH").address, chain.deployment.token("USDC").address
    r0, r1 = await reserves(chain, pool.address)
    weth_reserve, usdc_reserve = (r0, r1) if pool.token0 == weth else (r1, r0)

    front_in = 20 * 10**18
    bought = get_amount_out(front_in, weth_reserve, usdc_reserve)
    # Gas prices order the three public transactions front, victim, back within the block.
    front, victim_tx, back = await chain.producer.transact(
        [
            _router_swap(chain, attacker, front_in, [weth, usdc], 30 * GWEI),
            _router_swap(chain, victim, 50 * 10**18, [weth, usdc], 20 * GWEI),
            _router_swap(chain, attacker, bought, [usdc, weth], 10 * GWEI),
        ],
        require_success=True,
    )
    block = int(front["blockNumber"], 16)
    assert {int(r["blockNumber"], 16) for r in (victim_tx, back)} == {block}
    assert [int(r["transactionIndex"], 16) for r in (front, victim_tx, back)] == [0, 1, 2]

    weth_is_0 = pool.token0 == weth
    (f_event,) = _swap_events(front, pool.address)
    (b_event,) = _swap_events(back, pool.address)
    f_usdc_out = f_event[3] if weth_is_0 else f_event[2]
    b_weth_out = b_event[2] if weth_is_0 else b_event[3]
    assert f_usdc_out == bought

    found = await inspect_rpc_block(chain.relay.url, block)
    (sandwich,) = found.sandwiches
    assert sandwich.sandwicher_address == attacker.lower()
    assert sandwich.frontrun_swap.transaction_hash == front["transactionHash"]
    assert sandwich.backrun_swap.transaction_hash == back["transactionHash"]
    assert [s.transaction_hash for s in sandwich.sandwiched_swaps] == [victim_tx["transactionHash"]]
    assert sandwich.profit_token_address == weth.lower()
    assert sandwich.profit_amount == sandwich.unprorated_profit_amount == b_weth_out - front_in
    assert sandwich.frontrun_gas is not None
    assert sandwich.frontrun_gas.gas_used == int(front["gasUsed"], 16)
    assert sandwich.frontrun_gas.gas_price == int(front["effectiveGasPrice"], 16)
    assert found.arbitrages == ()


async def test_executor_cycle_through_both_dexes_is_an_arbitrage_with_exact_profit(devnet: Devnet) -> None:
    chain = devnet.main
    executor = chain.deployment.contracts["executor"]
    weth = chain.deployment.token("WETH").address
    uni, sushi = _pool(chain, "uniswap", "WETH", "DAI"), _pool(chain, "sushiswap", "WETH", "DAI")
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=executor,
        amounts={"WETH": 5_000 * 10**18},
    )
    best = None
    for attempt in range(8):
        await skew_pool(chain, sushi.address, "DAI", 150_000 * 10**18 << attempt)
        live = []
        for p in (uni, sushi):
            r0, r1 = await reserves(chain, p.address)
            live.append(Pool(p.address, p.token0, p.token1, r0, r1))
        for order in (live, live[::-1]):
            hops = [Hop.from_token_in(order[0], weth)]
            hops.append(Hop.from_token_in(order[1], hops[0].token_out))
            result = optimize(legs_of(hops))
            if result is not None and (best is None or result.profit > best[1].profit):
                best = (hops, result)
        if best is not None:
            break
    assert best is not None
    hops, result = best
    data = encode_execute(
        weth, result.amount_in, [ExecutorHop(h.pool.address, h.zero_for_one, h.pool.fee_bps) for h in hops], 0
    )
    tx = {"from": chain.executor_owner, "to": executor, "data": "0x" + data.hex(), "gas": hex(1_000_000)}
    (receipt,) = await chain.producer.transact([tx], require_success=True)
    executed = decode_executed(receipt, executor)
    assert executed is not None and executed.profit == result.profit

    # Independently from the pairs' Swap events: WETH out of the last pool minus WETH into the first.
    (first,) = _swap_events(receipt, hops[0].pool.address)
    (last,) = _swap_events(receipt, hops[1].pool.address)
    weth_in = first[0] if hops[0].zero_for_one else first[1]
    weth_out = last[3] if hops[1].zero_for_one else last[2]
    assert weth_in == result.amount_in

    found = await inspect_rpc_block(chain.relay.url, int(receipt["blockNumber"], 16))
    (arbitrage,) = found.arbitrages
    assert arbitrage.transaction_hash == receipt["transactionHash"]
    assert arbitrage.account_address == executor.lower()
    assert arbitrage.profit_token_address == weth.lower()
    assert arbitrage.start_amount == weth_in
    assert arbitrage.end_amount == weth_out
    assert arbitrage.profit_amount == arbitrage.gross_profit_amount == weth_out - weth_in == executed.profit
    assert [s.contract_address for s in arbitrage.swaps] == [h.pool.address.lower() for h in hops]
    assert arbitrage.gas is not None and arbitrage.gas.gas_used == int(receipt["gasUsed"], 16)
    assert found.sandwiches == ()
