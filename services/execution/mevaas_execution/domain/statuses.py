"""Execution statuses as a state machine (pure): every status an execution (or one of its legs)
can be in, and the transitions allowed between them. Writers name a transition; a transition
the table does not allow is a bug and raises, it is never written.

``rejected``, ``dropped``, ``stale`` and ``failed`` can also be the status an execution is first
recorded with (the decision ended before anything was signed): ``NEW`` is that virtual origin.
"""

from __future__ import annotations

from typing import Final

NEW: Final = ""
REJECTED: Final = "rejected"
SIGNED: Final = "signed"
SUBMITTED: Final = "submitted"
INCLUDED: Final = "included"
REVERTED: Final = "reverted"
DROPPED: Final = "dropped"
STALE: Final = "stale"
FAILED: Final = "failed"

IN_FLIGHT: Final = (SIGNED, SUBMITTED)
FINAL: Final = (REJECTED, INCLUDED, REVERTED, DROPPED, STALE, FAILED)
# Outcomes a chain can give a transaction that was sent.
ON_CHAIN: Final = (INCLUDED, REVERTED)

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # Recorded without a transaction (risk said no, the session is not running, the deadline
    # passed, the gas cap or a check refused), or signed and recorded before it is sent.
    NEW: frozenset({REJECTED, DROPPED, STALE, FAILED, SIGNED}),
    # Sent (or found on chain by the tracker after a crash), refused by the relay, or given up.
    SIGNED: frozenset({SUBMITTED, INCLUDED, REVERTED, DROPPED, FAILED}),
    # Resent every block until included or past its window.
    SUBMITTED: frozenset({SUBMITTED, INCLUDED, REVERTED, DROPPED, FAILED}),
    REJECTED: frozenset(),
    INCLUDED: frozenset(),
    REVERTED: frozenset(),
    DROPPED: frozenset(),
    STALE: frozenset(),
    FAILED: frozenset(),
}


class IllegalTransition(Exception):
    """A writer asked for a transition the table does not allow."""


def allowed(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check(current: str, target: str) -> str:
    """``target`` when the table allows ``current -> target``; raises otherwise."""
    if not allowed(current, target):
        raise IllegalTransition(f"execution status {current or '(new)'} -> {target} is not allowed")
    return target


def is_final(status: str) -> bool:
    return status in FINAL
