"""Token amounts typed by people -> base units, exactly, and back."""

from __future__ import annotations

import pytest

from mevaas_sdk.units import AmountError, format_units, parse_base_units, to_base_units


@pytest.mark.parametrize(
    ("text", "decimals", "units"),
    [
        ("1.5", 18, 1_500_000_000_000_000_000),
        ("0.000000000000000001", 18, 1),
        ("1.10", 6, 1_100_000),
        ("42", 0, 42),
        ("115792089237316195423570985008687907853269984665640564039457.584007913129639935", 18, 2**256 - 1),
    ],
)
def test_typed_amounts_are_exact_base_units(text: str, decimals: int, units: int) -> None:
    assert to_base_units(text, decimals) == units
    assert format_units(units, decimals) == text.rstrip("0").rstrip(".") if "." in text else text


def test_more_precision_than_the_token_has_is_refused_not_rounded() -> None:
    with pytest.raises(AmountError, match="7 decimal places but USDC has 6"):
        to_base_units("1.0000001", 6, "USDC")
    # Trailing zeros add no precision.
    assert to_base_units("1.500000", 6, "USDC") == 1_500_000


@pytest.mark.parametrize("text", ["-1", "1e3", "1,5", "", ".5", "1.", "NaN", "0x10", "01"])
def test_anything_but_a_plain_decimal_is_refused(text: str) -> None:
    with pytest.raises(AmountError):
        to_base_units(text, 18)


def test_raw_base_units() -> None:
    assert parse_base_units("7") == 7
    for bad in ("1.5", "-7", "1e3"):
        with pytest.raises(AmountError, match="base units"):
            parse_base_units(bad)


def test_format_units_keeps_the_sign_and_drops_trailing_zeros() -> None:
    assert format_units(-2_388_527_174_581_449_676, 18) == "-2.388527174581449676"
    assert format_units("1000000", 6) == "1"
    assert format_units(0, 18) == "0"
