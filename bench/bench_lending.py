"""Lending benchmark: the per-block liquidation scan over N Aave V3 positions on the devnet.

* Ours: the lending index (``mevaas_chain.lending``) holds every position; a block's scan is the
  protocol's own account-data math over all of them in memory (plus the index's one-block sync).
* Baseline, measured in the same run on the same positions: what a simple bot does, one
  ``getUserAccountData`` eth_call per position per block.

Both must find the same set of positions under health factor 1. Usage:
``python -m bench.bench_lending [positions]`` (default 10000; opening them takes a few minutes).
"""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal

from mevaas_chain import abi
from mevaas_chain.lending.index import LendingIndex, LendingMarket
from mevaas_chain.lending.math import WAD, account_data
from mevaas_local.devnet import Devnet
from mevaas_local.devnet.aave import supply_liquidity
from mevaas_local.devnet.core import spec_prices
from mevaas_local.devnet.lending_sim import plan_borrowers, seed_borrowers

# Borrowers opened per flush (3 transactions each, one block): 500 timed out waiting for the
# block on a loaded 2-core machine (the relay waits 30 s for receipts).
BATCH = 100


async def main(positions: int) -> None:
    async with Devnet(block_time_s=None, data_dir=None, sim_swaps_per_block=0) as devnet:
        chain = devnet.main
        assert chain.lending is not None
        prices = spec_prices(chain.spec)
        market = chain.lending.market
        started = time.perf_counter()
        # Enough of every reserve to lend: the default $20M each serves the default 40 borrowers.
        await supply_liquidity(
            chain.client,
            chain.transact,
            chain.deployment,
            market,
            supplier=chain.deployer,
            prices_usd=prices,
            usd_each=Decimal(positions) * 100_000,
        )
        plans = plan_borrowers(market, seed=99, count=positions)
        for i in range(0, positions, BATCH):
            await seed_borrowers(
                chain.client,
                chain.transact,
                chain.deployment,
                market,
                plans[i : i + BATCH],
                deployer=chain.deployer,
                prices_usd=prices,
                seed=99 + i,
            )
        print(f"opened {positions} positions in {time.perf_counter() - started:.1f} s")
        await chain.lending.oracle.pin("WETH", prices["WETH"] * Decimal("0.95"), chain.transact)

        lending_market = LendingMarket.from_contracts(chain.config.contracts)
        assert lending_market is not None
        index = LendingIndex(chain.client, lending_market)
        t0 = time.perf_counter()
        await index.load()
        load_s = time.perf_counter() - t0
        users = [b.address for b in plans]

        await chain.mine()
        t0 = time.perf_counter()
        await index.sync()
        now = index.head_timestamp
        ours = {
            u
            for u in users
            if account_data(index.positions[u], index.reserves, index.prices, now).health_factor < WAD
        }
        ours_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        baseline: set[str] = set()
        head = index.head[0]
        for u in users:
            raw = await chain.client.call(
                lending_market.pool, abi.encode_call("getUserAccountData(address)", u), head
            )
            if abi.decode_result(["uint256"] * 6, raw)[5] < WAD:
                baseline.add(u)
        baseline_s = time.perf_counter() - t0
        assert ours == baseline, "the scan and the pool disagree on who is liquidatable"
        print(f"index load (once): {load_s:.2f} s")
        print(f"per-block scan, lending index: {ours_s * 1000:.1f} ms for {positions} positions")
        print(f"per-block scan, getUserAccountData loop (baseline): {baseline_s * 1000:.1f} ms")
        print(f"speed-up {baseline_s / ours_s:.1f}x; both found {len(ours)} positions under HF 1")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
