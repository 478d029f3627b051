"""The pure Uniswap V2 math equals what the real contracts compute, to the wei."""

from __future__ import annotations

import math
import random

import pytest

from mevaas_chain import abi
from mevaas_chain.amm.v2 import get_amount_in, get_amount_out
from mevaas_chain.client import Call
from mevaas_local.devnet import Devnet
from tests.fixtures.devnet import call_error, reserves, send

pytestmark = pytest.mark.integration

SWAP_TOPIC = abi.SWAP_TOPIC


def _random_case(rng: random.Random) -> tuple[int, int, int]:
    reserve_in = int(10 ** rng.uniform(3, 33))
    reserve_out = int(10 ** rng.uniform(3, 33))
    amount_in = max(1, int(reserve_in * 10 ** rng.uniform(-9, 1)))
    return amount_in, reserve_in, reserve_out


async def test_router_get_amount_out_and_in_match_over_random_inputs(devnet: Devnet) -> None:
    chain = devnet.main
    router = chain.deployment.dexes[0].router
    assert router is not None
    rng = random.Random(1)
    cases = [_random_case(rng) for _ in range(400)]
    cases += [(1, 1, 1), (1, 10**18, 1), (10**30, 1, 10**30), (2**112 - 1, 2**112 - 1, 2**112 - 1)]
    outs = await chain.client.batch_call(
        [Call(router, abi.encode_call("getAmountOut(uint256,uint256,uint256)", *c)) for c in cases]
    )
    for case, raw in zip(cases, outs, strict=True):
        assert raw is not None
        assert abi.decode_uint(raw) == get_amount_out(*case), case

    in_cases = [
        (max(1, min(ro - 1, int(ro * rng.uniform(0, 0.9)))), ri, ro) for _, ri, ro in cases[:300] if ro > 1
    ]
    ins = await chain.client.batch_call(
        [Call(router, abi.encode_call("getAmountIn(uint256,uint256,uint256)", *c)) for c in in_cases]
    )
    for case, raw in zip(in_cases, ins, strict=True):
        assert raw is not None
        assert abi.decode_uint(raw) == get_amount_in(*case), case


async def test_real_swaps_pay_exactly_the_predicted_output(devnet: Devnet) -> None:
    chain = devnet.main
    wallet = chain.sim_wallet
    routers = {d.name: d.router for d in chain.deployment.dexes}
    pools = chain.deployment.pools
    rng = random.Random(2)
    state = {p.address: await reserves(chain, p.address) for p in pools}
    txs, expected = [], []
    for _ in range(120):
        pool = rng.choice(pools)
        zero_for_one = rng.random() < 0.5
        r0, r1 = state[pool.address]
        reserve_in, reserve_out = (r0, r1) if zero_for_one else (r1, r0)
        amount_in = max(1, int(reserve_in * math.exp(rng.uniform(math.log(1e-7), math.log(0.05)))))
        out = get_amount_out(amount_in, reserve_in, reserve_out)
        state[pool.address] = (r0 + amount_in, r1 - out) if zero_for_one else (r0 - out, r1 + amount_in)
        path = [pool.token0, pool.token1] if zero_for_one else [pool.token1, pool.token0]
        data = abi.encode_call(
            "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
            amount_in,
            0,
            path,
            wallet,
            2**63,
        )
        txs.append({"from": wallet, "to": routers[pool.dex], "data": "0x" + data.hex(), "gas": hex(250_000)})
        expected.append((pool.address, zero_for_one, amount_in, out))
    receipts = await chain.producer.transact(txs)
    assert len({r["blockNumber"] for r in receipts}) == 1
    for receipt, (pair, zero_for_one, amount_in, out) in zip(receipts, expected, strict=True):
        assert int(receipt["status"], 16) == 1
        (swap,) = [lg for lg in receipt["logs"] if lg["topics"][0] == SWAP_TOPIC]
        assert swap["address"].lower() == pair.lower()
        a0_in, a1_in, a0_out, a1_out = (int(swap["data"][2 + 64 * i : 66 + 64 * i], 16) for i in range(4))
        assert (a0_in, a1_out) == (amount_in, out) if zero_for_one else (a1_in, a0_out) == (amount_in, out)
    for address, predicted in state.items():
        assert await reserves(chain, address) == predicted


async def test_one_wei_more_than_get_amount_out_hits_the_k_check(devnet: Devnet) -> None:
    chain = devnet.main
    wallet = chain.sim_wallet
    rng = random.Random(3)
    for pool in rng.sample(chain.deployment.pools, 12):
        zero_for_one = rng.random() < 0.5
        token_in = pool.token0 if zero_for_one else pool.token1
        r0, r1 = await reserves(chain, pool.address)
        reserve_in, reserve_out = (r0, r1) if zero_for_one else (r1, r0)
        amount_in = max(1, int(reserve_in * 10 ** rng.uniform(-6, -1.5)))
        receipt = await send(
            chain, wallet, token_in, abi.encode_call("transfer(address,uint256)", pool.address, amount_in)
        )
        assert int(receipt["status"], 16) == 1
        out = get_amount_out(amount_in, reserve_in, reserve_out)

        def swap(amount: int, zfo: bool = zero_for_one) -> bytes:
            outs = (0, amount) if zfo else (amount, 0)
            return abi.encode_call("swap(uint256,uint256,address,bytes)", *outs, wallet, b"")

        error = await call_error(chain, wallet, pool.address, swap(out + 1))
        assert error is not None and "UniswapV2: K" in error
        assert await call_error(chain, wallet, pool.address, swap(out)) is None
        assert int((await send(chain, wallet, pool.address, swap(out)))["status"], 16) == 1
