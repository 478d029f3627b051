"""Signed events: a consumer that acts on an event with consequences outside the platform's own
bookkeeping (the operator deletes a tenant's namespace on ``tenant.<id>.deleted``) checks that the
event came from the service that owns its subject, not merely from someone allowed on the bus.

Tenancy signs everything it publishes with its Ed25519 token key (``Bus.signer``); the signature
covers a domain-separation prefix (so it can never pass for a token signature), the subject, the
``Nats-Msg-Id`` and the payload, and travels in the ``Mevaas-Signature`` header as
``<key id>:<base64 signature>``. Verifiers hold only the public keys (the same ones that verify
tokens), so rotating the key follows the token key's rotation.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mevaas_core.auth import SigningKey, key_id_of
from mevaas_core.bus.streams import HEADER_MSG_ID

HEADER_SIGNATURE = "Mevaas-Signature"
_DOMAIN = b"mevaas-event-signature-v1\n"


def _signed_bytes(subject: str, msg_id: str, data: bytes) -> bytes:
    return b"".join((_DOMAIN, subject.encode(), b"\n", msg_id.encode(), b"\n", data))


class EventSigner:
    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._key_id = key.key_id

    def signature(self, subject: str, msg_id: str, data: bytes) -> str:
        raw = self._key.private_key.sign(_signed_bytes(subject, msg_id, data))
        return f"{self._key_id}:{base64.b64encode(raw).decode()}"


class EventVerifier:
    """Checks ``Mevaas-Signature`` against public keys (PEM); anything else is untrusted."""

    def __init__(self, public_pems: Iterable[str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for pem in public_pems:
            key = serialization.load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("event verification keys must be Ed25519 public keys")
            self._keys[key_id_of(key)] = key
        if not self._keys:
            raise ValueError("an EventVerifier needs at least one public key")

    def verify(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> bool:
        headers = headers or {}
        key_id, _, encoded = headers.get(HEADER_SIGNATURE, "").partition(":")
        key = self._keys.get(key_id)
        if key is None or not encoded:
            return False
        try:
            key.verify(
                base64.b64decode(encoded, validate=True),
                _signed_bytes(subject, headers.get(HEADER_MSG_ID, ""), data),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True
