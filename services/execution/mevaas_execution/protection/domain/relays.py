"""Fast mode: one attempt of a protected transaction goes to every relay of its chain at once, and
what each relay answered becomes the attempt's outcome.

The transaction is "submitted" when at least one relay holds it for a block: a refusal by one
relay is then only a note on the row, never its reason, since another relay may still land it.
When every relay refused, the reasons of all of them are the row's reason (kept in flight and
retried at the next head, as a single relay's refusal is). Inclusion is one receipt of one
transaction hash, whichever relay landed it, so it is booked (and billed, and refunded) once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    relay: str
    # The block the relay holds the bundle for (0 when it did not take it).
    target_block: int
    # Why it did not take it ("" when it did).
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return not self.reason

    def as_json(self) -> dict[str, Any]:
        return {
            "relay": self.relay,
            "accepted": self.accepted,
            "targetBlock": self.target_block,
            "reason": self.reason,
        }


def attempt_changes(outcomes: Sequence[RelayOutcome], *, fast: bool) -> dict[str, Any]:
    """The row's columns after one attempt whose relays answered ``outcomes`` (at least one):
    submitted for the furthest block a relay accepted, or the refusals as its reason. A fast
    transaction also records every relay's answer (``relay_outcomes``, JSON)."""
    accepted = [o for o in outcomes if o.accepted]
    changes: dict[str, Any] = {}
    if accepted:
        changes |= {
            "status": "submitted",
            "error": "",
            "last_target_block": max(o.target_block for o in accepted),
        }
    elif fast:
        changes["error"] = "; ".join(f"{o.relay}: {o.reason}" for o in outcomes)
    else:
        changes["error"] = outcomes[0].reason
    if fast:
        changes["relay_outcomes"] = encode(outcomes)
    return changes


def encode(outcomes: Sequence[RelayOutcome]) -> str:
    return json.dumps([o.as_json() for o in outcomes], separators=(",", ":"))


def decode(text: str | None) -> list[dict[str, Any]]:
    """The recorded outcomes as the Protect RPC's status shows them ([] when not fast)."""
    if not text:
        return []
    outcomes: list[dict[str, Any]] = json.loads(text)
    return outcomes
