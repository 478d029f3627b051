"""Names every part of the analytics store shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

SCHEMA = "analytics"
PLATFORM = "_platform"

Statement = tuple[str, tuple[Any, ...]]


def when(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def token_key(chain_id: int, address: str) -> str:
    return f"{chain_id}:{address.lower()}"
