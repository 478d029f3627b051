"""Fast Ethereum transaction signing with coincurve (libsecp256k1).

Produces the same raw bytes and hashes as eth_account's `Account.sign_transaction` for legacy
(EIP-155, or pre-155 without a chain id) and EIP-1559 (type 2) transactions: RLP of the fields,
Keccak-256 of the signing payload, a deterministic (RFC 6979) low-s recoverable signature, and
v = recovery id + 35 + 2 * chain_id (legacy), 27 + recovery id (pre-155) or the y parity (type 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from coincurve import PrivateKey
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address


class HasSecret(Protocol):
    def reveal(self) -> bytes: ...


PrivateKeyLike = bytes | HasSecret

AccessList = Sequence[tuple[str, Sequence[bytes | str]]]


def _secret_bytes(key: PrivateKeyLike) -> bytes:
    return key if isinstance(key, bytes) else key.reveal()


def address_from_private_key(key: PrivateKeyLike) -> str:
    """The checksummed address of a private key."""
    public = PrivateKey(_secret_bytes(key)).public_key.format(compressed=False)[1:]
    return str(to_checksum_address(keccak(public)[-20:]))


def _rlp_length(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(encoded)]) + encoded


RlpItem = bytes | int | Sequence["RlpItem"]


def rlp_encode(item: RlpItem) -> bytes:
    """RLP: integers big-endian without leading zeros (0 is the empty string), lists nested."""
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP cannot encode negative integers")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if isinstance(item, bytes | bytearray):
        if len(item) == 1 and item[0] < 0x80:
            return bytes(item)
        return _rlp_length(len(item), 0x80) + bytes(item)
    payload = b"".join(rlp_encode(i) for i in item)
    return _rlp_length(len(payload), 0xC0) + payload


def _hex_bytes(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return bytes.fromhex(value.removeprefix("0x"))


def _address_bytes(value: str | bytes | None) -> bytes:
    raw = _hex_bytes(value)
    if raw and len(raw) != 20:
        raise ValueError("an address is 20 bytes")
    return raw


@dataclass(frozen=True, slots=True)
class LegacyTransaction:
    nonce: int
    gas_price: int
    gas: int
    to: str | None
    value: int = 0
    data: bytes = b""
    chain_id: int | None = None

    def fields(self) -> list[RlpItem]:
        return [self.nonce, self.gas_price, self.gas, _address_bytes(self.to), self.value, self.data]


@dataclass(frozen=True, slots=True)
class DynamicFeeTransaction:
    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: str | None
    value: int = 0
    data: bytes = b""
    access_list: AccessList = field(default_factory=tuple)

    def fields(self) -> list[RlpItem]:
        access: list[RlpItem] = [
            [_address_bytes(addr), [_hex_bytes(k).rjust(32, b"\0") for k in keys]]
            for addr, keys in self.access_list
        ]
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            _address_bytes(self.to),
            self.value,
            self.data,
            access,
        ]


Transaction = LegacyTransaction | DynamicFeeTransaction


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    raw: bytes
    hash: bytes
    r: int
    s: int
    v: int

    @property
    def raw_hex(self) -> str:
        return "0x" + self.raw.hex()


def transaction_from_dict(tx: Mapping[str, Any]) -> Transaction:
    """A web3-style dict (camelCase keys as eth_account takes them) as a typed transaction."""
    data = _hex_bytes(tx.get("data", b""))
    to = tx.get("to") or None
    if "maxFeePerGas" in tx or tx.get("type") in (2, "0x2"):
        access = tuple((entry["address"], tuple(entry["storageKeys"])) for entry in tx.get("accessList", ()))
        return DynamicFeeTransaction(
            chain_id=int(tx["chainId"]),
            nonce=int(tx["nonce"]),
            max_priority_fee_per_gas=int(tx["maxPriorityFeePerGas"]),
            max_fee_per_gas=int(tx["maxFeePerGas"]),
            gas=int(tx["gas"]),
            to=to,
            value=int(tx.get("value", 0)),
            data=data,
            access_list=access,
        )
    chain_id = tx.get("chainId")
    return LegacyTransaction(
        nonce=int(tx["nonce"]),
        gas_price=int(tx["gasPrice"]),
        gas=int(tx["gas"]),
        to=to,
        value=int(tx.get("value", 0)),
        data=data,
        chain_id=None if chain_id is None else int(chain_id),
    )


def _sign_hash(message_hash: bytes, key: PrivateKeyLike) -> tuple[int, int, int]:
    signature = PrivateKey(_secret_bytes(key)).sign_recoverable(message_hash, hasher=None)
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]


def sign_transaction(tx: Transaction | Mapping[str, Any], key: PrivateKeyLike) -> SignedTransaction:
    """Sign; the raw bytes are what `eth_sendRawTransaction` takes, `hash` the transaction hash."""
    if not isinstance(tx, LegacyTransaction | DynamicFeeTransaction):
        tx = transaction_from_dict(tx)
    fields = tx.fields()
    if isinstance(tx, DynamicFeeTransaction):
        r, s, recovery = _sign_hash(keccak(b"\x02" + rlp_encode(fields)), key)
        raw = b"\x02" + rlp_encode([*fields, recovery, r, s])
        return SignedTransaction(raw, keccak(raw), r, s, recovery)
    if tx.chain_id is None:
        r, s, recovery = _sign_hash(keccak(rlp_encode(fields)), key)
        v = 27 + recovery
    else:
        r, s, recovery = _sign_hash(keccak(rlp_encode([*fields, tx.chain_id, 0, 0])), key)
        v = 35 + 2 * tx.chain_id + recovery
    raw = rlp_encode([*fields, v, r, s])
    return SignedTransaction(raw, keccak(raw), r, s, v)
