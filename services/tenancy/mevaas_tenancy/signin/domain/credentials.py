"""Pure rules of a person's credentials: password policy and hashing, TOTP codes (RFC 6238) that
count once, the lockout schedule, and the one-time tokens (session, enrolment) that are stored
only as hashes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN = 12
PASSWORD_MAX = 256
TOTP_DIGITS = 6
TOTP_PERIOD_SECONDS = 30
# One step either side: an authenticator's clock a little off still signs in.
TOTP_WINDOW = 1
# Failures in a row before the account locks, and the lock's length (doubling, capped).
MAX_FAILURES = 5
LOCK_BASE_SECONDS = 30
LOCK_MAX_SECONDS = 15 * 60
SESSION_PREFIX = "mvu"
ENROLMENT_PREFIX = "mve"

# Argon2id with OWASP's parameters (19 MiB, 2 passes); verified off the event loop.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the account is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def password_problem(password: str) -> str:
    """Why a new password is refused ("" when it is acceptable)."""
    if len(password) < PASSWORD_MIN:
        return f"must be at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"must be at most {PASSWORD_MAX} characters"
    if password.strip() != password:
        return "must not start or end with spaces"
    return ""


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def otpauth_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def is_code_shaped(code: str) -> bool:
    return len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()


def accepted_step(secret: str, code: str, *, now: float, last_step: int) -> int | None:
    """The time step whose code this is (within the window), if it is later than the last one
    accepted: a code is good once, and never after a later one."""
    if not is_code_shaped(code):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)
    current = int(now) // TOTP_PERIOD_SECONDS
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if step > last_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def lock_seconds(failures: int) -> int:
    """How long the account stays locked after this many failures in a row (0: not locked)."""
    if failures < MAX_FAILURES:
        return 0
    return int(min(LOCK_BASE_SECONDS * 2 ** (failures - MAX_FAILURES), LOCK_MAX_SECONDS))


@dataclass(frozen=True, slots=True)
class NewToken:
    token_id: str
    secret_hash: str
    plaintext: str = field(repr=False)


class MalformedToken(ValueError):
    pass


def secret_hash(secret: str) -> str:
    """The tokens' secrets are 256 random bits: a plain SHA-256 is enough (no guessing to slow)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(prefix: str) -> NewToken:
    token_id, secret = secrets.token_hex(12), secrets.token_urlsafe(32)
    return NewToken(token_id, secret_hash(secret), f"{prefix}_{token_id}_{secret}")


def split_token(prefix: str, token: str) -> tuple[str, str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2] or len(token) > 256:
        raise MalformedToken(f"looks like {prefix}_<id>_<secret>")
    return parts[1], parts[2]


def secret_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, secret_hash(secret))
