"""Opaque page tokens for keyset pagination: a token encodes the sort key of the last row
returned, so pages stay stable while rows are inserted (no OFFSET scans)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from mevaas_core import jsoninput
from mevaas_core.errors import FieldViolation, InvalidArgument

RowT = TypeVar("RowT")


class Row(Protocol):
    """A stored row read by column name (an asyncpg record, or a plain mapping)."""

    def __getitem__(self, column: str, /) -> Any: ...


RowByName = TypeVar("RowByName", bound=Row)
NOT_OURS = "is not a page token issued by this API"


class Keyset(NamedTuple):
    """Where a page resumes: the (time, id) sort key of the last row of the page before."""

    at: datetime
    id: str


def encode_page_token(*cursor: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode().rstrip("=")


def decode_page_token(token: str, arity: int, field: str = "page.page_token") -> list[str | int] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = jsoninput.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        raise InvalidArgument(FieldViolation(field, NOT_OURS)) from None
    if (
        not isinstance(cursor, list)
        or len(cursor) != arity
        or not all(isinstance(c, str | int) for c in cursor)
    ):
        raise InvalidArgument(FieldViolation(field, NOT_OURS))
    return cursor


def page_after(token: str, filters: str | None = None, field: str = "page.page_token") -> Keyset | None:
    """The keyset a (time, id) list resumes after, or None for the first page. A list whose
    filters shape its pages issues tokens that start with them (``filters``): such a token is
    refused for other filters, since resuming after it would skip or repeat rows."""
    prefix = () if filters is None else (filters,)
    cursor = decode_page_token(token, len(prefix) + 2, field)
    if cursor is None:
        return None
    if prefix and cursor[0] != filters:
        raise InvalidArgument(FieldViolation(field, "was issued for other filters"))
    at, row_id = cursor[len(prefix) :]
    try:
        return Keyset(datetime.fromisoformat(str(at)), str(row_id))
    except ValueError:
        raise InvalidArgument(FieldViolation(field, NOT_OURS)) from None


def split_page(
    rows: Sequence[RowT], size: int, sort_key: Callable[[RowT], tuple[str | int, ...]]
) -> tuple[Sequence[RowT], str]:
    """Lists fetch one row more than the page size: its presence means another page follows, whose
    token is the sort key of the last row shown."""
    page = rows[:size]
    token = encode_page_token(*sort_key(page[-1])) if len(rows) > size else ""
    return page, token


def keyset_page(
    rows: Sequence[RowByName], size: int, at: str, row_id: str, filters: str | None = None
) -> tuple[Sequence[RowByName], str]:
    """``split_page`` for a list sorted by (time, id) columns ``at`` and ``row_id``: its token is
    the one ``page_after`` reads back, with the same ``filters``."""
    prefix = () if filters is None else (filters,)
    return split_page(rows, size, lambda row: (*prefix, row[at].isoformat(), row[row_id]))


def page_position(token: str, field: str = "page.page_token") -> int:
    """The position a list paged by one integer (an offset, a sequence number) resumes after, 0
    for the first page. A token decodes from the client's bytes, so anything but a non-negative
    integer a BIGINT column holds is refused, not left to fail deeper."""
    cursor = decode_page_token(token, 1, field)
    if cursor is None:
        return 0
    position = cursor[0]
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < 2**63:
        raise InvalidArgument(FieldViolation(field, NOT_OURS))
    return position


def offset_page(items: Sequence[RowT], token: str, size: int) -> tuple[Sequence[RowT], str]:
    """A page of a list computed whole on each call (a report's rows, the invoices): its token
    is the offset of the next page."""
    offset = page_position(token)
    following = offset + size
    return items[offset:following], encode_page_token(following) if following < len(items) else ""
