"""Pure OpenID Connect rules: the PKCE pair (RFC 7636, S256), the authorization URL, and the ID
token's checks (signature by the provider's JWKS, issuer, audience, authorized party, expiry,
issue time, nonce; OIDC Core 3.1.3.7) and which claim names the user."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

# Asymmetric algorithms only: an ID token "signed" with the client secret or "none" is refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
LEEWAY_SECONDS = 60
# An ID token older than this is refused even when it has not expired.
MAX_AGE_SECONDS = 600


class IdTokenRejected(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PkcePair:
    verifier: str
    challenge: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_pkce() -> PkcePair:
    verifier = secrets.token_urlsafe(48)  # 64 characters of the unreserved set
    return PkcePair(verifier, challenge_of(verifier))


def challenge_of(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode()).digest())


def issuer_problem(issuer: str) -> str:
    """Why an issuer URL is refused ("" when fine): https, or http on the loopback (tests, devnet)."""
    parts = urlsplit(issuer)
    if parts.scheme == "https" and parts.hostname:
        return "" if not parts.query and not parts.fragment else "must have no query or fragment"
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost"):
        return ""
    return "must be an https URL (http only for 127.0.0.1 or localhost)"


def authorization_url(
    endpoint: str, *, client_id: str, redirect_uri: str, state: str, nonce: str, challenge: str
) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def verify_id_token(
    token: str, keys: Mapping[str, Any], *, issuer: str, client_id: str, nonce: str, now: int
) -> dict[str, Any]:
    """The ID token's claims, if every check passes; IdTokenRejected naming the first that fails."""
    try:
        key_set = KeySet.import_key_set(dict(keys))  # type: ignore[arg-type]
        decoded = jwt.decode(token, key_set, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, TypeError) as exc:
        raise IdTokenRejected(f"signature: {exc}") from None
    claims = dict(decoded.claims)
    if claims.get("iss") != issuer:
        raise IdTokenRejected("issuer does not match")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise IdTokenRejected("audience does not include this client")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise IdTokenRejected("authorized party is not this client")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or exp + LEEWAY_SECONDS <= now:
        raise IdTokenRejected("expired")
    if not isinstance(iat, int) or iat > now + LEEWAY_SECONDS or iat < now - MAX_AGE_SECONDS:
        raise IdTokenRejected("issued at an unacceptable time")
    if not nonce or not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise IdTokenRejected("nonce does not match")
    return claims


def email_of(claims: Mapping[str, Any], claim: str) -> str:
    """The email that names the user, or "" when the claim is missing or not verified."""
    value = claims.get(claim)
    if not isinstance(value, str) or "@" not in value:
        return ""
    if claim == "email" and claims.get("email_verified") is False:
        return ""
    return value
