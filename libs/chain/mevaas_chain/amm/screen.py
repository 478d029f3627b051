"""Vectorised screen of every cycle, exact verification of the few that might pay.

Per cycle the screen folds its hops into the virtual pool of `arbitrage` in float64, all cycles of
one length at once (no Python per cycle), with the fee absorbed into E0 so out(x) = E1*x / (E0 + x):
a hop (r, s, g) starts as (r/g, s) and each next hop (r', s', g') maps (E0, E1) to
(r'*E0 / (r' + g'*E1), g'*s'*E1 / (r' + g'*E1)). The best continuous profit is
(sqrt(E1) - sqrt(E0))**2 when E1 > E0.

Why screening cannot miss a real opportunity: every contract hop rounds down, so the realised integer
profit of any input is at most the continuous profit, which is at most that optimum. A cycle is a
candidate when its float estimate of sqrt(profit) exceeds sqrt(threshold) minus a tolerance far above
float64 rounding (relative 1e-12 of sqrt(E0 + E1), against about 1e-15 accumulated error), so every
cycle whose exact profit exceeds the threshold is a candidate. Candidates are then recomputed with
exact integers (`arbitrage.optimize`), so the screen reports exactly what the naive per-cycle loop
reports, only faster.

V2 pools only: the engine's screen (`mevaas_strategies.shared`) also takes cycles through V3 pools,
on their spot prices.

Incremental scans: `update_reserves` writes the new reserves in place (Pool objects and the float
array), and only the cycles through changed pools are recomputed and re-verified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mevaas_chain.amm.arbitrage import ArbitrageResult, Pool, optimize_route
from mevaas_chain.amm.cycles import Cycle, CycleIndex
from mevaas_chain.amm.v2 import FEE_DENOMINATOR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A verified profitable cycle: its id in the screen, the cycle and the exact sizing."""

    cycle_id: int
    cycle: Cycle
    result: ArbitrageResult


def _thresholds(cycles: Sequence[Cycle], min_profit: Mapping[str, int] | int) -> list[int]:
    if isinstance(min_profit, int):
        return [min_profit] * len(cycles)
    return [min_profit.get(c.base, 0) for c in cycles]


def naive_scan(
    cycles: Sequence[Cycle], min_profit: Mapping[str, int] | int = 0
) -> dict[int, ArbitrageResult]:
    """The reference: exact sizing of every cycle, one at a time (V2 closed form with integer
    refinement; the `amm.mixed` search for cycles through V3 pools)."""
    found: dict[int, ArbitrageResult] = {}
    for i, (cycle, threshold) in enumerate(zip(cycles, _thresholds(cycles, min_profit), strict=True)):
        result = optimize_route(cycle.legs(), threshold)
        if result is not None:
            found[i] = result
    return found


