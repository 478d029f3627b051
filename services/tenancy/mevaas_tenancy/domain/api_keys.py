"""API keys look like `mvs_<key_id>_<secret>`: the key id is a public lookup handle, the secret
is shown once and stored only as an Argon2id hash (OWASP parameters), verified off the event loop."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

KEY_PREFIX = "mvs"
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key_id: str
    secret_hash: str
    plaintext: str = field(repr=False)


class MalformedApiKey(ValueError):
    pass


def generate_api_key() -> NewApiKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewApiKey(
        key_id=key_id, secret_hash=_hasher.hash(secret), plaintext=f"{KEY_PREFIX}_{key_id}_{secret}"
    )


def api_key_from_secret(key_id: str, secret: str) -> NewApiKey:
    """A key with a chosen id and secret: the platform-admin bootstrap key comes from settings."""
    return NewApiKey(
        key_id=key_id, secret_hash=_hasher.hash(secret), plaintext=f"{KEY_PREFIX}_{key_id}_{secret}"
    )


def split_api_key(api_key: str) -> tuple[str, str]:
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise MalformedApiKey("API keys look like mvs_<key id>_<secret>")
    return parts[1], parts[2]


async def verify_secret(secret_hash: str, secret: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(secret_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
