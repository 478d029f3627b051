"""Required ids at the edge: a missing id is one "is required", an over-long one names its limit."""

from __future__ import annotations

import pytest

from mevaas_core.errors import FieldViolation, InvalidArgument
from mevaas_core.validation import MAX_ID_LENGTH, Validator, require_identifier


def test_an_identifier_is_present_and_at_most_its_limit() -> None:
    v = Validator()
    assert v.identifier("s" * MAX_ID_LENGTH, "session_id")
    assert not v.identifier("  ", "session_id")
    assert not v.identifier("s" * (MAX_ID_LENGTH + 1), "strategy_id")
    assert not v.identifier("abcd", "user_id", max_length=3)
    assert v.violations == [
        FieldViolation("session_id", "is required"),
        FieldViolation("strategy_id", f"must be 1-{MAX_ID_LENGTH} characters"),
        FieldViolation("user_id", "must be 1-3 characters"),
    ]


def test_require_identifier_raises_one_violation_naming_the_field() -> None:
    require_identifier("e1", "execution_id")
    with pytest.raises(InvalidArgument) as refused:
        require_identifier("", "execution_id")
    assert refused.value.violations == [FieldViolation("execution_id", "is required")]
