"""Access tokens: tenancy signs short-lived JWTs (EdDSA/Ed25519) for an API key; every service
verifies them locally with the public key, so no request needs a call to tenancy.

Claims: `sub` (API key id), `uid` (the key's user, if any), `tid` (tenant id), `roles`, `tier`,
`rps`/`burst` (the plan's rate limit, enforced per tenant by every service), `iss`, `aud`, `iat`,
`iat_ms` (issue time in milliseconds, which revocations compare against), `exp`, `jti`; the header
carries `kid` so keys can be rotated (several public keys verify at once).

A verifier refuses tokens whose lifetime (`exp - iat`) exceeds its maximum: a leaked signing key or a misconfigured issuer cannot mint long-lived credentials that the
revocation feed (mevaas_core.revocation), which only remembers one maximum lifetime, would forget.
Tokens issued in the future are refused too.
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mevaas_core.errors import Unauthenticated

PLATFORM_TENANT_ID = "_platform"
VERIFIED_CACHE_SIZE = 10_000
ALGORITHM = "EdDSA"
# The longest life a verifier accepts by default; the issuer's TTL must not exceed it.
MAX_TOKEN_LIFETIME_SECONDS = 3600


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    TRADER = "trader"
    VIEWER = "viewer"
    COMPLIANCE = "compliance"
    PLATFORM_ADMIN = "platform_admin"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant_id: str
    roles: frozenset[Role]
    tier: str = ""
    rate_per_second: float = 0.0
    burst: int = 0
    token_id: str = ""
    expires_at: int = 0
    # The API key's user ("" for keys of no user) and when the token was issued (ms since epoch).
    user_id: str = ""
    issued_at_ms: int = 0

    @property
    def is_platform_admin(self) -> bool:
        return Role.PLATFORM_ADMIN in self.roles

    def has_any(self, roles: Iterable[Role]) -> bool:
        return self.is_platform_admin or not self.roles.isdisjoint(roles)


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        return cls(key_id=key_id_of(private_key.public_key()), private_key=private_key)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        loaded = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("JWT signing key must be an Ed25519 private key")
        return cls(key_id=key_id_of(loaded.public_key()), private_key=loaded)

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def public_pem(self) -> str:
        return public_pem(self.private_key.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id_of(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _load_public_pem(pem: str) -> Ed25519PublicKey:
    loaded = serialization.load_pem_public_key(pem.encode())
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("JWT public keys must be Ed25519")
    return loaded


def key_id_of_pem(pem: str) -> str:
    return key_id_of(_load_public_pem(pem))


class TokenIssuer:
    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        if not 0 < ttl_seconds <= MAX_TOKEN_LIFETIME_SECONDS:
            raise ValueError(f"token TTL must be between 1 and {MAX_TOKEN_LIFETIME_SECONDS} seconds")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, principal: Principal, *, now: float | None = None) -> tuple[str, int]:
        issued_at_ms = int((now if now is not None else time.time()) * 1000)
        issued_at = issued_at_ms // 1000
        expires_at = issued_at + self.ttl_seconds
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": principal.subject,
            "uid": principal.user_id,
            "tid": principal.tenant_id,
            "roles": sorted(r.value for r in principal.roles),
            "tier": principal.tier,
            "rps": principal.rate_per_second,
            "burst": principal.burst,
            "iat": issued_at,
            "iat_ms": issued_at_ms,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, self._key.private_key, algorithm=ALGORITHM, headers={"kid": self._key.key_id}
        )
        return token, expires_at


class TokenVerifier:
    """Verifies tokens against a set of trusted public keys, selected by `kid`."""

    def __init__(
        self,
        public_pems: Iterable[str],
        *,
        issuer: str,
        audience: str,
        max_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.max_lifetime_seconds = max_lifetime_seconds
        for pem in public_pems:
            self.add_key(pem)
        self._issuer = issuer
        self._audience = audience
        # A token is immutable and its signature checked once: later calls with the same token
        # reuse the result until it expires (bounded, oldest evicted first).
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    def add_key(self, pem: str) -> None:
        loaded = _load_public_pem(pem)
        self._keys[key_id_of(loaded)] = loaded

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at > time.time():
                return cached
            del self._verified[token]
        principal = self._verify_signature(token)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify_signature(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed access token") from None
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise Unauthenticated("access token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid access token: {exc}") from None
        try:
            roles = frozenset(Role(r) for r in claims.get("roles", []))
            issued_at, expires_at = int(claims["iat"]), int(claims["exp"])
            issued_at_ms = int(claims.get("iat_ms", issued_at * 1000))
        except (ValueError, TypeError):
            raise Unauthenticated("access token carries an unknown role or a bad time") from None
        if expires_at - issued_at > self.max_lifetime_seconds:
            raise Unauthenticated(
                f"access token lives longer than the maximum of {self.max_lifetime_seconds} s"
            )
        # (PyJWT itself refuses an `iat` in the future.)
        if issued_at_ms // 1000 != issued_at:
            raise Unauthenticated("access token carries an inconsistent issue time")
        return Principal(
            subject=str(claims["sub"]),
            tenant_id=str(claims["tid"]),
            roles=roles,
            tier=str(claims.get("tier", "")),
            rate_per_second=float(claims.get("rps", 0.0)),
            burst=int(claims.get("burst", 0)),
            token_id=str(claims.get("jti", "")),
            expires_at=expires_at,
            user_id=str(claims.get("uid", "")),
            issued_at_ms=issued_at_ms,
        )
