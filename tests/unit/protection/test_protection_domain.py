"""Pure rules of protected transactions: revert reasons, JSON-RPC routing and envelopes, status
transitions."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from mevaas_execution.protection.domain import jsonrpc as j
from mevaas_execution.protection.domain.revert import decode_reason, is_revert, revert_data
from mevaas_execution.protection.domain.statuses import sources


def test_revert_reasons_are_decoded() -> None:
    error = bytes.fromhex("08c379a0") + encode(["string"], ["UniswapV2Router: EXPIRED"])
    assert decode_reason(error) == "UniswapV2Router: EXPIRED"
    panic = bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])
    assert decode_reason(panic) == "panic 0x11: arithmetic overflow or underflow"
    assert decode_reason(bytes.fromhex("deadbeef01")) == "custom error 0xdeadbeef with data 0x01"
    assert decode_reason(b"") == "reverted without a reason"
    assert revert_data("0x" + error.hex()) == error
    assert revert_data({"data": "0x01"}) == b"\x01"
    assert revert_data("nonsense") == b""
    assert (
        is_revert(3, "execution reverted")
        and is_revert(-32603, "EVM revert")
        and not is_revert(-32602, "bad")
    )


def test_methods_are_routed_by_table() -> None:
    assert j.route("eth_sendRawTransaction") == "own"
    assert j.route("eth_getBalance") == "read" and j.route("eth_call") == "read"
    for refused in ("eth_sendTransaction", "anvil_setBalance", "evm_mine", "debug_traceCall", "eth_sign"):
        assert j.route(refused) == "refused"


def test_envelopes_are_checked() -> None:
    request = j.parse({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId"})
    assert request == j.Request(7, "eth_chainId", [])
    with pytest.raises(j.JsonRpcError, match="jsonrpc"):
        j.parse({"id": 1, "method": "eth_chainId"})
    with pytest.raises(j.JsonRpcError, match="params"):
        j.parse({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"a": 1}})
    with pytest.raises(j.JsonRpcError, match="empty batch"):
        j.batch([])
    with pytest.raises(j.JsonRpcError) as too_many:
        j.batch([{}] * (j.MAX_BATCH + 1))
    assert too_many.value.code == j.LIMIT_EXCEEDED
    assert j.batch({"a": 1}) == ([{"a": 1}], False)


def test_final_statuses_are_never_overwritten() -> None:
    assert set(sources("included")) == {"received", "submitted"}
    assert sources("failed") == ("received",)
    assert sources(None) == ("received", "submitted")
    assert "included" not in sources("expired")
