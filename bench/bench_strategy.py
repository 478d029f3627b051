"""Strategy engine benchmark: per-block evaluation of 1, 10, 100 and 1,000 running strategies.

The market is mevaas_chain's deterministic synthetic Uniswap V2 market (10,000 pools over 2,000
tokens by default, the pools split between two DEXes). Each block moves `--changed` random pools
(`drift`, up to 3% in price, so blocks open opportunities). The strategies differ as a fleet's do: `dex_arbitrage` or `flash_arbitrage`, one of the
three base tokens (WETH, USDC, WBTC), their own max position and min profit, all DEXes or one, the
whole token universe or most of it, 2 or 3 hops.

* per strategy (the engine before shared evaluation): every strategy's own `on_market_update` on the
  block's changed pools; each walks the cycles of its universe through those pools in Python (the
  exact optimum of a route is cached per block across strategies);
* shared (`mevaas_strategies.shared.CycleScan`, the engine now): the cycles through the changed pools
  are screened once with NumPy, the survivors verified exactly once, and fanned out to the
  strategies that admit them.

Figures are wall time (p50, p90) and CPU time of the process (p50; steadier when the machine is
shared). Both then pick each strategy's publishable set (`best_disjoint`), as the engine does. Every block,
both must give every strategy the same candidates and the same picks (asserted). Figures: median
and p90 per block over `--blocks` blocks, and per strategy. Goal (issue 15): 1,000 strategies
within 25 ms per block on this 2-core machine.

Last, the event loop's lag while a block is evaluated (`--loop-strategies`): per-strategy
evaluation on the loop (the engine before), shared evaluation on the loop, and shared evaluation on
the engine's worker thread (the engine now), opportunity messages included.

    .venv/bin/python bench/bench_strategy.py [--counts 1,10,100,1000] [--pools 10000] [--blocks 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import cast

from mevaas.common.v1 import common_pb2
from mevaas_chain.amm.synthetic import SyntheticMarket, drift, synthetic_market
from mevaas_chain.pool_index import Pool
from mevaas_strategies.arbitrage import CycleTerms, DexArbitrage, FlashArbitrage
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.plugins import Candidate, StrategyPlugin
from mevaas_strategies.selection import best_disjoint
from mevaas_strategies.shared import CycleScan, CycleStrategies, picks
from mevaas_strategy.evaluation import MarketEvaluation, RunningStrategy

CHAIN_ID = 1
DEXES = ("uni", "sushi")


def build_plugins(
    n: int, bases: tuple[str, ...], tokens: tuple[str, ...]
) -> list[DexArbitrage | FlashArbitrage]:
    """`n` strategies of `n` tenants, varied deterministically by index."""
    most = tokens[: len(tokens) * 4 // 5]
    plugins: list[DexArbitrage | FlashArbitrage] = []
    for i in range(n):
        flash = i % 4 == 3
        spec = StrategySpec(
            strategy_id=f"s{i}",
            tenant_id=f"t{i}",
            version=1,
            type=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE
            if flash
            else common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
            chain_ids=(CHAIN_ID,),
            tokens=tuple(TokenRef(CHAIN_ID, a) for a in (most if i % 5 == 4 else tokens)),
            dexes=frozenset() if i % 3 else frozenset({DEXES[0]}),
            base_token=TokenRef(CHAIN_ID, bases[i % len(bases)]),
            allocation=10**30,
            max_position=10 ** (16 + i % 9),
            max_hops=2 if i % 7 == 6 else 3,
            min_profit=(i % 4) * 10**12,
            max_slippage_bps=50,
            max_gas_price_wei=10**12,
            execution_delay_ms=0,
            retry_attempts=0,
            submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
        )
        plugins.append(FlashArbitrage(spec) if flash else DexArbitrage(spec))
    return plugins


def key(candidates: list[Candidate]) -> list[tuple[str, int, int]]:
    return sorted((c.route_key, c.expected_profit, c.gas_cost) for c in candidates)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def market_of(synthetic: SyntheticMarket) -> ChainMarket:
    pools = {
        p.address: Pool(p.address, DEXES[i % 2], p.token0, p.token1, p.fee_bps, p.reserve0, p.reserve1)
        for i, p in enumerate(synthetic.pools)
    }
    weth = synthetic.base_tokens[0]
    return ChainMarket(
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


def run(count: int, args: argparse.Namespace) -> None:
    synthetic = synthetic_market(args.pools, args.tokens, seed=7)
    market = market_of(synthetic)
    pools = dict(market.pools)
    market.pools = pools
    by_address = {p.address: p for p in synthetic.pools}
    tokens = tuple(sorted(synthetic.token_prices))
    plugins = build_plugins(count, synthetic.base_tokens, tokens)
    view = MarketView(chains={CHAIN_ID: market})
    scan = CycleScan()
    terms: list[CycleTerms] = []
    for plugin in plugins:
        term = plugin.cycle_terms()
        assert term is not None
        terms.append(term)
    strategies = CycleStrategies(terms)
    # Warm-up (not timed): both build their cycle structures (a block that changed nothing).
    warm = time.perf_counter()
    for plugin in plugins:
        plugin.on_market_update(view, {CHAIN_ID: frozenset()})
    warm_per = time.perf_counter() - warm
    warm = time.perf_counter()
    scan.evaluate(view, CHAIN_ID, strategies, frozenset())
    warm_shared = time.perf_counter() - warm

    per_times: list[float] = []
    shared_times: list[float] = []
    per_cpu: list[float] = []
    shared_cpu: list[float] = []
    found = published = 0
    for block in range(args.blocks):
        updates = drift(synthetic, args.changed, seed=1000 + block, scale=args.drift)
        for address, (r0, r1) in updates.items():
            old = pools[address]
            pools[address] = Pool(address, old.dex, old.token0, old.token1, old.fee_bps, r0, r1)
            by_address[address].reserve0, by_address[address].reserve1 = r0, r1
        market.block_number += 1
        changed = frozenset(updates)

        start, cpu = time.perf_counter(), time.process_time()
        view.per_block.clear()
        per_found = [p.on_market_update(view, {CHAIN_ID: changed}) for p in plugins]
        per_picks = [best_disjoint(c) for c in per_found]
        per_times.append(time.perf_counter() - start)
        per_cpu.append(time.process_time() - cpu)

        start, cpu = time.perf_counter(), time.process_time()
        view.per_block.clear()
        shared_found = scan.evaluate(view, CHAIN_ID, strategies, changed)
        shared_picks = picks(shared_found)
        shared_times.append(time.perf_counter() - start)
        shared_cpu.append(time.process_time() - cpu)

        for mine, theirs, my_picks, their_picks in zip(
            per_found, shared_found, per_picks, shared_picks, strict=True
        ):
            assert key(mine) == key(theirs), "shared and per-strategy evaluation disagree"
            assert my_picks == their_picks, "shared and per-strategy picks disagree"
        found += sum(len(c) for c in per_found)
        published += sum(len(c) for c in per_picks)

    per_p50, shared_p50 = statistics.median(per_times), statistics.median(shared_times)
    per_cpu50, shared_cpu50 = statistics.median(per_cpu), statistics.median(shared_cpu)
    print(
        f"{count:5d} strategies | per strategy: p50 {per_p50 * 1e3:9.2f} ms p90 {percentile(per_times, 0.9) * 1e3:9.2f}"
        f" cpu {per_cpu50 * 1e3:9.2f} ms ({per_p50 / count * 1e3:7.3f} ms/strategy)"
        f" | shared: p50 {shared_p50 * 1e3:7.2f} ms p90 {percentile(shared_times, 0.9) * 1e3:7.2f}"
        f" cpu {shared_cpu50 * 1e3:7.2f} ms ({shared_p50 / count * 1e3:7.3f} ms/strategy)"
        f" | {per_p50 / shared_p50:6.1f}x | {found} candidates, {published} picked, identical"
        f" | structures built in {warm_per:.1f} s vs {warm_shared:.1f} s"
    )


async def _lagging(window: asyncio.Event, lags: list[float]) -> None:
    """A task asking for 1 ms sleeps: how late it wakes is how long the loop could not serve."""
    while not window.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - start - 0.001)


async def loop_responsiveness(args: argparse.Namespace) -> None:
    """Event-loop lag while the engine evaluates a block: per-strategy evaluation on the loop (main
    before this change), shared evaluation on the loop, shared evaluation on the worker thread (the
    engine now). Same market, same blocks; the opportunities must be the same in all three."""
    synthetic = synthetic_market(args.pools, args.tokens, seed=7)
    market = market_of(synthetic)
    pools = dict(market.pools)
    market.pools = pools
    by_address = {p.address: p for p in synthetic.pools}
    tokens = tuple(sorted(synthetic.token_prices))
    view = MarketView(chains={CHAIN_ID: market})
    modes = ("per strategy, on the loop", "shared, on the loop", "shared, worker thread")
    fleets: list[dict[str, RunningStrategy]] = []
    for mode in modes:
        running = {
            p.spec.strategy_id: RunningStrategy(p.spec, cast(StrategyPlugin, p))
            for p in build_plugins(args.loop_strategies, synthetic.base_tokens, tokens)
        }
        for r in running.values():
            r.plugin.on_market_update(view, {CHAIN_ID: frozenset()})  # cycle structures, untimed
            r.fresh = False
            if mode.startswith("per strategy"):
                r.terms = None
        fleets.append(running)
    evaluations = [MarketEvaluation() for _ in modes]
    for evaluation, running in zip(evaluations, fleets, strict=True):
        evaluation.evaluate(view, running, CHAIN_ID, frozenset(), datetime.now(UTC))
    worker = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    lags: list[list[float]] = [[] for _ in modes]
    walls: list[list[float]] = [[] for _ in modes]
    for block in range(args.blocks):
        updates = drift(synthetic, args.changed, seed=2000 + block, scale=args.drift)
        for address, (r0, r1) in updates.items():
            old = pools[address]
            pools[address] = Pool(address, old.dex, old.token0, old.token1, old.fee_bps, r0, r1)
            by_address[address].reserve0, by_address[address].reserve1 = r0, r1
        market.block_number += 1
        changed = frozenset(updates)
        seen = datetime.now(UTC)
        ids: list[list[str]] = []
        for m, (evaluation, running) in enumerate(zip(evaluations, fleets, strict=True)):
            block_view = MarketView(chains=view.chains, memo=view.memo)
            window = asyncio.Event()
            ticker = asyncio.create_task(_lagging(window, lags[m]))
            await asyncio.sleep(0.005)
            start = time.perf_counter()
            if m == 2:
                found = await loop.run_in_executor(
                    worker, evaluation.evaluate, block_view, running, CHAIN_ID, changed, seen
                )
            else:
                found = evaluation.evaluate(block_view, running, CHAIN_ID, changed, seen)
            walls[m].append(time.perf_counter() - start)
            await asyncio.sleep(0.002)
            window.set()
            await ticker
            ids.append(sorted(o.opportunity_id for o in found))
        assert ids[0] == ids[1] == ids[2], "the three modes publish different opportunities"
    worker.shutdown()
    print(
        f"event loop during a block ({args.loop_strategies} strategies, opportunities built and identical):"
    )
    for mode, lag, wall in zip(modes, lags, walls, strict=True):
        print(
            f"  {mode:26s}: block {statistics.median(wall) * 1e3:8.2f} ms (p50); loop lag p50 "
            f"{percentile(lag, 0.5) * 1e3:7.2f} ms, p99 {percentile(lag, 0.99) * 1e3:7.2f} ms, "
            f"max {max(lag) * 1e3:7.2f} ms over {len(lag)} wake-ups"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,10,100,1000", help="numbers of running strategies")
    parser.add_argument("--pools", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=2_000)
    parser.add_argument("--changed", type=int, default=100, help="pools changed per block")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--drift", type=float, default=0.03, help="largest price move of a changed pool")
    parser.add_argument(
        "--loop-strategies", type=int, default=100, help="strategies for the event-loop lag part (0: skip)"
    )
    args = parser.parse_args()
    print(
        f"market: {args.pools} pools over {args.tokens} tokens on {len(DEXES)} DEXes; "
        f"{args.changed} pools changed per block; {args.blocks} blocks per row"
    )
    for count in (int(c) for c in args.counts.split(",") if c):
        run(count, args)
    print("goal: 1,000 strategies within 25 ms per block (shared)")
    if args.loop_strategies:
        asyncio.run(loop_responsiveness(args))


if __name__ == "__main__":
    main()
