"""Envelope-encrypted wallets: round trip, wrong KEK, rotation, no plaintext anywhere."""

from __future__ import annotations

import base64
import dataclasses
import pickle

import pytest
from eth_account import Account

from mevaas_chain.keystore import (
    KeyEncryptionKey,
    KeyRing,
    KeystoreError,
    SecretKey,
    WalletRecord,
    decrypt_private_key,
    encrypt_private_key,
    generate_wallet,
    rotate,
)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([KeyEncryptionKey.generate("kek-1"), KeyEncryptionKey.generate("kek-2")], current="kek-1")


def record_bytes(record: WalletRecord) -> bytes:
    """Everything the execution service would persist or log about a wallet."""
    return repr(record).encode() + record.wrapped_dek + record.ciphertext + record.address.encode()


def test_round_trip_and_address(ring: KeyRing) -> None:
    secret = SecretKey.generate()
    record = encrypt_private_key("tenant-a", secret, ring)
    assert record.address == Account.from_key(secret.reveal()).address
    assert record.kek_id == "kek-1"
    assert decrypt_private_key(record, ring) == secret


def test_wrong_or_unknown_kek_fails(ring: KeyRing) -> None:
    record = generate_wallet("tenant-a", ring)
    other = KeyRing([KeyEncryptionKey.generate("kek-1")], current="kek-1")
    with pytest.raises(KeystoreError):
        decrypt_private_key(record, other)
    with pytest.raises(KeystoreError):
        decrypt_private_key(dataclasses.replace(record, kek_id="kek-9"), ring)


def test_record_is_bound_to_tenant_address_and_kek(ring: KeyRing) -> None:
    record = generate_wallet("tenant-a", ring)
    for tampered in (
        dataclasses.replace(record, tenant_id="tenant-b"),
        dataclasses.replace(record, address="0x" + "11" * 20),
        dataclasses.replace(record, kek_id="kek-2"),
        dataclasses.replace(record, ciphertext=record.ciphertext[:-1] + bytes([record.ciphertext[-1] ^ 1])),
    ):
        with pytest.raises(KeystoreError):
            decrypt_private_key(tampered, ring)


def test_rotation_rewraps_without_touching_the_key_ciphertext(ring: KeyRing) -> None:
    secret = SecretKey.generate()
    record = encrypt_private_key("tenant-a", secret, ring)
    rotated = rotate(record, ring, "kek-2")
    assert rotated.kek_id == "kek-2"
    assert rotated.ciphertext == record.ciphertext
    assert rotated.wrapped_dek != record.wrapped_dek
    assert decrypt_private_key(rotated, ring) == secret
    # Once kek-1 is retired, only the rotated record still opens.
    retired = KeyRing([ring.get("kek-2")], current="kek-2")
    assert decrypt_private_key(rotated, retired) == secret
    with pytest.raises(KeystoreError):
        decrypt_private_key(record, retired)
    assert rotate(rotated, ring, "kek-2") is rotated


def test_nothing_shows_the_key(ring: KeyRing) -> None:
    for _ in range(20):
        secret = SecretKey.generate()
        raw = secret.reveal()
        record = encrypt_private_key("tenant-a", secret, ring)
        stored = record_bytes(record)
        for needle in (raw, raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw)):
            assert needle not in stored
        for text in (
            repr(secret),
            str(secret),
            f"{secret}",
            f"{secret!r}",
            repr(ring),
            repr(ring.get("kek-1")),
        ):
            assert raw.hex() not in text.lower()
        assert ring.get("kek-1").key.hex() not in repr(ring.get("kek-1"))
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        hash(secret)


def test_keyring_from_settings_spec() -> None:
    k1, k2 = KeyEncryptionKey.generate("a"), KeyEncryptionKey.generate("b")
    spec = ",".join(f"{k.kek_id}:{base64.b64encode(k.key).decode()}" for k in (k1, k2))
    ring = KeyRing.from_spec(spec)
    assert ring.current == "b" and "a" in ring
    assert KeyRing.from_spec(spec, current="a").current == "a"
    with pytest.raises(ValueError):
        KeyRing.from_spec("")
    with pytest.raises(ValueError):
        SecretKey(b"\0" * 32)
