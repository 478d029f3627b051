"""Per-tenant wallets with private keys encrypted at rest (envelope encryption, AES-256-GCM).

Each wallet's private key is encrypted under its own random 256-bit data key (DEK); the DEK is
wrapped (encrypted) under a key-encryption key (KEK) from settings, and the KEK's id is stored with
the record. Rotating a KEK re-wraps only the DEK: the key ciphertext does not change and the private
key is never decrypted. Both ciphertexts are bound to the tenant, the address and the KEK id as
associated data, so a record copied to another tenant or address, or with a swapped KEK id, fails to
decrypt instead of yielding a key.

Storage is the execution service's business (it keeps `WalletRecord`'s bytes in its own schema);
this module is pure crypto. Private keys only exist in memory inside `SecretKey`, whose repr/str
never show them.
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mevaas_chain.signer import address_from_private_key

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_NONCE_BYTES = 12
_FORMAT = b"mevaas-wallet-v1"


class KeystoreError(Exception):
    """A record cannot be decrypted: wrong or unknown KEK, or tampered data."""


class SecretKey:
    """A secp256k1 private key that does not print itself."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32 or not 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
            raise ValueError("not a valid secp256k1 private key")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> SecretKey:
        while True:
            candidate = os.urandom(32)
            if 0 < int.from_bytes(candidate, "big") < SECP256K1_ORDER:
                return cls(candidate)

    @classmethod
    def from_hex(cls, value: str) -> SecretKey:
        return cls(bytes.fromhex(value.removeprefix("0x")))

    def reveal(self) -> bytes:
        """The raw 32 bytes, for signing only."""
        return self._key

    def __repr__(self) -> str:
        return "SecretKey(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        raise TypeError("SecretKey is not hashable")

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretKey cannot be pickled")


@dataclass(frozen=True, repr=False)
class KeyEncryptionKey:
    """A 256-bit KEK with the id that records store to name it."""

    kek_id: str
    key: bytes

    def __post_init__(self) -> None:
        if not self.kek_id or ":" in self.kek_id or "," in self.kek_id:
            raise ValueError("kek_id must be non-empty and contain no ':' or ','")
        if len(self.key) != 32:
            raise ValueError("a KEK is 32 bytes (AES-256)")

    @classmethod
    def generate(cls, kek_id: str) -> KeyEncryptionKey:
        return cls(kek_id, AESGCM.generate_key(bit_length=256))

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(kek_id={self.kek_id!r}, key=<redacted>)"


class KeyRing:
    """The KEKs a service knows, and which one new records are wrapped under."""

    def __init__(self, keks: Mapping[str, KeyEncryptionKey] | list[KeyEncryptionKey], current: str) -> None:
        items = list(keks.values()) if isinstance(keks, Mapping) else list(keks)
        self._keks = {k.kek_id: k for k in items}
        if current not in self._keks:
            raise ValueError(f"current KEK {current!r} is not in the ring")
        self.current = current

    @classmethod
    def from_spec(cls, spec: str, current: str | None = None) -> KeyRing:
        """Parse settings of the form `id1:base64key,id2:base64key`; the last is current by default."""
        keks: list[KeyEncryptionKey] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            kek_id, _, encoded = part.partition(":")
            keks.append(KeyEncryptionKey(kek_id, base64.b64decode(encoded, validate=True)))
        if not keks:
            raise ValueError("no KEKs configured")
        return cls(keks, current or keks[-1].kek_id)

    def get(self, kek_id: str) -> KeyEncryptionKey:
        try:
            return self._keks[kek_id]
        except KeyError:
            raise KeystoreError(f"unknown KEK {kek_id!r}") from None

    def __contains__(self, kek_id: object) -> bool:
        return kek_id in self._keks

    def __repr__(self) -> str:
        return f"KeyRing(kek_ids={sorted(self._keks)!r}, current={self.current!r})"


@dataclass(frozen=True)
class WalletRecord:
    """What the execution service stores per wallet: nothing here reveals the key without a KEK."""

    tenant_id: str
    address: str
    kek_id: str
    wrapped_dek: bytes  # nonce || AES-GCM(KEK, DEK)
    ciphertext: bytes  # nonce || AES-GCM(DEK, private key)


def _aad(kind: bytes, tenant_id: str, address: str, kek_id: str = "") -> bytes:
    return b"|".join((_FORMAT, kind, tenant_id.encode(), address.lower().encode(), kek_id.encode()))


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
    except InvalidTag:
        raise KeystoreError("decryption failed: wrong KEK or tampered record") from None


def encrypt_private_key(tenant_id: str, secret: SecretKey, keyring: KeyRing) -> WalletRecord:
    """Encrypt an existing key for a tenant under a fresh DEK wrapped by the current KEK."""
    address = address_from_private_key(secret)
    kek = keyring.get(keyring.current)
    dek = AESGCM.generate_key(bit_length=256)
    ciphertext = _seal(dek, secret.reveal(), _aad(b"key", tenant_id, address))
    wrapped = _seal(kek.key, dek, _aad(b"dek", tenant_id, address, kek.kek_id))
    return WalletRecord(tenant_id, address, kek.kek_id, wrapped, ciphertext)


def generate_wallet(tenant_id: str, keyring: KeyRing) -> WalletRecord:
    """A new random wallet for the tenant, already encrypted; the plaintext key is not returned."""
    return encrypt_private_key(tenant_id, SecretKey.generate(), keyring)


def _unwrap_dek(record: WalletRecord, keyring: KeyRing) -> bytes:
    kek = keyring.get(record.kek_id)
    return _open(kek.key, record.wrapped_dek, _aad(b"dek", record.tenant_id, record.address, record.kek_id))


def decrypt_private_key(record: WalletRecord, keyring: KeyRing) -> SecretKey:
    """The wallet's key; fails with KeystoreError on a wrong KEK or any tampering."""
    dek = _unwrap_dek(record, keyring)
    secret = SecretKey(_open(dek, record.ciphertext, _aad(b"key", record.tenant_id, record.address)))
    if address_from_private_key(secret).lower() != record.address.lower():
        raise KeystoreError("decrypted key does not match the record's address")
    return secret


def rotate(record: WalletRecord, keyring: KeyRing, new_kek_id: str | None = None) -> WalletRecord:
    """Re-wrap the record's DEK under `new_kek_id` (default: the ring's current KEK).

    Only the DEK is decrypted, never the private key, and the key ciphertext is kept as is.
    """
    target = keyring.get(new_kek_id or keyring.current)
    if target.kek_id == record.kek_id:
        return record
    dek = _unwrap_dek(record, keyring)
    wrapped = _seal(target.key, dek, _aad(b"dek", record.tenant_id, record.address, target.kek_id))
    return WalletRecord(record.tenant_id, record.address, target.kek_id, wrapped, record.ciphertext)