class _Group:
    """All cycles of one length, hop-major so each hop's column is contiguous.

    Full scans reuse preallocated work buffers: allocating fresh arrays of this size costs page
    faults that take longer than the arithmetic itself.
    """

    def __init__(
        self,
        ids: IntArray,
        in_idx: IntArray,
        out_idx: IntArray,
        gamma: FloatArray,
        sqrt_threshold: FloatArray,
    ) -> None:
        self.ids = ids
        self.in_idx = in_idx
        self.out_idx = out_idx
        self.gamma = gamma
        self.inv_gamma0 = 1.0 / gamma[0]
        self.sqrt_threshold = sqrt_threshold
        # sqrt(E1) - sqrt(E0) per cycle as of its last screen: the root of the predicted profit.
        self.root_gap = np.zeros(ids.size, dtype=np.float64)
        self._buffers = [np.empty(ids.size, dtype=np.float64) for _ in range(5)]
        self._mask = np.empty(ids.size, dtype=np.bool_)

    def screen_all(self, flat: FloatArray, rel_tol: float) -> IntArray:
        e0, r, ge1, inv, tmp = self._buffers
        e1 = self.root_gap
        np.take(flat, self.in_idx[0], out=r)
        np.multiply(r, self.inv_gamma0, out=e0)
        np.take(flat, self.out_idx[0], out=e1)
        for j in range(1, self.in_idx.shape[0]):
            np.take(flat, self.in_idx[j], out=r)
            np.multiply(self.gamma[j], e1, out=ge1)
            np.add(r, ge1, out=inv)
            np.divide(1.0, inv, out=inv)
            np.multiply(e0, r, out=e0)
            np.multiply(e0, inv, out=e0)
            np.take(flat, self.out_idx[j], out=tmp)
            np.multiply(ge1, tmp, out=e1)
            np.multiply(e1, inv, out=e1)
        np.add(e0, e1, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.multiply(tmp, rel_tol, out=tmp)
        np.subtract(self.sqrt_threshold, tmp, out=tmp)
        np.sqrt(e0, out=e0)
        np.sqrt(e1, out=e1)
        np.subtract(e1, e0, out=e1)
        np.greater(e1, tmp, out=self._mask)
        return self.ids[self._mask]

    def screen_rows(self, flat: FloatArray, rel_tol: float, rows: IntArray) -> IntArray:
        in_idx, out_idx, gamma = self.in_idx[:, rows], self.out_idx[:, rows], self.gamma[:, rows]
        e0 = flat[in_idx[0]] / gamma[0]
        e1 = flat[out_idx[0]]
        for j in range(1, in_idx.shape[0]):
            r = flat[in_idx[j]]
            ge1 = gamma[j] * e1
            inv = 1.0 / (r + ge1)
            e0 = r * e0 * inv
            e1 = ge1 * flat[out_idx[j]] * inv
        root_gap = np.sqrt(e1) - np.sqrt(e0)
        self.root_gap[rows] = root_gap
        tolerance = rel_tol * np.sqrt(e0 + e1)
        candidates: IntArray = self.ids[rows][root_gap > self.sqrt_threshold[rows] - tolerance]
        return candidates


class CycleScreen:
    """Screens `cycles` (sharing `Pool` objects) for profit above `min_profit` (per base token)."""

    def __init__(
        self,
        cycles: Sequence[Cycle],
        min_profit: Mapping[str, int] | int = 0,
        rel_tol: float = 1e-12,
    ) -> None:
        if any(isinstance(v, bool) or v < 0 for v in _thresholds(cycles, min_profit)):
            raise ValueError("min_profit must be >= 0")
        self.cycles = list(cycles)
        self.index = CycleIndex(self.cycles)
        self._threshold_int = _thresholds(self.cycles, min_profit)
        sqrt_threshold = np.sqrt(np.asarray(self._threshold_int, dtype=np.float64))
        self._rel_tol = rel_tol

        self._pools: list[Pool] = []
        self._pool_pos: dict[str, int] = {}
        for cycle in self.cycles:
            for hop in cycle.hops:
                if not isinstance(hop.pool, Pool):
                    raise ValueError(
                        f"pool {hop.pool.address}: CycleScreen folds V2 reserves only; cycles through V3 "
                        "pools are screened by mevaas_strategies.shared"
                    )
                if hop.pool.address not in self._pool_pos:
                    self._pool_pos[hop.pool.address] = len(self._pools)
                    self._pools.append(hop.pool)
        # Row p holds (reserve0, reserve1) of pool p; the flat view is what the hop indices address.
        self._reserves = np.array([(p.reserve0, p.reserve1) for p in self._pools], dtype=np.float64).reshape(
            -1, 2
        )
        self._flat = self._reserves.reshape(-1)

        # Group by length; ids are global cycle ids so results map back to `cycles`.
        by_len: dict[int, list[int]] = {}
        for i, cycle in enumerate(self.cycles):
            by_len.setdefault(len(cycle.hops), []).append(i)
        self._groups: list[_Group] = []
        self._group_of = np.zeros(len(self.cycles), dtype=np.int64)
        self._row_of = np.zeros(len(self.cycles), dtype=np.int64)
        for length, ids in sorted(by_len.items()):
            in_idx = np.empty((length, len(ids)), dtype=np.int64)
            out_idx = np.empty((length, len(ids)), dtype=np.int64)
            gamma = np.empty((length, len(ids)), dtype=np.float64)
            for row, cid in enumerate(ids):
                for j, hop in enumerate(self.cycles[cid].hops):
                    pos = self._pool_pos[hop.pool.address]
                    side = 0 if hop.zero_for_one else 1
                    in_idx[j, row] = 2 * pos + side
                    out_idx[j, row] = 2 * pos + 1 - side
                    gamma[j, row] = (FEE_DENOMINATOR - hop.pool.fee_bps) / FEE_DENOMINATOR
            ids_arr = np.asarray(ids, dtype=np.int64)
            self._group_of[ids_arr] = len(self._groups)
            self._row_of[ids_arr] = np.arange(len(ids), dtype=np.int64)
            self._groups.append(_Group(ids_arr, in_idx, out_idx, gamma, sqrt_threshold[ids_arr]))

        self._opportunities: dict[int, Opportunity] = {}
        self._mask = np.zeros(len(self.cycles), dtype=np.bool_)
        self._cycles_of_pool = [
            np.asarray(self.index.cycles_of(p.address), dtype=np.int64) for p in self._pools
        ]

    def predicted_profit(self, cycle_id: int) -> float:
        """The float screen's best continuous profit of a cycle as of its last screen."""
        gap = float(self._groups[int(self._group_of[cycle_id])].root_gap[int(self._row_of[cycle_id])])
        return gap * gap if gap > 0.0 else 0.0

    @property
    def opportunities(self) -> dict[int, Opportunity]:
        """The verified opportunities as of the last scans, by cycle id."""
        return dict(self._opportunities)

    def update_reserves(self, updates: Mapping[str, tuple[int, int]]) -> list[str]:
        """Write new (reserve0, reserve1) of pools in place; returns the addresses the screen knows."""
        known: list[str] = []
        positions: list[int] = []
        values: list[tuple[float, float]] = []
        for address, (reserve0, reserve1) in updates.items():
            pos = self._pool_pos.get(address)
            if pos is None:
                continue
            pool = self._pools[pos]
            pool.reserve0, pool.reserve1 = reserve0, reserve1
            known.append(address)
            positions.append(pos)
            values.append((float(reserve0), float(reserve1)))
        if positions:
            self._reserves[np.asarray(positions, dtype=np.int64)] = np.asarray(values, dtype=np.float64)
        return known

    def _verify(self, candidate_ids: IntArray) -> list[Opportunity]:
        found: list[Opportunity] = []
        for cid in candidate_ids.tolist():
            cycle = self.cycles[cid]
            result = optimize_route(cycle.legs(), self._threshold_int[cid])
            if result is not None:
                found.append(Opportunity(cid, cycle, result))
        return found

    def screen_all(self) -> IntArray:
        """Candidate ids of a full float screen, without exact verification."""
        parts = [g.screen_all(self._flat, self._rel_tol) for g in self._groups]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def full_scan(self) -> list[Opportunity]:
        """Screen every cycle, verify the candidates exactly; replaces the current opportunities."""
        found = self._verify(self.screen_all())
        self._opportunities = {o.cycle_id: o for o in found}
        return found

    def affected_cycles(self, changed_pools: Sequence[str]) -> IntArray:
        """Sorted ids of the cycles through any of `changed_pools`."""
        parts = [
            self._cycles_of_pool[pos] for a in changed_pools if (pos := self._pool_pos.get(a)) is not None
        ]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        # A reusable mask dedupes and sorts faster than np.unique at these sizes.
        ids = np.concatenate(parts)
        self._mask[ids] = True
        affected: IntArray = np.flatnonzero(self._mask)
        self._mask[affected] = False
        return affected

    def scan_changed(self, changed_pools: Sequence[str]) -> list[Opportunity]:
        """Re-screen and re-verify only the cycles through `changed_pools` (reserves already updated).

        Returns the opportunities among those cycles; `opportunities` is updated accordingly.
        """
        affected = self.affected_cycles(changed_pools)
        parts: list[IntArray] = []
        groups = self._group_of[affected]
        rows = self._row_of[affected]
        for gi, group in enumerate(self._groups):
            mine = rows[groups == gi]
            if mine.size:
                parts.append(group.screen_rows(self._flat, self._rel_tol, mine))
        found = self._verify(np.concatenate(parts)) if parts else []
        if self._opportunities:
            held = np.fromiter(self._opportunities, dtype=np.int64, count=len(self._opportunities))
            for cid in held[np.isin(held, affected)].tolist():
                del self._opportunities[cid]
        for o in found:
            self._opportunities[o.cycle_id] = o
        return found

    def apply_and_scan(self, updates: Mapping[str, tuple[int, int]]) -> list[Opportunity]:
        """`update_reserves` then `scan_changed` for the pools that changed."""
        return self.scan_changed(self.update_reserves(updates))
