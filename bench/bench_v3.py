"""Uniswap V3 quote benchmark on the devnet: the Python swap math against QuoterV2.

* Ours: ``mevaas_chain.amm.v3.swap`` over the pool state the reader took once
  (``read_pool_state``; its cost is reported separately, it is paid once and then kept up to date).
* Baseline, same run, same swaps: one QuoterV2 ``eth_call`` per quote against the local anvil, as a
  bot without its own V3 math does (no network latency, so the real gap is larger).

Every quote must be equal, to the wei, in amount and price after. The swaps are random (seeded):
both directions, exact input and output, a third with a price limit, many crossing initialised
ticks. Usage: ``python -m bench.bench_v3 [swaps]`` (default 2000).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time

from mevaas_chain.amm import v3
from mevaas_chain.v3_pools import (
    decode_quote,
    quote_exact_input_single,
    quote_exact_output_single,
    read_pool_state,
)
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.core import spec_prices
from mevaas_local.devnet.uniswap_v3 import deploy_uniswap_v3, random_swap


def _percentiles(samples_s: list[float]) -> str:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"


async def main(count: int) -> None:
    async with Devnet(block_time_s=None, data_dir=None, sim_swaps_per_block=0) as devnet:
        chain = devnet.main
        prices = {symbol: float(p) for symbol, p in spec_prices(chain.spec).items()}
        deployment = await deploy_uniswap_v3(
            chain.client, chain.transact, chain.deployment, deployer=chain.deployer, prices=prices
        )
        block = await chain.client.block_number()
        t0 = time.perf_counter()
        states = {p.address: await read_pool_state(chain.client, p.address, block) for p in deployment.pools}
        read_s = (time.perf_counter() - t0) / len(states)
        rng = random.Random(2026)
        cases = [
            random_swap(rng, pool, states[pool.address]) for pool in rng.choices(deployment.pools, k=count)
        ]

        ours_s: list[float] = []
        results: list[v3.V3SwapResult] = []
        for case in cases:
            state = states[case.pool.address]
            t0 = time.perf_counter()
            result = v3.swap(state, case.zero_for_one, case.amount, case.limit)
            ours_s.append(time.perf_counter() - t0)
            results.append(result)

        quoter_s: list[float] = []
        crossing = 0
        for case, result in zip(cases, results, strict=True):
            token_in, token_out = case.tokens
            encode = quote_exact_input_single if case.amount > 0 else quote_exact_output_single
            data = encode(token_in, token_out, case.pool.fee, abs(case.amount), case.limit or 0)
            t0 = time.perf_counter()
            quote = decode_quote(await chain.client.call(deployment.quoter, data, block))
            quoter_s.append(time.perf_counter() - t0)
            paid_in, paid_out = (
                (result.amount0, result.amount1) if case.zero_for_one else (result.amount1, result.amount0)
            )
            expected = -paid_out if case.amount > 0 else paid_in
            assert (quote.amount, quote.sqrt_price_x96_after) == (expected, result.sqrt_price_x96), case
            crossing += result.initialized_ticks_crossed > 0

        print(
            f"{count} swaps over {len(states)} pools, {crossing} crossing initialised ticks; all equal to QuoterV2"
        )
        print(f"pool state read (once per pool): {read_s * 1000:.1f} ms")
        print(f"python v3.swap:      {_percentiles(ours_s)}, total {sum(ours_s) * 1000:.0f} ms")
        print(f"QuoterV2 eth_call:   {_percentiles(quoter_s)}, total {sum(quoter_s) * 1000:.0f} ms")
        print(f"speed-up (p50) {statistics.median(quoter_s) / statistics.median(ours_s):.0f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
