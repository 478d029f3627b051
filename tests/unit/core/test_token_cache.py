"""The verifier remembers a verified token until its expiry, and never past it."""

from __future__ import annotations

import time

import pytest

from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer, TokenVerifier
from mevaas_core.errors import Unauthenticated

PRINCIPAL = Principal(subject="key-1", tenant_id="t-1", roles=frozenset({Role.VIEWER}))


def make() -> tuple[TokenIssuer, TokenVerifier]:
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=2)
    return issuer, TokenVerifier([key.public_pem()], issuer="mevaas-tenancy", audience="mevaas")


def test_a_verified_token_is_reused_until_it_expires() -> None:
    issuer, verifier = make()
    token, expires_at = issuer.issue(PRINCIPAL, now=time.time() - 1)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    time.sleep(max(expires_at - time.time(), 0) + 0.2)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_a_forged_token_is_never_cached_as_valid() -> None:
    issuer, verifier = make()
    token, _ = issuer.issue(PRINCIPAL)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(forged)
    assert verifier.verify(token).tenant_id == "t-1"
