"""Decoding a client-signed transaction (legacy, EIP-2930, EIP-1559) far enough to protect it:
chain id, nonce, hash, the recovered sender, and the call it makes (so it can be simulated)."""

from __future__ import annotations

from dataclasses import dataclass

import rlp  # type: ignore[import-untyped]
from coincurve import PublicKey
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from mevaas_chain.signer import rlp_encode

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class RawTransactionError(ValueError):
    """Not a well-formed signed transaction."""


@dataclass(frozen=True, slots=True)
class DecodedTransaction:
    chain_id: int | None
    nonce: int
    sender: str
    tx_hash: str
    # The call, for simulating it: "" for a contract creation.
    to: str = ""
    value: int = 0
    data: bytes = b""
    gas: int = 0
    # gasPrice (legacy, type 1) or maxFeePerGas (type 2).
    max_fee_per_gas: int = 0
    # maxPriorityFeePerGas (type 2); the gas price otherwise.
    max_priority_fee_per_gas: int = 0

    def effective_gas_price(self, base_fee: int) -> int:
        """What one unit of gas costs the sender in a block of this base fee."""
        return min(self.max_fee_per_gas, base_fee + self.max_priority_fee_per_gas)

    def call_object(self) -> dict[str, str]:
        """The transaction as an ``eth_call`` argument (fees left out: a simulation must not
        fail on the sender's balance for gas alone, the inclusion checks that)."""
        call = {"from": self.sender, "value": hex(self.value), "data": "0x" + self.data.hex()}
        if self.to:
            call["to"] = self.to
        if self.gas:
            call["gas"] = hex(self.gas)
        return call


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _recover(signing_hash: bytes, recovery: int, r: int, s: int) -> str:
    if recovery not in (0, 1) or not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise RawTransactionError("invalid signature values")
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recovery])
    try:
        public = PublicKey.from_signature_and_message(signature, signing_hash, hasher=None)
    except Exception as exc:
        raise RawTransactionError("signature does not recover a public key") from exc
    return str(to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:]))


def decode_signed(raw: bytes) -> DecodedTransaction:
    if not raw:
        raise RawTransactionError("empty transaction")
    tx_hash = "0x" + keccak(raw).hex()
    try:
        if raw[0] in (1, 2):
            fields = rlp.decode(raw[1:])
            expected = 11 if raw[0] == 1 else 12
            if not isinstance(fields, list) or len(fields) != expected:
                raise RawTransactionError(f"type {raw[0]} transaction must have {expected} fields")
            body = fields[:-3]
            y_parity, r, s = (_int(f) for f in fields[-3:])
            sender = _recover(keccak(bytes([raw[0]]) + rlp_encode(body)), y_parity, r, s)
            # type 1: chainId, nonce, gasPrice, gas, to, value, data; type 2 has two fee fields.
            fee, gas, to, value, data = fields[3 if raw[0] == 2 else 2 : 8 if raw[0] == 2 else 7]
            tip = _int(fields[2]) if raw[0] == 2 else _int(fee)
            return DecodedTransaction(
                _int(fields[0]), _int(fields[1]), sender, tx_hash, *_call(to, value, data, gas, fee), tip
            )
        if raw[0] < 0xC0:
            raise RawTransactionError(f"unsupported transaction type {raw[0]}")
        fields = rlp.decode(raw)
    except rlp.exceptions.DecodingError as exc:
        raise RawTransactionError("not RLP") from exc
    if not isinstance(fields, list) or len(fields) != 9:
        raise RawTransactionError("a legacy transaction has 9 fields")
    v, r, s = (_int(f) for f in fields[6:])
    body = list(fields[:6])
    if v in (27, 28):
        chain_id: int | None = None
        recovery = v - 27
        signing = rlp_encode(body)
    elif v >= 35:
        chain_id = (v - 35) // 2
        recovery = (v - 35) % 2
        signing = rlp_encode([*body, chain_id, 0, 0])
    else:
        raise RawTransactionError("invalid v")
    sender = _recover(keccak(signing), recovery, r, s)
    gas_price, gas, to, value, data = fields[1:6]
    return DecodedTransaction(
        chain_id, _int(fields[0]), sender, tx_hash, *_call(to, value, data, gas, gas_price), _int(gas_price)
    )


def _call(to: bytes, value: bytes, data: bytes, gas: bytes, fee: bytes) -> tuple[str, int, bytes, int, int]:
    if len(to) not in (0, 20):
        raise RawTransactionError("'to' must be empty or 20 bytes")
    return (
        str(to_checksum_address(to)) if to else "",
        _int(value),
        bytes(data),
        _int(gas),
        _int(fee),
    )
