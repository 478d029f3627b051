"""Which of a strategy's candidates on one block are worth publishing together."""

from __future__ import annotations

from collections.abc import Iterable

from mevaas_strategies.plugins import Candidate


def best_disjoint(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Best net profit first, each pool used once. Once one trade moves a pool, every other
    candidate through it was sized for a state that no longer exists: publishing it buys only a
    revert, and it queues behind the wallet's nonce, delaying the trades that can land. The
    backtest's competition model picks the same way (best net candidate wins the pool)."""
    taken: set[tuple[int, str]] = set()
    chosen: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (-c.net_profit, c.route_key)):
        pools = set(candidate.action.pools())
        if pools & taken:
            continue
        taken |= pools
        chosen.append(candidate)
    return chosen
