"""Rebalance states as a state machine (pure): a table of allowed transitions. A writer names a
transition; one the table does not allow is a bug and raises, it is never written.

``submitted`` (the command is recorded) -> ``planning`` (holdings and prices read, trades planned)
-> ``executing`` (one trade after the other, each through risk and the pipeline; ``executing ->
executing`` moves to the next trade) -> ``completed`` | ``failed``. A plan with nothing to trade
completes at once; any step may fail with a reason.
"""

from __future__ import annotations

from typing import Final

from mevaas.portfolio.v1 import portfolio_pb2

SUBMITTED: Final = "submitted"
PLANNING: Final = "planning"
EXECUTING: Final = "executing"
COMPLETED: Final = "completed"
FAILED: Final = "failed"

ACTIVE: Final = (SUBMITTED, PLANNING, EXECUTING)

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    SUBMITTED: frozenset({PLANNING, FAILED}),
    # A planner that crashed midway plans again (nothing was sent before `executing`).
    PLANNING: frozenset({PLANNING, EXECUTING, COMPLETED, FAILED}),
    EXECUTING: frozenset({EXECUTING, COMPLETED, FAILED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
}

TO_PROTO: Final = {
    SUBMITTED: portfolio_pb2.REBALANCE_STATUS_SUBMITTED,
    PLANNING: portfolio_pb2.REBALANCE_STATUS_PLANNING,
    EXECUTING: portfolio_pb2.REBALANCE_STATUS_EXECUTING,
    COMPLETED: portfolio_pb2.REBALANCE_STATUS_COMPLETED,
    FAILED: portfolio_pb2.REBALANCE_STATUS_FAILED,
}
FROM_PROTO: Final = {value: key for key, value in TO_PROTO.items()}


class IllegalTransition(Exception):
    """A writer asked for a transition the table does not allow."""


def allowed(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check(current: str, target: str) -> str:
    """``target`` when the table allows ``current -> target``; raises otherwise."""
    if not allowed(current, target):
        raise IllegalTransition(f"rebalance state {current} -> {target} is not allowed")
    return target


def is_final(state: str) -> bool:
    return state in (COMPLETED, FAILED)
