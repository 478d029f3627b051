"""Request documents as people write them: proto or JSON field names, enum values short
(`flash_arbitrage` for `STRATEGY_TYPE_FLASH_ARBITRAGE`)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor


def field_named(descriptor: Any, key: str) -> Any:
    """The field a document key names: its proto name or its JSON (camelCase) name."""
    return descriptor.fields_by_name.get(key) or next(
        (f for f in descriptor.fields if f.json_name == key), None
    )


def _full_enum_name(enum: Any, value: Any) -> Any:
    if not isinstance(value, str) or value in enum.values_by_name:
        return value
    prefix = next(iter(enum.values_by_name)).removesuffix("_UNSPECIFIED")
    candidate = f"{prefix}_{value}".upper()
    return candidate if candidate in enum.values_by_name else value


def expand_enums(descriptor: Any, data: Any) -> Any:
    """Accept `flash_arbitrage` for `STRATEGY_TYPE_FLASH_ARBITRAGE` (the enum's prefix is implied)."""
    if not isinstance(data, dict):
        return data
    expanded: dict[str, Any] = {}
    for key, value in data.items():
        field = field_named(descriptor, key)
        values = value if isinstance(value, list) else [value]
        if field is not None and field.type == FieldDescriptor.TYPE_ENUM:
            values = [_full_enum_name(field.enum_type, v) for v in values]
        elif field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
            values = [expand_enums(field.message_type, v) for v in values]
        expanded[key] = values if isinstance(value, list) else values[0]
    return expanded
