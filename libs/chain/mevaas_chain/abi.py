"""ABI fragments, event topics and address helpers for Uniswap V2 style contracts.

Kept as plain encoders over ``eth_abi`` so hot paths (the pool index's batched ``eth_call``) do not
pay for web3 contract objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

SYNC_TOPIC = "0x" + keccak(text="Sync(uint112,uint112)").hex()
PAIR_CREATED_TOPIC = "0x" + keccak(text="PairCreated(address,address,address,uint256)").hex()
SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()


def keccak_hex(data: bytes) -> str:
    """``0x``-prefixed keccak256, e.g. a signed transaction's hash."""
    return "0x" + keccak(data).hex()


def selector(signature: str) -> bytes:
    """The 4-byte function selector of e.g. ``"getReserves()"``."""
    return keccak(text=signature)[:4]


def encode_call(signature: str, *args: Any) -> bytes:
    """Calldata for ``signature`` (``"allPairs(uint256)"``) with ``args``."""
    types = signature[signature.index("(") + 1 : -1]
    arg_types = [t for t in types.split(",") if t]
    return selector(signature) + (encode(arg_types, list(args)) if arg_types else b"")


def decode_result(types: Sequence[str], data: bytes) -> tuple[Any, ...]:
    return tuple(decode(list(types), data))


ALL_PAIRS_LENGTH = encode_call("allPairsLength()")
TOKEN0 = encode_call("token0()")
TOKEN1 = encode_call("token1()")
GET_RESERVES = encode_call("getReserves()")


def all_pairs(index: int) -> bytes:
    return encode_call("allPairs(uint256)", index)


def get_pair(token_a: str, token_b: str) -> bytes:
    return encode_call("getPair(address,address)", token_a, token_b)


def balance_of(owner: str) -> bytes:
    return encode_call("balanceOf(address)", owner)


def decode_address(data: bytes) -> str:
    return to_checksum_address(decode(["address"], data)[0])


def decode_uint(data: bytes) -> int:
    value: int = decode(["uint256"], data)[0]
    return value


def decode_reserves(data: bytes) -> tuple[int, int]:
    r0, r1, _ = decode(["uint112", "uint112", "uint32"], data)
    return int(r0), int(r1)


def decode_sync(data: bytes) -> tuple[int, int]:
    """Reserves carried by a ``Sync(uint112,uint112)`` log's data."""
    r0, r1 = decode(["uint112", "uint112"], data)
    return int(r0), int(r1)


def sort_tokens(token_a: str, token_b: str) -> tuple[str, str]:
    a, b = to_checksum_address(token_a), to_checksum_address(token_b)
    if int(a, 16) == int(b, 16):
        raise ValueError("identical token addresses")
    return (a, b) if int(a, 16) < int(b, 16) else (b, a)


def pair_address(factory: str, init_code_hash: str, token_a: str, token_b: str) -> str:
    """CREATE2 address of the pair of two tokens (UniswapV2Library.pairFor)."""
    t0, t1 = sort_tokens(token_a, token_b)
    salt = keccak(bytes.fromhex(t0[2:]) + bytes.fromhex(t1[2:]))
    raw = keccak(
        b"\xff" + bytes.fromhex(factory[2:]) + salt + bytes.fromhex(init_code_hash.removeprefix("0x"))
    )
    return to_checksum_address(raw[12:])


def create_address(sender: str, nonce: int) -> str:
    """Address of a contract deployed by ``sender`` at ``nonce`` (CREATE)."""
    sender_bytes = bytes.fromhex(sender.removeprefix("0x"))
    if nonce == 0:
        nonce_rlp = b"\x80"
    elif nonce < 0x80:
        nonce_rlp = bytes([nonce])
    else:
        body = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
        nonce_rlp = bytes([0x80 + len(body)]) + body
    payload = bytes([0x80 + 20]) + sender_bytes + nonce_rlp
    raw = keccak(bytes([0xC0 + len(payload)]) + payload)
    return to_checksum_address(raw[12:])
