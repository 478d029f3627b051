"""Sealed replies: a secret answered to the one holder of an X25519 key pair made for that request,
so it crosses the bus (and any log, trace or capture of it) only encrypted.

The recipient makes a fresh key pair per request and sends the public half; the sender makes its
own ephemeral pair, derives an AES-256-GCM key from the X25519 shared secret (HKDF-SHA256 over both
public keys and a context naming what is sealed), and answers its public half with the ciphertext.
The context is bound as associated data too: a sealed value replayed for another tenant or key id
does not open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PUBLIC_KEY_BYTES = 32
_NONCE_BYTES = 12
_INFO = b"mevaas-sealed-v1|"


class SealError(ValueError):
    """A public key of the wrong size, or a sealed value that does not open (tampered, wrong key,
    wrong context)."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key(shared: bytes, sender: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=sender + recipient, info=_INFO + context).derive(shared)


def _public(raw: bytes) -> X25519PublicKey:
    if len(raw) != PUBLIC_KEY_BYTES:
        raise SealError(f"an X25519 public key is {PUBLIC_KEY_BYTES} bytes, not {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Sealed:
    sender_public_key: bytes
    ciphertext: bytes  # nonce + AES-GCM ciphertext and tag


class Recipient:
    """One request's key pair: send `public_key`, open the answer with `open`."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_key = _raw(self._private.public_key())

    def open(self, sealed: Sealed, context: bytes) -> bytes:
        sender = _public(sealed.sender_public_key)
        key = _key(self._private.exchange(sender), sealed.sender_public_key, self.public_key, context)
        nonce, body = sealed.ciphertext[:_NONCE_BYTES], sealed.ciphertext[_NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, body, context)
        except InvalidTag:
            raise SealError("the sealed value does not open with this key and context") from None


def seal(recipient_public_key: bytes, plaintext: bytes, context: bytes) -> Sealed:
    recipient = _public(recipient_public_key)
    ephemeral = X25519PrivateKey.generate()
    sender = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), sender, recipient_public_key, context)
    nonce = os.urandom(_NONCE_BYTES)
    return Sealed(sender, nonce + AESGCM(key).encrypt(nonce, plaintext, context))
