"""States of a protected transaction and the allowed transitions between them.

``received`` (recorded, not yet accepted by a relay) and ``submitted`` (a relay holds it for a
block) are in flight: each new head resends it for the next block until a receipt says
``included`` or ``reverted``, or its last block passes (``expired``). ``failed`` is a refusal
before anything was sent (a simulation that reverts, a sanctioned counterparty)."""

from __future__ import annotations

IN_FLIGHT = ("received", "submitted")
FINAL = ("included", "reverted", "expired", "failed")

TRANSITIONS: dict[str, frozenset[str]] = {
    "": frozenset({"received", "failed"}),
    "received": frozenset({"received", "submitted", "included", "reverted", "expired", "failed"}),
    "submitted": frozenset({"submitted", "included", "reverted", "expired"}),
    **{status: frozenset() for status in FINAL},
}


def sources(new: str | None) -> tuple[str, ...]:
    """The statuses a row may be in for a write setting ``new`` (None: a write that keeps the
    status, allowed only in flight)."""
    if new is None:
        return IN_FLIGHT
    return tuple(current for current, allowed in TRANSITIONS.items() if current and new in allowed)
