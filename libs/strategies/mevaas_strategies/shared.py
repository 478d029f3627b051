"""Market evaluation shared by every cycle strategy on a chain: once per block, not once per strategy.

Per-strategy evaluation re-sizes every cycle through the block's changed pools for every running
strategy (the exact optimum is cached per block, but every strategy still walks its own affected
cycles in Python). Here a block costs, whatever the number of strategies:

1. **screen** (NumPy, float64): the cycles through the changed pools, from every base token some
   strategy trades, are folded into their virtual pools (`mevaas_chain.amm.screen` explains the
   fold) and kept when their best continuous profit can exceed the cheapest gas any strategy would
   pay for them (`gas_for(hops, flash=False)` in the base token). Every contract hop rounds down, so
   no input of a dropped cycle can pay for its gas: no strategy would have published it;
2. **verify** each kept cycle exactly once (`arbitrage.optimum`, the V2 closed form with integer
   refinement, cached in `MarketView.per_block` exactly as the per-strategy path caches it);
3. **fan out** through an index: strategies by base token, then by universe (tokens, DEXes, hop
   limit), so admitting a cycle costs a set test per universe; within one, a strategy's candidate is
   shared by every strategy with the same financing and effective cap (its cap if that binds), and
   its `min_profit` is one comparison.

The candidates are the same the strategies' own `on_market_update` returns (asserted by
`bench/bench_strategy.py` and the unit tests), because both build them with
`arbitrage.cycle_candidate`. A plugin takes part by implementing `SharesCycleScan`; the others keep
their per-strategy evaluation.

State: per chain, the cycle structure of each base token over all of the chain's pools (rebuilt
when the pool set's `epoch` changes) and the pools' reserves as floats, updated for the changed
pools of each block (all of them when a block is skipped or a full evaluation is asked for).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mevaas_chain.amm.arbitrage import ConcentratedPool
from mevaas_chain.amm.cycles import Cycle, PoolGraph, enumerate_cycles
from mevaas_chain.amm.v2 import FEE_DENOMINATOR
from mevaas_strategies.arbitrage import CycleTerms, cycle_candidate, gas_cost_in, gas_for, optimum
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.plugins import Candidate
from mevaas_strategies.selection import best_disjoint

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Relative float tolerance of the screen (see mevaas_chain.amm.screen: far above float64 rounding).
REL_TOL = 1e-12
# Cycles through V3 pools are kept when the product of their hops' fee-adjusted spot rates exceeds
# 1 - SPOT_TOL: a swap only worsens a pool's price, so below 1 no input can make money.
SPOT_TOL = 1e-9


def _spot_gain(flat: FloatArray, in_idx: IntArray, out_idx: IntArray, gamma: FloatArray) -> FloatArray:
    """Per cycle, the product of g * out/in over its hops: the route's marginal rate at zero input
    (a V3 pool's row holds (Q96**2, sqrtP**2), whose ratio is its price)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gain: FloatArray = np.prod(gamma * flat[out_idx] / flat[in_idx], axis=0)
    return gain


@runtime_checkable
class SharesCycleScan(Protocol):
    """A plugin whose candidates are exactly `cycle_candidate` of the cycles its terms admit, filtered by
    its `min_profit`; None: evaluate it on its own (e.g. a hop limit the enumeration refuses)."""

    def cycle_terms(self) -> CycleTerms | None: ...


Universe = tuple[frozenset[str], frozenset[str], int]


class CycleStrategies:
    """Cycle strategies indexed for the fan-out: by chain and base token, then by universe (tokens,
    DEXes, hop limit). Built once per set of running strategies; positions follow `terms`."""

    def __init__(self, terms: Sequence[CycleTerms]) -> None:
        self.terms = list(terms)
        grouped: dict[tuple[int, str], dict[Universe, list[int]]] = {}
        for i, t in enumerate(self.terms):
            grouped.setdefault((t.chain_id, t.base), {}).setdefault(
                (t.tokens, t.dexes, t.max_hops), []
            ).append(i)
        self.by_base: dict[tuple[int, str], list[tuple[Universe, list[int]]]] = {
            key: list(universes.items()) for key, universes in grouped.items()
        }
        # Per universe group (by identity): (position, flash, cap, min_profit) of its strategies.
        self.sizing: dict[int, list[tuple[int, bool, int | None, int]]] = {
            id(group): [(i, self.terms[i].flash, self.terms[i].cap, self.terms[i].min_profit) for i in group]
            for universes in self.by_base.values()
            for _, group in universes
        }

    def __len__(self) -> int:
        return len(self.terms)


class _BaseCycles:
    """Every 2- and 3-hop cycle from one base token over all pools of a chain, hop-major by length."""

    def __init__(self, base: str, graph: PoolGraph, pool_pos: dict[str, int], n_pools: int) -> None:
        self.base = base
        self.cycles = enumerate_cycles(graph, [base], 3)
        self.hops = np.asarray([len(c.hops) for c in self.cycles], dtype=np.int64)
        # Per length: global cycle ids, (length, n) in/out reserve indices into the flat array, fees,
        # and which cycles go through a V3 pool (screened on spot prices; None: none does).
        self.groups: list[tuple[int, IntArray, IntArray, IntArray, FloatArray, BoolArray | None]] = []
        self.group_of = np.zeros(len(self.cycles), dtype=np.int64)
        self.row_of = np.zeros(len(self.cycles), dtype=np.int64)
        for length in (2, 3):
            ids = [i for i, c in enumerate(self.cycles) if len(c.hops) == length]
            if not ids:
                continue
            in_idx = np.empty((length, len(ids)), dtype=np.int64)
            out_idx = np.empty((length, len(ids)), dtype=np.int64)
            gamma = np.empty((length, len(ids)), dtype=np.float64)
            for row, cid in enumerate(ids):
                for j, hop in enumerate(self.cycles[cid].hops):
                    pos = pool_pos[hop.pool.address]
                    side = 0 if hop.zero_for_one else 1
                    in_idx[j, row] = 2 * pos + side
                    out_idx[j, row] = 2 * pos + 1 - side
                    gamma[j, row] = (FEE_DENOMINATOR - hop.pool.fee_bps) / FEE_DENOMINATOR
            ids_arr = np.asarray(ids, dtype=np.int64)
            self.group_of[ids_arr] = len(self.groups)
            self.row_of[ids_arr] = np.arange(len(ids), dtype=np.int64)
            through_v3 = np.asarray(
                [any(isinstance(h.pool, ConcentratedPool) for h in self.cycles[cid].hops) for cid in ids],
                dtype=np.bool_,
            )
            self.groups.append(
                (length, ids_arr, in_idx, out_idx, gamma, through_v3 if through_v3.any() else None)
            )
        by_pool: list[list[int]] = [[] for _ in range(n_pools)]
        for cid, cycle in enumerate(self.cycles):
            for address in dict.fromkeys(cycle.pools):
                by_pool[pool_pos[address]].append(cid)
        self.cycles_of_pool = [np.asarray(ids, dtype=np.int64) for ids in by_pool]
        self._mask = np.zeros(len(self.cycles), dtype=np.bool_)
        # Tokens and DEXes of a cycle, computed for the cycles that pass the screen.
        self.universe_of: dict[int, tuple[frozenset[str], frozenset[str]]] = {}

    def affected(self, positions: Sequence[int]) -> IntArray:
        """Sorted ids of the cycles through any pool at `positions`."""
        parts = [self.cycles_of_pool[p] for p in positions]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        ids = np.concatenate(parts)
        self._mask[ids] = True
        affected: IntArray = np.flatnonzero(self._mask)
        self._mask[affected] = False
        return affected

    def screen(self, flat: FloatArray, sqrt_threshold: dict[int, float], ids: IntArray | None) -> IntArray:
        """Ids among `ids` (None: all) whose best continuous profit may exceed the threshold of their
        length."""
        found: list[IntArray] = []
        for gi, (length, group_ids, in_all, out_all, gamma_all, v3_all) in enumerate(self.groups):
            if ids is None:
                in_idx, out_idx, gamma, chosen, through_v3 = in_all, out_all, gamma_all, group_ids, v3_all
            else:
                mine = ids[self.group_of[ids] == gi]
                if not mine.size:
                    continue
                rows = self.row_of[mine]
                in_idx, out_idx, gamma, chosen = in_all[:, rows], out_all[:, rows], gamma_all[:, rows], mine
                through_v3 = None if v3_all is None else v3_all[rows]
            e0 = flat[in_idx[0]] / gamma[0]
            e1 = flat[out_idx[0]]
            for j in range(1, length):
                r = flat[in_idx[j]]
                ge1 = gamma[j] * e1
                inv = 1.0 / (r + ge1)
                e0 = r * e0 * inv
                e1 = ge1 * flat[out_idx[j]] * inv
            root_gap = np.sqrt(e1) - np.sqrt(e0)
            tolerance = REL_TOL * np.sqrt(e0 + e1)
            keep = root_gap > sqrt_threshold[length] - tolerance
            if through_v3 is not None and through_v3.any():
                keep = np.where(through_v3, _spot_gain(flat, in_idx, out_idx, gamma) > 1.0 - SPOT_TOL, keep)
            found.append(chosen[keep])
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def universe(self, cid: int, market: ChainMarket) -> tuple[frozenset[str], frozenset[str]]:
        known = self.universe_of.get(cid)
        if known is None:
            cycle = self.cycles[cid]
            pools = [market.pool_of(a) for a in cycle.pools]
            known = (
                frozenset(t for p in pools for t in (p.token0, p.token1)),
                frozenset(p.dex for p in pools),
            )
            self.universe_of[cid] = known
        return known


@dataclass(slots=True)
class _ChainScan:
    epoch: int
    pool_pos: dict[str, int]
    addresses: list[str]
    graph: PoolGraph
    reserves: FloatArray
    last_block: int = -1
    bases: dict[str, _BaseCycles] = field(default_factory=dict)

    @classmethod
    def of(cls, market: ChainMarket) -> _ChainScan:
        addresses = sorted([*market.pools, *market.v3_pools])
        pool_pos = {a: i for i, a in enumerate(addresses)}
        graph = PoolGraph.of(sorted(market.graph_pools(), key=lambda p: p.address))
        scan = cls(market.epoch, pool_pos, addresses, graph, np.zeros((len(addresses), 2), dtype=np.float64))
        scan.refresh(market, None)
        return scan

    def refresh(self, market: ChainMarket, changed: frozenset[str] | None) -> None:
        """Copy the reserves of `changed` pools (None: all) from the market."""
        addresses = self.addresses if changed is None else [a for a in changed if a in self.pool_pos]
        positions = [self.pool_pos[a] for a in addresses]
        if positions:
            self.reserves[np.asarray(positions, dtype=np.int64)] = np.asarray(
                [market.screen_reserves(a) for a in addresses], dtype=np.float64
            )
        self.last_block = market.block_number

    def base(self, token: str) -> _BaseCycles:
        cycles = self.bases.get(token)
        if cycles is None:
            cycles = self.bases[token] = _BaseCycles(token, self.graph, self.pool_pos, len(self.addresses))
        return cycles


class CycleScan:
    """The shared evaluation of one engine (or backtest): call `evaluate` on every block of a chain,
    in order, with the pools the block changed."""

    def __init__(self) -> None:
        self._chains: dict[int, _ChainScan] = {}

    def evaluate(
        self,
        view: MarketView,
        chain_id: int,
        strategies: CycleStrategies,
        changed: frozenset[str] | None,
        fresh: Collection[int] = (),
    ) -> list[list[Candidate]]:
        """Each strategy's candidates on `chain_id`'s current block: those through `changed` pools, or
        all of them for the strategies at positions in `fresh` and for everyone when `changed` is
        None. Strategies of other chains get none.

        Uses `view.per_block` like the plugins do: clear it once per block before evaluating."""
        found: list[list[Candidate]] = [[] for _ in range(len(strategies))]
        fresh = frozenset(fresh)
        market = view.chain(chain_id)
        if market is None:
            return found
        scan = self._chains.get(chain_id)
        if scan is None or scan.epoch != market.epoch:
            scan = self._chains[chain_id] = _ChainScan.of(market)
        elif changed is None or market.block_number != scan.last_block + 1:
            # A full evaluation, or blocks this scan did not see (a reorg, a skipped block).
            scan.refresh(market, None)
        else:
            scan.refresh(market, changed)
        positions = (
            None if changed is None else [p for a in changed if (p := scan.pool_pos.get(a)) is not None]
        )
        flat = scan.reserves.reshape(-1)
        for (chain, base), universes in strategies.by_base.items():
            if chain != chain_id:
                continue
            thresholds = [gas_cost_in(view, market, base, gas_for(h, flash=False)) for h in (2, 3)]
            if thresholds[0] is None or thresholds[1] is None:
                continue  # no gas price in this token: the plugins find nothing either
            cycles = scan.base(base)
            any_fresh = positions is None or any(i in fresh for _, group in universes for i in group)
            affected = None if positions is None else cycles.affected(positions)
            if not any_fresh and affected is not None and not affected.size:
                continue
            sqrt_t = {2: float(np.sqrt(float(thresholds[0]))), 3: float(np.sqrt(float(thresholds[1])))}
            kept = cycles.screen(flat, sqrt_t, None if any_fresh else affected)
            if not kept.size:
                continue
            # Kept cycles a strategy that is not fresh may see (None: all of them).
            through_changed = (
                None
                if affected is None or not any_fresh
                else frozenset(kept[np.isin(kept, affected)].tolist())
            )
            self._fan_out(
                view,
                market,
                cycles,
                kept.tolist(),
                through_changed,
                None if positions is None else fresh,
                universes,
                strategies,
                found,
            )
        return found

    def _fan_out(
        self,
        view: MarketView,
        market: ChainMarket,
        cycles: _BaseCycles,
        kept: list[int],
        through_changed: frozenset[int] | None,
        fresh: frozenset[int] | None,
        universes: list[tuple[Universe, list[int]]],
        strategies: CycleStrategies,
        found: list[list[Candidate]],
    ) -> None:
        """Hand the kept cycles to the strategies that admit them. A strategy not in `fresh` (None:
        all are) sees only `through_changed` (None: all kept cycles)."""
        shared: dict[tuple[bool, int | None], Candidate | None] = {}
        for cid in kept:
            cycle: Cycle = cycles.cycles[cid]
            legs = [market.leg(h.pool.address, h.token_in) for h in cycle.hops]
            best = optimum(view, legs)
            if best is None:
                continue
            tokens, dexes = cycles.universe(cid, market)
            hops = len(cycle.hops)
            changed_only = through_changed is not None and cid not in through_changed
            amount_in = best.amount_in
            shared.clear()
            for (u_tokens, u_dexes, max_hops), group in universes:
                if hops > max_hops or not tokens <= u_tokens or (u_dexes and not dexes <= u_dexes):
                    continue
                for i, flash, cap, min_profit in strategies.sizing[id(group)]:
                    if changed_only and fresh is not None and i not in fresh:
                        continue
                    key = (flash, None if cap is None or cap >= amount_in else cap)
                    if key in shared:
                        candidate = shared[key]
                    else:
                        candidate = shared[key] = cycle_candidate(
                            view, market, cycle, flash=flash, cap=key[1]
                        )
                    if candidate is not None and candidate.net_profit >= min_profit:
                        found[i].append(candidate)


def picks(found: Sequence[list[Candidate]]) -> list[list[Candidate]]:
    """`best_disjoint` of each list; lists of the same candidates (shared objects, common when many
    strategies admit the same cycles) are picked once."""
    chosen: dict[tuple[int, ...], list[Candidate]] = {}
    out: list[list[Candidate]] = []
    for candidates in found:
        if not candidates:
            out.append([])
            continue
        key = tuple(map(id, candidates))
        picked = chosen.get(key)
        if picked is None:
            picked = chosen[key] = best_disjoint(candidates)
        out.append(picked)
    return out
