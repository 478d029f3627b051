"""Sign-in's pure rules: the lockout schedule, TOTP codes counted once within one step of skew,
token shapes, PKCE (RFC 7636's own example), and the ID token checks, including algorithms that
must never be accepted (none, HS256 with the client secret)."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from mevaas_tenancy.signin.domain import credentials, oidc

SECRET = pyotp.random_base32()
NOW = 1_800_000_000.0


def test_lockout_schedule() -> None:
    assert [credentials.lock_seconds(n) for n in range(1, 11)] == [0, 0, 0, 0, 30, 60, 120, 240, 480, 900]
    assert credentials.lock_seconds(40) == 900


def test_totp_code_counts_once_within_the_window() -> None:
    totp = pyotp.TOTP(SECRET)
    step = int(NOW) // 30
    assert credentials.accepted_step(SECRET, totp.at(NOW), now=NOW, last_step=0) == step
    assert credentials.accepted_step(SECRET, totp.at(NOW - 30), now=NOW, last_step=0) == step - 1
    assert credentials.accepted_step(SECRET, totp.at(NOW + 30), now=NOW, last_step=0) == step + 1
    assert credentials.accepted_step(SECRET, totp.at(NOW - 60), now=NOW, last_step=0) is None
    # Used once: the same step, or an earlier one, is refused.
    assert credentials.accepted_step(SECRET, totp.at(NOW), now=NOW, last_step=step) is None
    assert credentials.accepted_step(SECRET, totp.at(NOW - 30), now=NOW, last_step=step) is None
    for shape in ("12345", "1234567", "12a456", "١٢٣٤٥٦"):
        assert credentials.accepted_step(SECRET, shape, now=NOW, last_step=0) is None


def test_password_rules_and_tokens() -> None:
    assert credentials.password_problem("short") == "must be at least 12 characters"
    assert credentials.password_problem(" padded password ")
    assert credentials.password_problem("x" * 257)
    assert credentials.password_problem("twelve chars!") == ""
    token = credentials.new_token("mvu")
    token_id, secret = credentials.split_token("mvu", token.plaintext)
    assert token_id == token.token_id and credentials.secret_matches(token.secret_hash, secret)
    assert not credentials.secret_matches(token.secret_hash, secret + "x")
    for bad in ("mvs_a_b", "mvu__b", "mvu_a_", "mvu", "mvu_" + "a" * 300):
        with pytest.raises(credentials.MalformedToken):
            credentials.split_token("mvu", bad)


def test_pkce_matches_rfc_7636_appendix_b() -> None:
    assert oidc.challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_issuer_rules() -> None:
    assert oidc.issuer_problem("https://login.example.com/tenant") == ""
    assert oidc.issuer_problem("http://127.0.0.1:8080") == ""
    assert oidc.issuer_problem("http://login.example.com")
    assert oidc.issuer_problem("https://login.example.com/?x=1")


KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
JWKS: dict[str, Any] = dict(KeySet([KEY]).as_dict(private=False))


def id_token(**changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": "https://idp", "aud": "client", "iat": now, "exp": now + 60, "nonce": "n", "sub": "s"}
    claims.update(changes)
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {k: v for k, v in claims.items() if v is not None}, KEY)


def verify(token: str) -> dict[str, Any]:
    return oidc.verify_id_token(
        token, JWKS, issuer="https://idp", client_id="client", nonce="n", now=int(time.time())
    )


def test_id_token_checks() -> None:
    assert verify(id_token())["sub"] == "s"
    assert verify(id_token(aud=["client", "other"], azp="client"))["sub"] == "s"
    now = int(time.time())
    for changes, reason in (
        ({"iss": "https://evil"}, "issuer"),
        ({"aud": "other"}, "audience"),
        ({"aud": ["client", "other"]}, "authorized party"),
        ({"exp": now - 61}, "expired"),
        ({"exp": None}, "expired"),
        ({"iat": now + 3600}, "issued"),
        ({"iat": now - 3600, "exp": now + 60}, "issued"),
        ({"nonce": "m"}, "nonce"),
        ({"nonce": None}, "nonce"),
    ):
        with pytest.raises(oidc.IdTokenRejected, match=reason):
            verify(id_token(**changes))


def test_id_tokens_with_weak_algorithms_are_refused() -> None:
    claims = {
        "iss": "https://idp",
        "aud": "client",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "nonce": "n",
    }
    hs = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key("client-secret-that-is-long-enough-32b"))
    with pytest.raises(oidc.IdTokenRejected, match="signature"):
        verify(hs)
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    with pytest.raises(oidc.IdTokenRejected, match="signature"):
        verify(jwt.encode({"alg": "RS256", "kid": "k1"}, claims, other))
    _, _, rest = id_token().partition(".")
    unsigned = "eyJhbGciOiJub25lIn0." + rest.rsplit(".", 1)[0] + "."
    with pytest.raises(oidc.IdTokenRejected, match="signature"):
        verify(unsigned)


def test_email_claim_mapping() -> None:
    assert oidc.email_of({"email": "a@b.c", "email_verified": True}, "email") == "a@b.c"
    assert oidc.email_of({"email": "a@b.c"}, "email") == "a@b.c"
    assert oidc.email_of({"email": "a@b.c", "email_verified": False}, "email") == ""
    assert oidc.email_of({"upn": "a@b.c", "email_verified": False}, "upn") == "a@b.c"
    assert oidc.email_of({"email": 3}, "email") == ""
