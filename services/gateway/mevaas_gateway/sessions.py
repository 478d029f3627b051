"""Portal sessions without server-side state: the session cookie holds the caller's credential
(an API key, or a person's session token from SignInService) sealed with AES-256-GCM under the gateway's session key, plus its expiry. Each
request unseals it and exchanges it for an access token (cached until shortly before it expires),
so a session outlives the 15-minute token, any gateway replica can serve it, and the credential
is never stored at rest. A second cookie carries the CSRF token that mutating requests must echo
in `X-CSRF-Token` (double submit); the session cookie is HttpOnly and SameSite=Strict."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "mevaas_session"
CSRF_COOKIE = "mevaas_csrf"
CSRF_HEADER = "X-CSRF-Token"
NONCE_BYTES = 12
SESSION_PURPOSE = b"mevaas-session"


@dataclass(frozen=True, slots=True)
class Session:
    credential: str  # an API key (mvs_<id>_<secret>) or a user session token (mvu_<id>_<secret>)
    tenant_slug: str  # the portal the session was opened on ("" = shared domain root)
    csrf: str
    expires_at: int


class SessionSealer:
    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        if len(key) != 32:
            raise ValueError("the session key must be 32 bytes (base64 in GATEWAY_SESSION_KEY)")
        self._aead = AESGCM(key)
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_base64(cls, value: str, ttl_seconds: int) -> SessionSealer:
        return cls(base64.b64decode(value), ttl_seconds)

    def open_session(self, credential: str, tenant_slug: str, now: float | None = None) -> Session:
        now = time.time() if now is None else now
        return Session(credential, tenant_slug, secrets.token_urlsafe(24), int(now) + self.ttl_seconds)

    def seal(self, session: Session) -> str:
        return self.seal_value(
            {"c": session.credential, "t": session.tenant_slug, "x": session.csrf, "e": session.expires_at},
            SESSION_PURPOSE,
        )

    def unseal(self, value: str, now: float | None = None) -> Session | None:
        """The session in a cookie, or None when it is forged, tampered with or expired."""
        data = self.unseal_value(value, SESSION_PURPOSE)
        try:
            session = Session(str(data["c"]), str(data["t"]), str(data["x"]), int(str(data["e"])))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session

    def seal_value(self, data: dict[str, object], purpose: bytes) -> str:
        """JSON sealed for one purpose (the purpose is authenticated: a value sealed for one
        cookie is refused as another)."""
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(data).encode()
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, plain, purpose)).decode()

    def unseal_value(self, value: str, purpose: bytes) -> dict[str, object]:
        """The sealed JSON object, or {} when it is forged or tampered with."""
        try:
            raw = base64.urlsafe_b64decode(value.encode())
            data = json.loads(self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose))
        except (ValueError, InvalidTag, TypeError):
            return {}
        return data if isinstance(data, dict) else {}


def credential_fingerprint(credential: str) -> str:
    """Key of the token cache: never the credential itself."""
    return hashlib.sha256(credential.encode()).hexdigest()
