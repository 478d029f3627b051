"""Strategy engine benchmark: per-block evaluation of N tenants x M strategies on a synthetic market.

The market is mevaas_chain's deterministic synthetic Uniswap V2 market. Every strategy is a
`dex_arbitrage` over the whole token universe from one of the three base tokens (WETH, USDC,
WBTC), with its own max position. Each block moves `--changed` random pools (`drift`).

* incremental (the engine): each strategy re-evaluates only the cycles through the block's
  changed pools, and the exact optimum of a route is computed once per block for all strategies;
* naive baseline: every strategy re-evaluates every one of its cycles every block, each on its
  own (cycle structures are still cached, so the baseline pays only evaluation).

Both must find the same opportunities on every block (asserted). Prints per-block latency
(median, p90 over the blocks) and the ratio.

    .venv/bin/python bench/bench_strategy.py [--tenants 10] [--strategies 5] [--pools 1500]
"""

from __future__ import annotations

import argparse
import statistics
import time

from mevaas.common.v1 import common_pb2
from mevaas_chain.amm.synthetic import drift, synthetic_market
from mevaas_chain.pool_index import Pool
from mevaas_strategy.domain.arbitrage import DexArbitrage
from mevaas_strategy.domain.market import ChainMarket, MarketView
from mevaas_strategy.domain.model import StrategySpec, TokenRef
from mevaas_strategy.domain.plugins import Candidate

CHAIN_ID = 1


def build_specs(
    tenants: int, per_tenant: int, bases: tuple[str, ...], tokens: tuple[str, ...]
) -> list[StrategySpec]:
    specs = []
    for t in range(tenants):
        for m in range(per_tenant):
            base = bases[(t + m) % len(bases)]
            specs.append(
                StrategySpec(
                    strategy_id=f"s{t}-{m}",
                    tenant_id=f"t{t}",
                    version=1,
                    type=common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
                    chain_ids=(CHAIN_ID,),
                    tokens=tuple(TokenRef(CHAIN_ID, a) for a in tokens),
                    dexes=frozenset(),
                    base_token=TokenRef(CHAIN_ID, base),
                    allocation=10**30,
                    max_position=10 ** (20 + m),
                    max_hops=3,
                    min_profit=0,
                    max_slippage_bps=50,
                    max_gas_price_wei=10**12,
                    execution_delay_ms=0,
                    retry_attempts=0,
                    submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
                )
            )
    return specs


def key(candidates: list[Candidate]) -> list[tuple[str, int, int]]:
    return sorted((c.route_key, c.expected_profit, c.gas_cost) for c in candidates)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--strategies", type=int, default=5, help="strategies per tenant")
    parser.add_argument("--pools", type=int, default=1500)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--changed", type=int, default=20, help="pools changed per block")
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()

    synthetic = synthetic_market(args.pools, args.tokens, seed=7)
    pools = {
        p.address: Pool(p.address, "uni", p.token0, p.token1, p.fee_bps, p.reserve0, p.reserve1)
        for p in synthetic.pools
    }
    by_address = {p.address: p for p in synthetic.pools}
    weth = synthetic.base_tokens[0]
    market = ChainMarket(
        chain_id=CHAIN_ID,
        block_number=1,
        block_hash="0x01",
        base_fee=10**9,
        priority_fee=10**9,
        pools=pools,
        wrapped_native=weth,
        symbols={weth: "WETH"},
        decimals=synthetic.token_decimals,
    )
    tokens = tuple(sorted(synthetic.token_prices))
    specs = build_specs(args.tenants, args.strategies, synthetic.base_tokens, tokens)
    view = MarketView(chains={CHAIN_ID: market})
    incremental = [DexArbitrage(s) for s in specs]
    naive = [DexArbitrage(s) for s in specs]
    # Warm-up: enumerate the cycle structures (shared, cached) and a first full evaluation.
    for plugin in incremental:
        plugin.on_market_update(view, None)
    cycles = sum(len(v[0]) for k, v in view.memo.items() if k[0] == "cycles")

    inc_times: list[float] = []
    naive_times: list[float] = []
    found = 0
    for block in range(args.blocks):
        updates = drift(synthetic, args.changed, seed=1000 + block)
        for address, (r0, r1) in updates.items():
            pools[address] = Pool(
                address, "uni", pools[address].token0, pools[address].token1, pools[address].fee_bps, r0, r1
            )
            by_address[address].reserve0, by_address[address].reserve1 = r0, r1
        market.block_number += 1
        changed = {CHAIN_ID: frozenset(updates)}

        start = time.perf_counter()
        view.per_block.clear()
        inc_found: list[list[Candidate]] = [p.on_market_update(view, changed) for p in incremental]
        inc_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        naive_found: list[list[Candidate]] = []
        for plugin in naive:
            view.per_block.clear()
            naive_found.append(plugin.on_market_update(view, None))
        naive_times.append(time.perf_counter() - start)

        # The naive scan finds every standing opportunity; the incremental one those the block touched.
        for inc, full in zip(inc_found, naive_found, strict=True):
            touched = [c for c in full if any(h.pool in updates for h in c.hops)]
            assert key(inc) == key(touched), "incremental and naive evaluation disagree"
        found += sum(len(x) for x in inc_found)

    inc_p50, naive_p50 = statistics.median(inc_times), statistics.median(naive_times)
    print(
        f"market: {args.pools} pools, {args.tokens} tokens; {len(specs)} strategies "
        f"({args.tenants} tenants x {args.strategies}); {cycles} distinct cycles; "
        f"{args.changed} pools changed per block; {args.blocks} blocks; {found} opportunities found"
    )
    print(
        f"incremental engine : p50 {inc_p50 * 1000:9.2f} ms/block   p90 {percentile(inc_times, 0.9) * 1000:9.2f} ms"
    )
    print(
        f"naive per strategy : p50 {naive_p50 * 1000:9.2f} ms/block   p90 {percentile(naive_times, 0.9) * 1000:9.2f} ms"
    )
    print(f"ratio (naive / incremental, p50): {naive_p50 / inc_p50:.1f}x")


if __name__ == "__main__":
    main()
