"""The revocation set refuses exactly the tokens issued up to an entry's not-before, and verifiers
refuse tokens longer-lived than their maximum."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from mevaas_core.auth import ALGORITHM, Principal, Role, SigningKey, TokenIssuer, TokenVerifier
from mevaas_core.errors import Unauthenticated
from mevaas_core.revocation import KEY, TENANT, TOKEN, USER, RevocationSet


def principal(
    issued_at_ms: int,
    subject: str = "key-1",
    tenant_id: str = "t-1",
    user_id: str = "u-1",
    token_id: str = "j-1",
) -> Principal:
    return Principal(
        subject=subject,
        tenant_id=tenant_id,
        roles=frozenset({Role.VIEWER}),
        user_id=user_id,
        token_id=token_id,
        issued_at_ms=issued_at_ms,
    )


@pytest.mark.parametrize(
    ("kind", "subject_id"), [(KEY, "key-1"), (USER, "u-1"), (TENANT, "t-1"), (TOKEN, "j-1")]
)
def test_an_entry_refuses_older_tokens_of_its_subject_only(kind: int, subject_id: str) -> None:
    revocations = RevocationSet()
    revocations.add(kind, subject_id, 1_000)  # type: ignore[arg-type]
    assert revocations.revoked_by(principal(999)) == kind
    assert revocations.revoked_by(principal(1_000)) == kind
    assert revocations.revoked_by(principal(1_001)) is None
    other = principal(999, subject="key-2", tenant_id="t-2", user_id="u-2", token_id="j-2")
    assert revocations.revoked_by(other) is None


def test_a_tenant_entry_wins_and_later_entries_move_not_before_forward() -> None:
    revocations = RevocationSet()
    revocations.add(KEY, "key-1", 5_000)
    revocations.add(TENANT, "t-1", 5_000)
    assert revocations.revoked_by(principal(10)) == TENANT
    revocations.add(TENANT, "t-1", 2_000)  # an older, replayed entry changes nothing
    assert revocations.revoked_by(principal(4_000)) == TENANT


def test_prune_forgets_only_entries_older_than_any_live_token() -> None:
    now = 10_000.0
    revocations = RevocationSet(clock=lambda: now)
    revocations.add(KEY, "old", int((now - 3_601) * 1000))
    revocations.add(KEY, "recent", int((now - 10) * 1000))
    revocations.prune(3_600)
    assert len(revocations) == 1
    assert revocations.revoked_by(principal(0, subject="recent")) == KEY


def test_tokens_beyond_the_maximum_lifetime_or_from_the_future_are_refused() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier([key.public_pem()], issuer="i", audience="a", max_lifetime_seconds=900)
    now = int(time.time())

    def token(iat: int, exp: int) -> str:
        claims = {
            "iss": "i",
            "aud": "a",
            "sub": "k",
            "tid": "t",
            "iat": iat,
            "exp": exp,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.key_id})

    assert verifier.verify(token(now, now + 900)).tenant_id == "t"
    with pytest.raises(Unauthenticated, match="longer than the maximum"):
        verifier.verify(token(now, now + 901))
    with pytest.raises(Unauthenticated, match="not yet valid"):
        verifier.verify(token(now + 3_600, now + 3_700))
    with pytest.raises(ValueError, match="TTL"):
        TokenIssuer(key, issuer="i", audience="a", ttl_seconds=10 * 365 * 86_400)
