"""The fair-ordering log, pure: each entry commits to its chain, its sequence number, the
transaction hash, when it was received and the previous entry's hash; the entry hash is the
SHA-256 of that canonical form and the signature an Ed25519 signature of it. The canonical form
is documented (docs/protection.md) so anyone can check a log without our code: a JSON object with
sorted keys and no spaces,

    {"chain_id":31337,"prev_hash":"00..00","received_at_unix_nanos":...,"sequence":1,"tx_hash":"0x..","v":1}

Verification (`mevaas verify-ordering`) re-derives every hash, checks each signature and link,
and compares the order of inclusion on chain with the sequence order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VERSION = 1
GENESIS = "0" * 64


def canonical(
    chain_id: int, sequence: int, tx_hash: str, received_at_unix_nanos: int, prev_hash: str
) -> bytes:
    return json.dumps(
        {
            "chain_id": chain_id,
            "prev_hash": prev_hash,
            "received_at_unix_nanos": received_at_unix_nanos,
            "sequence": sequence,
            "tx_hash": tx_hash.lower(),
            "v": VERSION,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def public_key_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Entry:
    chain_id: int
    sequence: int
    tx_hash: str
    received_at_unix_nanos: int
    prev_hash: str
    entry_hash: str
    signature: str
    key_id: str

    def body(self) -> bytes:
        return canonical(
            self.chain_id, self.sequence, self.tx_hash, self.received_at_unix_nanos, self.prev_hash
        )

    def view(self) -> dict[str, Any]:
        """The entry as the HTTP log and the JSON-RPC receipt show it."""
        return {
            "chainId": self.chain_id,
            "sequence": self.sequence,
            "txHash": self.tx_hash,
            "receivedAtUnixNanos": str(self.received_at_unix_nanos),
            "prevHash": self.prev_hash,
            "entryHash": self.entry_hash,
            "signature": self.signature,
            "keyId": self.key_id,
        }


def next_entry(
    previous: Entry | None, chain_id: int, tx_hash: str, now_unix_nanos: int, key: Ed25519PrivateKey
) -> Entry:
    """The entry after ``previous`` (None: the chain's first): sequence + 1, linked to its hash,
    and a timestamp never before the previous one (a clock stepping back cannot reorder time)."""
    sequence = 1 if previous is None else previous.sequence + 1
    prev_hash = GENESIS if previous is None else previous.entry_hash
    received = now_unix_nanos if previous is None else max(now_unix_nanos, previous.received_at_unix_nanos)
    body = canonical(chain_id, sequence, tx_hash, received, prev_hash)
    return Entry(
        chain_id=chain_id,
        sequence=sequence,
        tx_hash=tx_hash.lower(),
        received_at_unix_nanos=received,
        prev_hash=prev_hash,
        entry_hash=hashlib.sha256(body).hexdigest(),
        signature=key.sign(body).hex(),
        key_id=key_id(key.public_key()),
    )


def signature_valid(entry: Entry, key: Ed25519PublicKey) -> bool:
    try:
        key.verify(bytes.fromhex(entry.signature), entry.body())
    except (InvalidSignature, ValueError):
        return False
    return True
