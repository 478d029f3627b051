"""Opaque page tokens for keyset pagination: a token encodes the sort key of the last row
returned, so pages stay stable while rows are inserted (no OFFSET scans)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from mevaas_core import jsoninput
from mevaas_core.errors import FieldViolation, InvalidArgument

RowT = TypeVar("RowT")


def encode_page_token(*cursor: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode().rstrip("=")


def decode_page_token(token: str, arity: int, field: str = "page.page_token") -> list[str | int] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = jsoninput.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise InvalidArgument(FieldViolation(field, "is not a page token issued by this API")) from None
    if (
        not isinstance(cursor, list)
        or len(cursor) != arity
        or not all(isinstance(c, str | int) for c in cursor)
    ):
        raise InvalidArgument(FieldViolation(field, "is not a page token issued by this API"))
    return cursor


def split_page(
    rows: Sequence[RowT], size: int, sort_key: Callable[[RowT], tuple[str | int, ...]]
) -> tuple[Sequence[RowT], str]:
    """Lists fetch one row more than the page size: its presence means another page follows, whose
    token is the sort key of the last row shown."""
    page = rows[:size]
    token = encode_page_token(*sort_key(page[-1])) if len(rows) > size else ""
    return page, token
