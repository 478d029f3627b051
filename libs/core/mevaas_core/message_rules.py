"""Generic input rules applied to every request message before a handler runs (and usable on any
inbound bus payload), following the conventions of protos/mevaas/common/v1/common.proto:

* no string field may contain NUL (PostgreSQL text cannot hold it);
* identifiers (``*_id``) are server-assigned UUID-like strings: at most 128 characters;
* any other string is at most ``MAX_STRING_CHARS`` characters;
* integer fields must fit PostgreSQL's BIGINT (a uint64 beyond 2^63-1 cannot be stored);
* timestamps must be valid ones (years 1-9999, nanos below a second).

Service validators still check each field's own meaning; these rules make sure no value that
PostgreSQL or NATS would choke on gets that far.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mevaas_core.errors import FieldViolation

MAX_ID_CHARS = 128
MAX_STRING_CHARS = 256 * 1024
BIGINT_MAX = (1 << 63) - 1
_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_SINT64,
    }
)
# Walking stops here: a message nested deeper than this is refused rather than walked.
MAX_DEPTH = 32


def _check_string(value: str, path: str, name: str, out: list[FieldViolation]) -> None:
    if "\x00" in value:
        out.append(FieldViolation(path, "must not contain NUL characters"))
    limit = MAX_ID_CHARS if name.endswith("_id") or name == "id" else MAX_STRING_CHARS
    if len(value) > limit:
        out.append(FieldViolation(path, f"must be at most {limit} characters"))


def _check_value(
    field: FieldDescriptor, value: object, path: str, out: list[FieldViolation], depth: int
) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert isinstance(value, Message)
        _walk(value, path, out, depth + 1)
    elif field.type == FieldDescriptor.TYPE_STRING:
        assert isinstance(value, str)
        _check_string(value, path, field.name, out)
    elif field.type in _INTEGER_TYPES:
        assert isinstance(value, int)
        if not -BIGINT_MAX - 1 <= value <= BIGINT_MAX:
            out.append(FieldViolation(path, f"must be at most {BIGINT_MAX}"))


# google.protobuf.Timestamp's own valid range (0001-01-01 to 9999-12-31, nanos below a second).
TIMESTAMP_SECONDS = (-62135596800, 253402300799)


def _walk(message: Message, prefix: str, out: list[FieldViolation], depth: int) -> None:
    if depth > MAX_DEPTH:
        out.append(FieldViolation(prefix or "request", "is nested too deeply"))
        return
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if not TIMESTAMP_SECONDS[0] <= seconds <= TIMESTAMP_SECONDS[1] or not 0 <= nanos <= 999_999_999:
            out.append(FieldViolation(prefix or "request", "is not a valid timestamp (years 1-9999)"))
        return
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                items = list(value.items())
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                for key, item in items:
                    _check_value(key_field, key, f"{path}[{key!r}]"[:200], out, depth)
                    _check_value(value_field, item, f"{path}[{key!r}]"[:200], out, depth)
            else:
                for index, item in enumerate(value):
                    _check_value(field, item, f"{path}[{index}]", out, depth)
        else:
            _check_value(field, value, path, out, depth)


def message_violations(message: Message) -> list[FieldViolation]:
    """Every generic rule broken anywhere in ``message`` (empty when it is acceptable)."""
    if _acceptable(message, 0):
        return []
    out: list[FieldViolation] = []
    _walk(message, "", out, 0)
    return out


# The fast path: a yes/no walk without paths, which the full walk above repeats only for a message
# that breaks a rule (a bus consumer sees 50 kB block updates; naming every field of every pool
# on the way cost 50x the parse). Per field: what to check, decided once per message type.
_SKIP, _STRING, _ID, _UNSIGNED, _MESSAGE, _MAP = range(6)
_UNSIGNED_TYPES = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
_plans: dict[str, dict[str, tuple[int, bool, int, int]]] = {}


def _kind(field: FieldDescriptor) -> int:
    if field.message_type is not None:
        return _MAP if field.message_type.GetOptions().map_entry else _MESSAGE
    if field.type == FieldDescriptor.TYPE_STRING:
        return _ID if field.name.endswith("_id") or field.name == "id" else _STRING
    if field.type in _UNSIGNED_TYPES:  # signed 64-bit values always fit BIGINT
        return _UNSIGNED
    return _SKIP


def _plan(descriptor: Descriptor) -> dict[str, tuple[int, bool, int, int]]:
    """Per field: its kind, whether repeated, and for a map the kinds of its keys and values."""
    plan = _plans.get(descriptor.full_name)
    if plan is None:
        plan = {}
        for field in descriptor.fields:
            kind = _kind(field)
            key = value = _SKIP
            if kind == _MAP and field.message_type is not None:
                key = _kind(field.message_type.fields_by_name["key"])
                value = _kind(field.message_type.fields_by_name["value"])
            plan[field.name] = (kind, field.is_repeated, key, value)
        _plans[descriptor.full_name] = plan
    return plan


def _value_ok(kind: int, value: object, depth: int) -> bool:
    if kind in (_STRING, _ID):
        assert isinstance(value, str)
        return "\x00" not in value and len(value) <= (MAX_ID_CHARS if kind == _ID else MAX_STRING_CHARS)
    if kind == _UNSIGNED:
        assert isinstance(value, int)
        return value <= BIGINT_MAX
    if kind == _MESSAGE:
        assert isinstance(value, Message)
        return _acceptable(value, depth + 1)
    return True


def _acceptable(message: Message, depth: int) -> bool:
    descriptor = message.DESCRIPTOR
    if depth > MAX_DEPTH:
        return False
    if descriptor.full_name == "google.protobuf.Timestamp":
        seconds: int = message.seconds  # type: ignore[attr-defined]
        nanos: int = message.nanos  # type: ignore[attr-defined]
        return TIMESTAMP_SECONDS[0] <= seconds <= TIMESTAMP_SECONDS[1] and 0 <= nanos <= 999_999_999
    plan = _plan(descriptor)  # type: ignore[arg-type]
    for field, value in message.ListFields():
        kind, repeated, key_kind, value_kind = plan[field.name]
        if kind == _SKIP:
            continue
        if kind == _MAP:
            for key, item in value.items():
                if not (_value_ok(key_kind, key, depth) and _value_ok(value_kind, item, depth)):
                    return False
            continue
        if repeated:
            if not all(_value_ok(kind, item, depth) for item in value):
                return False
        elif not _value_ok(kind, value, depth):
            return False
    return True
