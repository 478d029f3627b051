"""The refund token of a protected transaction named from execution's chain registry: symbol and
decimals of a listed token, the native coin, the wrapped native coin the registry does not list,
and nothing (symbol "", decimals 0) for a token or chain it does not know."""

from __future__ import annotations

from mevaas_chain.registry import ChainConfig, ChainRegistry, TokenConfig
from mevaas_execution.convert import registry_token

USDC = "0x" + "0c" * 20
WRAPPED = "0x" + "0e" * 20
REGISTRY = ChainRegistry(
    chains=[
        ChainConfig(
            chain_id=7,
            name="seven",
            rpc_url="http://127.0.0.1:1",
            native_symbol="GLM",
            wrapped_native=WRAPPED,
            tokens=[TokenConfig(address=USDC, symbol="USDC", decimals=6)],
        )
    ]
)


def named(chain_id: int, address: str) -> tuple[str, int]:
    token = registry_token(REGISTRY, chain_id, address)
    assert (token.chain_id, token.address) == (chain_id, address)
    return token.symbol, token.decimals


def test_listed_native_and_wrapped_tokens_are_named() -> None:
    assert named(7, USDC.upper().replace("0X", "0x")) == ("USDC", 6)
    assert named(7, "0x" + "00" * 20) == ("GLM", 18)
    assert named(7, WRAPPED) == ("WGLM", 18)


def test_an_unknown_token_or_chain_is_left_unnamed() -> None:
    assert named(7, "0x" + "0f" * 20) == ("", 0)
    assert named(8, USDC) == ("", 0)
