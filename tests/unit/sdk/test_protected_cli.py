"""`mevaas protected`'s refund column: whole tokens with the symbol the API names, exact to the base
unit; a token the registry does not know stays in base units, said to be unknown."""

from __future__ import annotations

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_sdk.protected_cli import refund_text

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"


def protected(amount: str, token: common_pb2.Token) -> execution_pb2.ProtectedTransaction:
    return execution_pb2.ProtectedTransaction(
        refund=execution_pb2.BackrunRefund(amount=amount, gas_refund="21000", token=token)
    )


def test_a_known_token_is_shown_in_whole_tokens_exactly() -> None:
    token = common_pb2.Token(address=WETH, symbol="WETH", decimals=18)
    assert refund_text(protected("123456789012345678901234567", token)) == (
        "123456789.012345678901234567 WETH (123456789012345678901234567 base units;"
        " 0.000000000000021 WETH of it for gas)"
    )
    usdc = common_pb2.Token(address=WETH, symbol="USDC", decimals=6)
    assert refund_text(protected("1500000", usdc)).startswith("1.5 USDC (1500000 base units")


def test_an_unknown_token_stays_in_base_units() -> None:
    text = refund_text(protected("42", common_pb2.Token(address=WETH)))
    assert text == f"42 base units of unknown token {WETH} (21000 of them for gas)"


def test_no_refund_is_empty() -> None:
    assert refund_text(execution_pb2.ProtectedTransaction()) == ""
