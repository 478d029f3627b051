"""Fast mode's outcome of one attempt at several relays (protection/domain/relays.py)."""

from __future__ import annotations

import json

from mevaas_execution.protection.domain.relays import RelayOutcome, attempt_changes, decode


def test_one_relay_taking_it_makes_it_submitted_for_the_furthest_block_and_notes_every_answer() -> None:
    outcomes = [
        RelayOutcome("primary", 0, "relay refused the bundle for block 9: busy"),
        RelayOutcome("second", 9),
        RelayOutcome("third", 10),
    ]
    changes = attempt_changes(outcomes, fast=True)
    assert changes["status"] == "submitted" and changes["error"] == "" and changes["last_target_block"] == 10
    assert decode(changes["relay_outcomes"]) == [
        {"relay": "primary", "accepted": False, "targetBlock": 0, "reason": outcomes[0].reason},
        {"relay": "second", "accepted": True, "targetBlock": 9, "reason": ""},
        {"relay": "third", "accepted": True, "targetBlock": 10, "reason": ""},
    ]


def test_every_relay_refusing_keeps_it_in_flight_with_each_reason() -> None:
    outcomes = [RelayOutcome("primary", 0, "refused: a"), RelayOutcome("second", 0, "unreachable: b")]
    changes = attempt_changes(outcomes, fast=True)
    assert "status" not in changes
    assert changes["error"] == "primary: refused: a; second: unreachable: b"
    assert [o["accepted"] for o in json.loads(changes["relay_outcomes"])] == [False, False]


def test_without_fast_mode_the_one_relay_s_reason_is_the_reason_and_nothing_is_noted() -> None:
    assert attempt_changes([RelayOutcome("primary", 0, "refused: a")], fast=False) == {"error": "refused: a"}
    assert decode(None) == []
