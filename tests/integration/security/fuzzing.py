"""Fuzz cases built from protobuf descriptors, shared by the RPC and the bus fuzzers: random bytes,
NUL characters, 1 MB strings, integer extremes, undefined enum values, garbage page tokens and
(given real ones) foreign ids; and the malformed HTTP bodies the HTTP fuzzers (gateway, Protect
RPC) send."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

FORBIDDEN_TEXT = ("asyncpg", "postgres", "select ", "insert ", "relation ", "traceback", "sqlstate", "nats:")
STRINGS = (
    "a\x00b",
    "x" * (1 << 20),
    "!!not-a-token%%",
    "eyJvZmZzZXQiOiAtMX0=",  # base64 of a JSON page token with a negative offset
    str(uuid.uuid4()),
    "ünïcödé-\u202e",
    "",
)
# HTTP bodies no JSON endpoint (the gateway, the Protect RPC) may choke on: binary, invalid UTF-8,
# nesting deeper than the parser's recursion, JSON that is not an object, a body just over 1 MB.
FIXED_BODIES: tuple[bytes, ...] = (
    bytes(range(256)),
    b"\xff\xfe{}",
    b"[" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"1",
    b"null",
    b'"text"',
    b"[]",
    b"[{}]",
    b'{"\\u0000": "\\u0000"}',
    b'{"x": "' + b"y" * (1 << 20) + b'"}',
)
INTS = (0, -1, 2**31, 2**63 - 1, -(2**63))
UINTS = (0, 2**64 - 1, 2**63, 1)


def value_for(field: FieldDescriptor, rng: random.Random, ids: Sequence[str]) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if ids and field.name.endswith("_id") and rng.random() < 0.5:
            return rng.choice(ids)  # a real id of another tenant (or of nothing any more)
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.choice((0, 16, 1 << 16)))
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice((0, 1, 2, 99, -7, 2**31 - 1))
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return rng.choice(UINTS)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return rng.choice((0, 2**32 - 1))
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return rng.choice((0, -1, 2**31 - 1, -(2**31)))
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return rng.choice(INTS)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice((0.0, -1.0, 1e308, float("nan")))
    return None


def fill(
    message: Message, descriptor: Descriptor, rng: random.Random, depth: int = 0, ids: Sequence[str] = ()
) -> None:
    for field in descriptor.fields:
        if rng.random() < 0.3:
            continue
        if field.message_type is not None:
            if depth >= 2:
                continue
            if field.message_type.GetOptions().map_entry:
                key, item = (
                    field.message_type.fields_by_name["key"],
                    field.message_type.fields_by_name["value"],
                )
                if item.message_type is None:
                    with contextlib.suppress(ValueError, TypeError):
                        getattr(message, field.name)[value_for(key, rng, ids)] = value_for(item, rng, ids)
                continue
            if field.is_repeated:
                for _ in range(rng.randint(0, 2)):
                    fill(getattr(message, field.name).add(), field.message_type, rng, depth + 1, ids)
            else:
                fill(getattr(message, field.name), field.message_type, rng, depth + 1, ids)
            continue
        value = value_for(field, rng, ids)
        if value is None:
            continue
        try:
            if field.is_repeated:
                getattr(message, field.name).extend([value] * rng.randint(1, 3))
            else:
                setattr(message, field.name, value)
        except (ValueError, TypeError):
            continue  # e.g. a closed enum refusing an undefined value client-side


def payloads(descriptor: Descriptor, rng: random.Random, count: int, ids: Sequence[str] = ()) -> list[bytes]:
    """``count`` serialized fuzz cases of ``descriptor``: random bytes first, then filled messages."""
    request_cls = message_factory.GetMessageClass(descriptor)
    out = [rng.randbytes(rng.choice((1, 64, 4096)))]  # random bytes
    while len(out) < count:
        if rng.random() < 0.05:
            out.append(rng.randbytes(rng.choice((1, 64, 4096))))
            continue
        request = request_cls()
        fill(request, descriptor, rng, ids=ids)
        out.append(request.SerializeToString())
    return out[:count] if count else []
