"""Decoding a client-signed transaction (legacy, EIP-2930, EIP-1559) far enough to protect it:
chain id, nonce, hash and the recovered sender."""

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
            return DecodedTransaction(_int(fields[0]), _int(fields[1]), sender, tx_hash)
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
    return DecodedTransaction(chain_id, _int(fields[0]), sender, tx_hash)
