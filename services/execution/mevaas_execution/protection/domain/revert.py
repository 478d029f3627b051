"""Revert reasons from a node's answer to ``eth_call``: ``Error(string)``, ``Panic(uint256)`` or a
custom error's selector, so a refused transaction says why."""

from __future__ import annotations

from typing import Any

ERROR_SELECTOR = bytes.fromhex("08c379a0")
PANIC_SELECTOR = bytes.fromhex("4e487b71")
PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


def revert_data(data: Any) -> bytes:
    """The revert payload a node attached to an error (a hex string, or ``{"data": hex}``)."""
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""
    return b""


def decode_reason(data: bytes) -> str:
    """A readable reason for a revert payload."""
    if not data:
        return "reverted without a reason"
    if data[:4] == ERROR_SELECTOR and len(data) >= 68:
        length = int.from_bytes(data[36:68], "big")
        text = data[68 : 68 + length]
        if len(text) == length:
            return text.decode("utf-8", errors="replace")
    if data[:4] == PANIC_SELECTOR and len(data) >= 36:
        code = int.from_bytes(data[4:36], "big")
        return f"panic 0x{code:02x}: {PANIC_CODES.get(code, 'unknown panic code')}"
    return f"custom error 0x{data[:4].hex()}" + (f" with data 0x{data[4:].hex()}" if len(data) > 4 else "")


def is_revert(code: int, message: str) -> bool:
    """Whether a node's error to ``eth_call`` is the call reverting (not a malformed call)."""
    return code == 3 or "revert" in message.lower()
