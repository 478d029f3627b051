"""One block's evaluation for every running strategy on a chain (pure, synchronous: no I/O).

Strategies whose plugin shares market evaluation (`mevaas_strategies.shared.SharesCycleScan`: the
cycle arbitrage types) are evaluated together: the cycles through the block's changed pools are
screened and verified once and fanned out through an index of the strategies (see that module). The
others run their own `on_market_update`. Either way each strategy publishes only candidates that
can all execute (`best_disjoint`), as opportunities of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mevaas.events.v1 import events_pb2
from mevaas_strategies.arbitrage import CycleTerms
from mevaas_strategies.market import MarketView
from mevaas_strategies.model import StrategySpec
from mevaas_strategies.opportunity import opportunity_message
from mevaas_strategies.plugins import Candidate, StrategyPlugin
from mevaas_strategies.selection import best_disjoint
from mevaas_strategies.shared import CycleScan, CycleStrategies, SharesCycleScan, picks


@dataclass
class RunningStrategy:
    spec: StrategySpec
    plugin: StrategyPlugin
    # Evaluate everything on the next block (just started).
    fresh: bool = True
    # Set when the plugin shares market evaluation.
    terms: CycleTerms | None = field(init=False)

    def __post_init__(self) -> None:
        self.terms = self.plugin.cycle_terms() if isinstance(self.plugin, SharesCycleScan) else None


def on_one_chain(chain_id: int) -> Callable[[RunningStrategy], bool]:
    """Strategies that read `chain_id` only: their evaluation can run beside the event loop, which
    changes only other chains' state meanwhile."""
    return lambda r: all(c == chain_id for c in r.spec.chain_ids)


class MarketEvaluation:
    """The shared scan and its index of the running strategies, rebuilt when the set changes.
    Calls must not overlap (the engine runs them on one worker thread, or on the loop)."""

    def __init__(self) -> None:
        self._scan = CycleScan()
        self._shared_ids: list[str] = []
        self._index = CycleStrategies([])
        self._indexed: list[tuple[str, int]] = []

    def _reindex(self, running: Mapping[str, RunningStrategy]) -> None:
        indexed = [(sid, id(r)) for sid, r in running.items() if r.terms is not None]
        if indexed != self._indexed:
            self._indexed = indexed
            self._shared_ids = [sid for sid, _ in indexed]
            self._index = CycleStrategies(
                [t for sid in self._shared_ids if (t := running[sid].terms) is not None]
            )

    def evaluate(
        self,
        view: MarketView,
        running: Mapping[str, RunningStrategy],
        chain_id: int,
        changed: frozenset[str] | None,
        seen_at: datetime,
        select: Callable[[RunningStrategy], bool] = lambda _: True,
    ) -> list[events_pb2.Opportunity]:
        """Every running strategy on `chain_id` (that `select` admits) against the current view;
        `changed` None: everything."""
        market = view.chain(chain_id)
        if market is None:
            return []
        view.per_block.clear()
        self._reindex(running)
        eligible = [
            (sid, r)
            for sid, r in running.items()
            if chain_id in r.spec.chain_ids
            and select(r)
            and all(view.chain(c) is not None for c in r.spec.chain_ids)
        ]
        positions = {sid: i for i, sid in enumerate(self._shared_ids)}
        shared_here = {
            sid: positions[sid] for sid, r in eligible if r.terms is not None and r.terms.chain_id == chain_id
        }
        shared_picks: list[list[Candidate]] = []
        if shared_here:
            fresh = frozenset(i for sid, i in shared_here.items() if running[sid].fresh)
            shared_picks = picks(self._scan.evaluate(view, chain_id, self._index, changed, fresh))
        changed_by_chain = None if changed is None else {chain_id: changed}
        found: list[events_pb2.Opportunity] = []
        for sid, r in eligible:
            position = shared_here.get(sid)
            if position is not None:
                chosen = shared_picks[position]
            else:
                chosen = best_disjoint(r.plugin.on_market_update(view, None if r.fresh else changed_by_chain))
            r.fresh = False
            detected_at = datetime.now(UTC)
            found += [
                opportunity_message(r.spec, c, market, view, block_seen_at=seen_at, detected_at=detected_at)
                for c in chosen
            ]
        return found
