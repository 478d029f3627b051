"""Keyset pages: a token only when a further row exists, and it resumes after the last row shown."""

from __future__ import annotations

import pytest

from mevaas_core.errors import InvalidArgument
from mevaas_core.pagination import decode_page_token, split_page


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
