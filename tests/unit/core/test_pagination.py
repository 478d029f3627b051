"""Keyset pages: a token only when a further row exists, and it resumes after the last row shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mevaas_core.errors import FieldViolation, InvalidArgument
from mevaas_core.pagination import (
    NOT_OURS,
    Keyset,
    decode_page_token,
    encode_page_token,
    keyset_page,
    offset_page,
    page_after,
    split_page,
)


def test_split_page_emits_a_token_only_when_another_row_exists() -> None:
    rows = [{"id": f"r{i}"} for i in range(4)]
    page, token = split_page(rows, 3, lambda r: (r["id"],))
    assert [r["id"] for r in page] == ["r0", "r1", "r2"]
    assert decode_page_token(token, 1) == ["r2"]
    last, none = split_page(rows[:3], 3, lambda r: (r["id"],))
    assert len(last) == 3 and none == ""
    no_rows: list[dict[str, str]] = []
    empty, nothing = split_page(no_rows, 3, lambda r: (r["id"],))
    assert list(empty) == [] and nothing == ""


def test_foreign_tokens_are_invalid_arguments_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as bad:
        decode_page_token("not-base64-json%%", 1)
    assert bad.value.violations[0].field == "page.page_token"
    with pytest.raises(InvalidArgument):
        decode_page_token(split_page([{"id": 1}, {"id": 2}], 1, lambda r: (r["id"], "x"))[1], 1)


def _refusal(token: str, filters: str | None = None, field: str = "page.page_token") -> FieldViolation:
    with pytest.raises(InvalidArgument) as refused:
        page_after(token, filters, field)
    (violation,) = refused.value.violations
    return violation


def test_page_after_resumes_after_the_time_and_id_of_the_last_row() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert page_after("") is None and page_after("", "f") is None
    assert page_after(encode_page_token(at.isoformat(), "r9")) == Keyset(at, "r9")
    after = page_after(encode_page_token("f", at.isoformat(), "r9"), "f")
    assert after == Keyset(at, "r9") and after.at.tzinfo is not None


def test_page_after_refuses_what_it_did_not_issue_naming_the_field() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC).isoformat()
    assert _refusal("not-base64-json%%") == FieldViolation("page.page_token", NOT_OURS)
    assert _refusal("%%", field="audit_page.page_token") == FieldViolation("audit_page.page_token", NOT_OURS)
    # The filters prefix counts: a token without it (or with one too many) is foreign.
    assert _refusal(encode_page_token(at, "r1"), "f").description == NOT_OURS
    assert _refusal(encode_page_token("f", at, "r1")).description == NOT_OURS
    assert _refusal(encode_page_token("other", at, "r1"), "f") == FieldViolation(
        "page.page_token", "was issued for other filters"
    )
    assert _refusal(encode_page_token("f", "yesterday", "r1"), "f").description == NOT_OURS
    assert _refusal(encode_page_token(17, "r1")).description == NOT_OURS
    # The id is whatever the token carried, as text: ids are compared, never parsed.
    assert page_after(encode_page_token(at, 42)) == Keyset(datetime.fromisoformat(at), "42")


def test_keyset_page_issues_the_token_page_after_reads_back() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [{"created_at": at + timedelta(seconds=i), "strategy_id": f"s{i}"} for i in range(3)]
    page, token = keyset_page(rows, 2, "created_at", "strategy_id", "type:0")
    assert [r["strategy_id"] for r in page] == ["s0", "s1"]
    assert page_after(token, "type:0") == Keyset(at + timedelta(seconds=1), "s1")
    assert _refusal(token, "type:1").description == "was issued for other filters"
    unfiltered, plain = keyset_page(rows, 2, "created_at", "strategy_id")
    assert unfiltered == page and page_after(plain) == Keyset(at + timedelta(seconds=1), "s1")
    assert keyset_page(rows, 3, "created_at", "strategy_id") == (rows, "")


def test_offset_page_walks_a_whole_list_in_pages() -> None:
    items = list(range(5))
    first, token = offset_page(items, "", 2)
    second, token2 = offset_page(items, token, 2)
    last, end = offset_page(items, token2, 2)
    assert (list(first), list(second), list(last), end) == ([0, 1], [2, 3], [4], "")
    assert offset_page(items, "", 5) == (items, "")
    assert _offset_refusal("%%") == FieldViolation("page.page_token", NOT_OURS)


def _offset_refusal(token: str) -> FieldViolation:
    with pytest.raises(InvalidArgument) as refused:
        offset_page([1], token, 1)
    (violation,) = refused.value.violations
    return violation


@pytest.mark.parametrize("position", ["12", "x", -1, 2**63, True, 1.5])
def test_a_position_token_holding_anything_but_a_bigint_offset_is_refused(position: object) -> None:
    token = encode_page_token(position)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as bad:
        offset_page(list(range(5)), token, 2)
    assert bad.value.violations[0] == FieldViolation("page.page_token", NOT_OURS)


def test_offset_pages_walk_the_whole_list_once() -> None:
    items = list(range(5))
    seen: list[int] = []
    token = ""
    while True:
        page, token = offset_page(items, token, 2)
        seen.extend(page)
        if not token:
            break
    assert seen == items
