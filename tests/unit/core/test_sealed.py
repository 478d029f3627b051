"""mevaas_core.sealed: a value sealed to a one-time key opens only with that key pair and the same
context, and any change to the ciphertext, the sender's key or the context is refused."""

from __future__ import annotations

import pytest

from mevaas_core import sealed


def test_a_sealed_value_opens_only_for_its_recipient_and_context() -> None:
    recipient = sealed.Recipient()
    box = sealed.seal(recipient.public_key, b"tdk-1:secret", b"tenant-data-key|a|tdk-1")
    assert b"secret" not in box.ciphertext and len(box.sender_public_key) == sealed.PUBLIC_KEY_BYTES
    assert recipient.open(box, b"tenant-data-key|a|tdk-1") == b"tdk-1:secret"
    with pytest.raises(sealed.SealError):
        recipient.open(box, b"tenant-data-key|b|tdk-1")
    with pytest.raises(sealed.SealError):
        sealed.Recipient().open(box, b"tenant-data-key|a|tdk-1")
    flipped = bytes([box.ciphertext[-1] ^ 1])
    with pytest.raises(sealed.SealError):
        recipient.open(
            sealed.Sealed(box.sender_public_key, box.ciphertext[:-1] + flipped), b"tenant-data-key|a|tdk-1"
        )
    other_sender = sealed.Recipient().public_key
    with pytest.raises(sealed.SealError):
        recipient.open(sealed.Sealed(other_sender, box.ciphertext), b"tenant-data-key|a|tdk-1")


def test_each_seal_is_fresh_and_bad_keys_are_refused() -> None:
    recipient = sealed.Recipient()
    first = sealed.seal(recipient.public_key, b"x", b"c")
    second = sealed.seal(recipient.public_key, b"x", b"c")
    assert first.sender_public_key != second.sender_public_key and first.ciphertext != second.ciphertext
    for bad in (b"", b"short", recipient.public_key + b"x"):
        with pytest.raises(sealed.SealError):
            sealed.seal(bad, b"x", b"c")
    with pytest.raises(sealed.SealError):
        recipient.open(sealed.Sealed(b"short", first.ciphertext), b"c")
