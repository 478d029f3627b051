"""The one check every inbound bus payload passes before a handler sees it (durable consumers,
ordered followers and request/reply servers alike): size, content type, the tenant header,
protobuf parse, and the generic field rules of `mevaas_core.message_rules` (no NUL, bounded ids
and strings, integers PostgreSQL can hold, valid timestamps).

A payload that fails is refused whole: a consumer terminates it (redelivering it could never
succeed), a server answers 400 with the reason. So a malformed message neither reaches a
handler, where it could fail deep inside a transaction, nor wedges a consumer by being retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from google.protobuf.message import Message

from mevaas_core.bus.errors import BusError
from mevaas_core.bus.streams import HEADER_CONTENT_TYPE, HEADER_TENANT, content_type_for
from mevaas_core.message_rules import MAX_ID_CHARS, message_violations

# NATS's own default max_payload; nothing the platform publishes comes near it.
MAX_PAYLOAD_BYTES: Final = 1 << 20
_VIOLATIONS_SHOWN = 3

M = TypeVar("M", bound=Message)


class InvalidPayload(BusError):
    """An inbound message that no handler should see; the text says why (safe to answer with)."""


def _check_tenant(tenant: str | None, *, required: bool) -> None:
    if tenant is None or tenant == "":
        if required:
            raise InvalidPayload("no tenant-id header")
        return
    if len(tenant) > MAX_ID_CHARS or not tenant.isprintable():
        raise InvalidPayload(f"tenant-id header must be at most {MAX_ID_CHARS} printable characters")


def decode_inbound(
    message_type: type[M],
    data: bytes,
    headers: Mapping[str, str],
    *,
    tenant_required: bool,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> M:
    """``data`` as a ``message_type`` once every rule holds; else ``InvalidPayload``."""
    if len(data) > max_bytes:
        raise InvalidPayload(f"payload of {len(data)} bytes exceeds {max_bytes}")
    expected = content_type_for(message_type)
    content_type = headers.get(HEADER_CONTENT_TYPE)
    if content_type != expected:
        raise InvalidPayload(f"content-type {content_type!r}, expected {expected!r}")
    _check_tenant(headers.get(HEADER_TENANT), required=tenant_required)
    try:
        message = message_type.FromString(data)
    except Exception as exc:  # DecodeError, or RecursionError/ValueError from hostile nesting
        raise InvalidPayload(f"undecodable {message_type.DESCRIPTOR.full_name}") from exc
    violations = message_violations(message)
    if violations:
        shown = "; ".join(f"{v.field} {v.description}" for v in violations[:_VIOLATIONS_SHOWN])
        more = (
            f" (and {len(violations) - _VIOLATIONS_SHOWN} more)"
            if len(violations) > _VIOLATIONS_SHOWN
            else ""
        )
        raise InvalidPayload(f"invalid {message_type.DESCRIPTOR.full_name}: {shown}{more}")
    return message
