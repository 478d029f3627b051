"""Token amounts between what people type ("1.5") and what the API carries (integer base units).

Pure and exact: integers only, never a float (nor Decimal's 28-digit default context). An amount with more fractional digits than the
token has is refused rather than rounded, so what is sent is what was typed.
"""

from __future__ import annotations

import re

_HUMAN = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_BASE = re.compile(r"^(0|[1-9][0-9]*)$")


class AmountError(ValueError):
    """An amount that cannot be sent as typed; the message says why."""


def to_base_units(text: str, decimals: int, symbol: str = "") -> int:
    """'1.5' of an 18-decimals token -> 1500000000000000000, exactly."""
    text = text.strip()
    if not _HUMAN.match(text):
        raise AmountError(f"amount {text!r} is not a plain decimal number like 1.5 (no sign, exponent or ,)")
    fraction = text.partition(".")[2].rstrip("0")
    if len(fraction) > decimals:
        name = symbol or "the token"
        raise AmountError(
            f"amount {text} has {len(fraction)} decimal places but {name} has {decimals}: "
            f"the smallest unit is {format_units(1, decimals)}"
        )
    # Integer arithmetic: Decimal's default context (28 digits) would round a uint256-sized amount.
    whole = text.partition(".")[0]
    scale: int = 10**decimals
    return int(whole) * scale + (int(fraction.ljust(decimals, "0")) if fraction else 0)


def parse_base_units(text: str) -> int:
    """An integer amount in base units (`--raw`)."""
    text = text.strip()
    if not _BASE.match(text):
        raise AmountError(f"amount {text!r} is not a whole number of base units (--raw)")
    return int(text)


def format_units(base_units: int | str, decimals: int) -> str:
    """1500000000000000000 of an 18-decimals token -> '1.5' (exact; no trailing zeros)."""
    value = int(base_units)
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10**decimals) if decimals else (abs(value), 0)
    if not fraction:
        return f"{sign}{whole}"
    digits = str(fraction).rjust(decimals, "0").rstrip("0")
    return f"{sign}{whole}.{digits}"
