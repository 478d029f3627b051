"""Shared market evaluation (one screen and one exact verification per block, fanned out to every
cycle strategy) gives every strategy exactly what its own `on_market_update` gives it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from math import isqrt
from typing import cast

from mevaas.common.v1 import common_pb2
from mevaas_chain.amm import v3
from mevaas_chain.amm.synthetic import drift, synthetic_market
from mevaas_chain.pool_index import Pool, V3Pool
from mevaas_strategies.actions import PoolKind, SwapCycle
from mevaas_strategies.arbitrage import DexArbitrage, FlashArbitrage
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef
from mevaas_strategies.opportunity import opportunity_message
from mevaas_strategies.plugins import Candidate, StrategyPlugin
from mevaas_strategies.selection import best_disjoint
from mevaas_strategies.shared import CycleScan, CycleStrategies, picks
from mevaas_strategy.evaluation import MarketEvaluation, RunningStrategy

DEXES = ("uni", "sushi")


def key(candidates: list[Candidate]) -> list[tuple[str, int, int]]:
    return sorted((c.route_key, c.expected_profit, c.gas_cost) for c in candidates)


def strategies(
    n: int, bases: tuple[str, ...], tokens: tuple[str, ...]
) -> list[DexArbitrage | FlashArbitrage]:
    """Varied as a fleet is: financing, base, caps that bind and caps that do not, min profit, DEXes,
    token universes, hop limits, and one strategy on another chain."""
    plugins: list[DexArbitrage | FlashArbitrage] = []
    for i in range(n):
        flash = i % 4 == 3
        chain = 2 if i == n - 1 else 1
        spec = StrategySpec(
            strategy_id=f"s{i}",
            tenant_id=f"t{i}",
            version=1,
            type=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE
            if flash
            else common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
            chain_ids=(chain,),
            tokens=tuple(TokenRef(chain, a) for a in (tokens[: len(tokens) // 2] if i % 5 == 4 else tokens)),
            dexes=frozenset() if i % 3 else frozenset({DEXES[i % 2]}),
            base_token=TokenRef(chain, bases[i % len(bases)]),
            allocation=10**30,
            max_position=10 ** (15 + i % 8),
            max_hops=2 if i % 7 == 6 else 3,
            min_profit=(i % 3) * 10**13,
            max_slippage_bps=50,
            max_gas_price_wei=10**12,
            execution_delay_ms=0,
            retry_attempts=0,
            submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
        )
        plugins.append(FlashArbitrage(spec) if flash else DexArbitrage(spec))
    return plugins


class Market:
    """A synthetic market on chain 1 that drifts block by block."""

    def __init__(self) -> None:
        self.synthetic = synthetic_market(800, 160, seed=11, mispriced_fraction=0.02)
        self.pools = {
            p.address: Pool(p.address, DEXES[i % 2], p.token0, p.token1, p.fee_bps, p.reserve0, p.reserve1)
            for i, p in enumerate(self.synthetic.pools)
        }
        weth = self.synthetic.base_tokens[0]
        self.chain = ChainMarket(
            chain_id=1,
            block_number=1,
            block_hash="0x" + "01" * 32,
            base_fee=10**9,
            priority_fee=10**9,
            pools=self.pools,
            wrapped_native=weth,
            symbols={weth: "WETH"},
            decimals=self.synthetic.token_decimals,
        )
        self.view = MarketView(chains={1: self.chain})
        self.tokens = tuple(sorted(self.synthetic.token_prices))

    def block(self, n: int, changed: int = 40) -> frozenset[str]:
        updates = drift(self.synthetic, changed, seed=500 + n, scale=0.03)
        by_address = {p.address: p for p in self.synthetic.pools}
        for address, (r0, r1) in updates.items():
            old = self.pools[address]
            self.pools[address] = Pool(address, old.dex, old.token0, old.token1, old.fee_bps, r0, r1)
            by_address[address].reserve0, by_address[address].reserve1 = r0, r1
        self.chain.block_number += 1
        self.view.per_block.clear()
        return frozenset(updates)


def test_every_strategy_gets_what_its_own_evaluation_finds_block_after_block() -> None:
    m = Market()
    plugins = strategies(40, m.synthetic.base_tokens, m.tokens)
    terms = [p.cycle_terms() for p in plugins]
    assert all(t is not None for t in terms)
    index = CycleStrategies([t for t in terms if t is not None])
    scan = CycleScan()

    # First block: everything (every strategy is fresh).
    full = scan.evaluate(m.view, 1, index, None)
    m.view.per_block.clear()
    own = [p.on_market_update(m.view, None) for p in plugins]
    assert [key(c) for c in full] == [key(c) for c in own]
    assert sum(map(len, own)) > 0
    assert full[-1] == []  # the strategy on chain 2 sees nothing of chain 1

    total = 0
    for n in range(6):
        changed = m.block(n)
        # Strategies 5 and 6 just started on this block: they evaluate everything.
        fresh = frozenset({5, 6}) if n == 3 else frozenset()
        shared = scan.evaluate(m.view, 1, index, changed, fresh)
        m.view.per_block.clear()
        own = [
            p.on_market_update(m.view, None if i in fresh else {1: changed}) for i, p in enumerate(plugins)
        ]
        assert [key(c) for c in shared] == [key(c) for c in own]
        assert picks(shared) == [best_disjoint(c) for c in own]
        total += sum(map(len, own))
    assert total > 0, "the drifting market opens opportunities, so the comparison means something"


def test_a_skipped_block_refreshes_every_reserve() -> None:
    m = Market()
    plugins = strategies(12, m.synthetic.base_tokens, m.tokens)
    index = CycleStrategies([t for p in plugins if (t := p.cycle_terms()) is not None])
    scan = CycleScan()
    scan.evaluate(m.view, 1, index, None)
    m.block(0)  # not shown to the scan
    changed = m.block(1)
    shared = scan.evaluate(m.view, 1, index, changed)
    m.view.per_block.clear()
    own = [p.on_market_update(m.view, {1: changed}) for p in plugins]
    assert [key(c) for c in shared] == [key(c) for c in own]


def test_no_changed_pool_and_no_fresh_strategy_finds_nothing() -> None:
    m = Market()
    plugins = strategies(8, m.synthetic.base_tokens, m.tokens)
    index = CycleStrategies([t for p in plugins if (t := p.cycle_terms()) is not None])
    scan = CycleScan()
    assert sum(map(len, scan.evaluate(m.view, 1, index, None))) > 0
    m.chain.block_number += 1
    assert scan.evaluate(m.view, 1, index, frozenset()) == [[] for _ in plugins]


def test_engine_evaluation_publishes_the_same_opportunities_as_per_strategy_evaluation() -> None:
    m = Market()
    plugins = strategies(10, m.synthetic.base_tokens, m.tokens)
    running = {p.spec.strategy_id: RunningStrategy(p.spec, cast(StrategyPlugin, p)) for p in plugins}
    assert all(r.terms is not None for r in running.values())
    evaluation = MarketEvaluation()
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    evaluation.evaluate(m.view, running, 1, None, seen)
    assert not any(r.fresh for r in running.values() if 1 in r.spec.chain_ids)
    published = 0
    for n in range(4):
        changed = m.block(n)
        got = evaluation.evaluate(m.view, running, 1, changed, seen)
        m.view.per_block.clear()
        expected = [
            opportunity_message(p.spec, c, m.chain, m.view, block_seen_at=seen, detected_at=seen)
            for p in plugins
            if 1 in p.spec.chain_ids
            for c in best_disjoint(p.on_market_update(m.view, {1: changed}))
        ]
        assert sorted(o.opportunity_id for o in got) == sorted(o.opportunity_id for o in expected)
        by_id = {o.opportunity_id: o for o in expected}
        for o in got:
            want = by_id[o.opportunity_id]
            assert (o.expected_profit, o.gas_estimate, o.swap_cycle) == (
                want.expected_profit,
                want.gas_estimate,
                want.swap_cycle,
            )
        published += len(got)
    assert published > 0


def v3_pools_beside(m: Market, count: int, gap: float) -> dict[str, V3Pool]:
    """V3 pools on the pairs of the first `count` V2 pools, priced `gap` off them (alternating sides),
    with liquidity in three nested tick ranges around the price."""
    made: dict[str, V3Pool] = {}
    for i, p in enumerate(list(m.pools.values())[:count]):
        skew = 1 + gap if i % 2 else 1 - gap
        sqrt_price = isqrt(int(p.reserve1 * skew * 10**6) * (1 << 192) // (p.reserve0 * 10**6))
        tick = v3.get_tick_at_sqrt_ratio(sqrt_price)
        state = v3.V3PoolState(fee=3000, tick_spacing=60, sqrt_price_x96=sqrt_price, tick=tick, liquidity=0)
        depth = isqrt(p.reserve0 * p.reserve1)
        for width, share in ((600, 2), (3000, 3), (24000, 5)):
            lower, upper = (tick - width) // 60 * 60, (tick + width) // 60 * 60 + 60
            state = v3.modify_position(state, lower, upper, depth * share // 10).state
        address = "0x" + f"{0xF3000 + i:040x}"
        made[address] = V3Pool(address, DEXES[i % 2], p.token0, p.token1, state)
    return made


def test_cycles_through_v3_pools_are_shared_like_v2_ones() -> None:
    m = Market()
    v3_pools = v3_pools_beside(m, 6, 0.02)
    m.chain.v3_pools = v3_pools
    plugins = strategies(10, m.synthetic.base_tokens, m.tokens)
    index = CycleStrategies([t for p in plugins if (t := p.cycle_terms()) is not None])
    scan = CycleScan()
    full = scan.evaluate(m.view, 1, index, None)
    m.view.per_block.clear()
    own = [p.on_market_update(m.view, None) for p in plugins]
    assert [key(c) for c in full] == [key(c) for c in own]
    lowered = {a.lower() for a in v3_pools}
    through_v3 = {c.route_key for cs in own for c in cs if {p for _, p in c.action.pools()} & lowered}
    assert through_v3, "2% gaps against V2 pools of the same pair open V3 cycles"
    # Hops through V3 pools carry the executor's V3 kind; the others stay V2 pairs.
    for c in (c for cs in own for c in cs):
        assert isinstance(c.action, SwapCycle)
        for hop in c.action.hops:
            assert hop.pool_kind == (PoolKind.UNISWAP_V3 if hop.pool in v3_pools else PoolKind.UNISWAP_V2)

    # A swap on one V3 pool (its state replaced, as the pool index does) re-evaluates its cycles.
    address = next(iter(v3_pools))
    pool = v3_pools[address]
    after = v3.swap(pool.state, True, pool.state.liquidity // 50).apply(pool.state)
    v3_pools[address] = replace(pool, state=after)
    m.chain.block_number += 1
    shared = scan.evaluate(m.view, 1, index, frozenset({address}))
    m.view.per_block.clear()
    own = [p.on_market_update(m.view, {1: frozenset({address})}) for p in plugins]
    assert [key(c) for c in shared] == [key(c) for c in own]
