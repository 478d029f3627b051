"""Sign-in's use cases, one transaction each. A refused sign-in is committed too (its failure
counts towards the lockout and is in the audit trail) and only then raised."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core import audit, revocation
from mevaas_core.auth import Principal, Role, TokenIssuer
from mevaas_core.errors import (
    ApiError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from mevaas_tenancy import convert
from mevaas_tenancy import store as tenancy_store
from mevaas_tenancy.commands.access import check_may_grant
from mevaas_tenancy.events import publish_revocation, record_audit
from mevaas_tenancy.signin import store
from mevaas_tenancy.signin.domain import credentials, oidc
from mevaas_tenancy.signin.oidc import OidcClient
from mevaas_tenancy.store import TenancyStore

BAD_CREDENTIALS = "wrong email, password or code"
ENROLMENT_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str
    expires_at: datetime
    tenant_id: str
    user_id: str
    email: str
    roles: list[str]


@dataclass(frozen=True, slots=True)
class SessionToken:
    token: str
    expires_at: int
    tenant_id: str
    user_id: str
    roles: frozenset[Role]


@dataclass(frozen=True, slots=True)
class OidcStart:
    authorization_url: str
    state: str
    nonce: str
    code_verifier: str


def user_actor(tenant_id: str, user_id: str, roles: Any = ()) -> events_pb2.Actor:
    return events_pb2.Actor(
        kind=events_pb2.ACTOR_KIND_USER,
        id=user_id,
        tenant_id=tenant_id,
        roles=[common_pb2.Role.Value(f"ROLE_{r.upper()}") for r in sorted(roles)],
    )


class SignInCommands:
    def __init__(
        self,
        db: TenancyStore,
        issuer: TokenIssuer,
        oidc_client: OidcClient,
        *,
        session_ttl_seconds: int,
    ) -> None:
        self._db = db
        self._issuer = issuer
        self._oidc = oidc_client
        self._session_ttl = session_ttl_seconds

    # password + TOTP ----------------------------------------------------------------------------

    async def sign_in(self, tenant_slug: str, email: str, password: str, code: str) -> OpenedSession:
        error: ApiError
        async with self._db.platform() as conn:
            user = await store.find_user_by_email(conn, tenant_slug, email)
            if user is None or user["status"] != "active":
                await credentials.verify_password(None, password)  # the same time as a known email
                error = Unauthenticated(BAD_CREDENTIALS)
            else:
                actor = user_actor(user["tenant_id"], user["user_id"], user["roles"])
                resource = f"users/{user['user_id']}"
                now: datetime = await tenancy_store.clock_now(conn)
                locked_until = user["locked_until"]
                if locked_until is not None and locked_until > now:
                    wait = (locked_until - now).total_seconds()
                    await record_audit(
                        conn,
                        tenant_id=user["tenant_id"],
                        resource=resource,
                        details={
                            "method": "password",
                            "refused": "locked",
                            "retry_after_s": str(int(wait) + 1),
                        },
                        outcome=audit.FAILED,
                        actor=actor,
                    )
                    error = ResourceExhausted(
                        "too many failed sign-ins: this account is locked for now", wait
                    )
                else:
                    good = await credentials.verify_password(user["password_hash"], password)
                    step = (
                        credentials.accepted_step(
                            user["totp_secret"], code, now=now.timestamp(), last_step=user["totp_last_step"]
                        )
                        if good and user["totp_secret"]
                        else None
                    )
                    if step is not None:
                        await store.record_success(conn, user["user_id"], step)
                        return await self._open_session(conn, user, "password")
                    failures = user["failed_attempts"] + 1 if user["password_hash"] else 0
                    lock = credentials.lock_seconds(failures)
                    await store.record_failure(conn, user["user_id"], lock)
                    await record_audit(
                        conn,
                        tenant_id=user["tenant_id"],
                        resource=resource,
                        details={
                            "method": "password",
                            "refused": "not enrolled"
                            if not user["password_hash"]
                            else "code"
                            if good
                            else "password",
                            "failures_in_a_row": str(failures),
                            "locked_for_s": str(lock),
                        },
                        outcome=audit.FAILED,
                        actor=actor,
                    )
                    error = Unauthenticated(BAD_CREDENTIALS)
        raise error

    async def _open_session(self, conn: asyncpg.Connection, user: Any, method: str) -> OpenedSession:
        token = credentials.new_token(credentials.SESSION_PREFIX)
        expires = await store.insert_session(
            conn,
            session_id=token.token_id,
            tenant_id=user["tenant_id"],
            user_id=user["user_id"],
            secret_hash=token.secret_hash,
            method=method,
            ttl_seconds=self._session_ttl,
        )
        await record_audit(
            conn,
            tenant_id=user["tenant_id"],
            resource=f"users/{user['user_id']}",
            details={"method": method, "session": token.token_id},
            actor=user_actor(user["tenant_id"], user["user_id"], user["roles"]),
        )
        return OpenedSession(
            token.plaintext, expires, user["tenant_id"], user["user_id"], user["email"], sorted(user["roles"])
        )

    # sessions -----------------------------------------------------------------------------------

    async def exchange_session(self, session_id: str, secret: str) -> SessionToken:
        """An access token for a live session, with the user's roles as they are now."""
        async with self._db.platform() as conn:
            row = await store.live_session(conn, session_id)
            if row is None or not credentials.secret_matches(row["secret_hash"], secret):
                raise Unauthenticated("session ended or unknown: sign in again")
            if row["status"] != "active":
                raise PermissionDenied(f"tenant is {row['status']}")
            await store.touch_session(conn, session_id)
            plan = convert.plan_from_bytes(bytes(row["plan"]))
            roles = frozenset(Role(r) for r in row["roles"])
            principal = Principal(
                subject=session_id,
                tenant_id=row["tenant_id"],
                roles=roles,
                tier=row["tier"],
                rate_per_second=float(plan.rate_limit_per_second),
                burst=int(plan.rate_limit_burst or plan.rate_limit_per_second),
                user_id=row["user_id"],
            )
            now = await tenancy_store.clock_epoch(conn)
            # A token never outlives its session.
            token, expires_at = self._issuer.issue(principal, now=now)
            if expires_at > row["expires_at"].timestamp():
                raise Unauthenticated("session about to end: sign in again")
        return SessionToken(token, expires_at, row["tenant_id"], row["user_id"], roles)

    async def end_session(self, session_id: str, secret: str) -> None:
        async with self._db.platform() as conn:
            row = await store.get_session(conn, session_id)
            if row is None or not credentials.secret_matches(row["secret_hash"], secret):
                raise Unauthenticated("unknown session")
            if row["ended_at"] is not None:
                return
            await store.end_sessions(conn, session_id=session_id)
            await publish_revocation(conn, row["tenant_id"], revocation.KEY, session_id, "signed_out")
            await record_audit(
                conn,
                tenant_id=row["tenant_id"],
                resource=f"users/{row['user_id']}",
                details={"session": session_id},
                actor=user_actor(row["tenant_id"], row["user_id"]),
            )

    # enrolment ----------------------------------------------------------------------------------

    async def create_enrolment(self, principal: Principal, user_id: str) -> tuple[str, datetime]:
        async with self._db.caller_scope(principal) as conn:
            user = await tenancy_store.get_user(conn, user_id)
            if user is None:
                raise NotFound("user", user_id)
            if Role.OWNER.value in user["roles"]:
                check_may_grant(principal, [Role.OWNER.value])  # resetting an owner is an owner's call
            token = credentials.new_token(credentials.ENROLMENT_PREFIX)
            expires = await store.insert_enrolment(
                conn,
                enrolment_id=token.token_id,
                tenant_id=user["tenant_id"],
                user_id=user_id,
                secret_hash=token.secret_hash,
                totp_secret=credentials.new_totp_secret(),
                created_by=principal.subject,
                ttl_seconds=ENROLMENT_TTL_SECONDS,
            )
            await record_audit(
                conn,
                tenant_id=user["tenant_id"],
                resource=f"users/{user_id}",
                details={"enrolment": token.token_id},
            )
        return token.plaintext, expires

    async def _enrolment(self, conn: asyncpg.Connection, token: str) -> Any:
        try:
            enrolment_id, secret = credentials.split_token(credentials.ENROLMENT_PREFIX, token)
        except credentials.MalformedToken as exc:
            raise InvalidArgument(FieldViolation("enrolment_token", str(exc))) from None
        row = await store.live_enrolment(conn, enrolment_id)
        if row is None or not credentials.secret_matches(row["secret_hash"], secret):
            raise Unauthenticated(
                "this enrolment link is unknown, used or expired: ask an admin for a new one"
            )
        return row

    async def begin_enrolment(self, token: str) -> tuple[Any, str]:
        async with self._db.platform() as conn:
            row = await self._enrolment(conn, token)
        uri = credentials.otpauth_uri(row["totp_secret"], account=row["email"], issuer=row["display_name"])
        return row, uri

    async def complete_enrolment(self, token: str, password: str, code: str) -> Any:
        async with self._db.platform() as conn:
            row = await self._enrolment(conn, token)
            now = await tenancy_store.clock_epoch(conn)
            step = credentials.accepted_step(row["totp_secret"], code, now=now, last_step=0)
            if step is None:
                raise InvalidArgument(FieldViolation("totp_code", "is not your authenticator's current code"))
            await store.upsert_credentials(
                conn,
                user_id=row["user_id"],
                tenant_id=row["tenant_id"],
                password_hash=await credentials.hash_password(password),
                totp_secret=row["totp_secret"],
                totp_step=step,
            )
            await store.spend_enrolment(conn, row["enrolment_id"])
            # New credentials: whoever held the old ones is signed out.
            for session_id in await store.end_sessions(conn, user_id=row["user_id"]):
                await publish_revocation(
                    conn, row["tenant_id"], revocation.KEY, session_id, "credentials_reset"
                )
            await record_audit(
                conn,
                tenant_id=row["tenant_id"],
                resource=f"users/{row['user_id']}",
                details={"enrolment": row["enrolment_id"], "totp": "confirmed"},
                actor=user_actor(row["tenant_id"], row["user_id"]),
            )
        return row

    # OIDC ---------------------------------------------------------------------------------------

    async def set_oidc_provider(
        self, tenant_id: str, *, issuer: str, client_id: str, client_secret: str, email_claim: str
    ) -> Any:
        async with self._db.tenant(tenant_id) as conn:
            if not issuer:
                await store.delete_oidc_provider(conn, tenant_id)
                row = None
            else:
                row = await store.upsert_oidc_provider(
                    conn,
                    tenant_id,
                    issuer=issuer,
                    client_id=client_id,
                    client_secret=client_secret,
                    email_claim=email_claim,
                )
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource="oidc_provider",
                details={"issuer": issuer, "client_id": client_id, "email_claim": email_claim},
            )
        return row

    async def get_oidc_provider(self, tenant_id: str) -> Any:
        async with self._db.tenant(tenant_id) as conn:
            return await store.get_oidc_provider(conn, tenant_id)

    async def _provider(self, tenant_slug: str) -> Any:
        async with self._db.platform() as conn:
            provider = await store.oidc_provider_by_slug(conn, tenant_slug)
        if provider is None:
            raise FailedPrecondition("this portal has no single sign-on configured", subject=tenant_slug)
        return provider

    async def start_oidc(self, tenant_slug: str, redirect_uri: str) -> OidcStart:
        provider = await self._provider(tenant_slug)
        found = await self._oidc.discovery(provider["issuer"])
        pkce = oidc.new_pkce()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        url = oidc.authorization_url(
            found.authorization_endpoint,
            client_id=provider["client_id"],
            redirect_uri=redirect_uri,
            state=state,
            nonce=nonce,
            challenge=pkce.challenge,
        )
        return OidcStart(url, state, nonce, pkce.verifier)

    async def complete_oidc(
        self, tenant_slug: str, *, code: str, code_verifier: str, nonce: str, redirect_uri: str
    ) -> OpenedSession:
        provider = await self._provider(tenant_slug)
        found = await self._oidc.discovery(provider["issuer"])
        claims: dict[str, Any] | None = None
        refusal = ""
        try:
            id_token = await self._oidc.redeem(
                found,
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
                client_id=provider["client_id"],
                client_secret=provider["client_secret"],
            )
            kid = str(extract_compact(id_token.encode()).protected.get("kid", ""))
            keys = await self._oidc.jwks(found.jwks_uri, kid=kid)
            claims = oidc.verify_id_token(
                id_token,
                keys,
                issuer=provider["issuer"],
                client_id=provider["client_id"],
                nonce=nonce,
                now=int(time.time()),
            )
        except Unauthenticated as exc:  # the provider refused the code
            refusal = exc.message
        except (oidc.IdTokenRejected, JoseError, ValueError) as exc:
            refusal = f"ID token refused: {exc}"
        email = oidc.email_of(claims, provider["email_claim"]) if claims is not None else ""
        error: ApiError
        async with self._db.platform() as conn:
            user = await store.find_user_in_tenant(conn, provider["tenant_id"], email) if email else None
            if user is not None:
                return await self._open_session(conn, user, "oidc")
            if not refusal:
                refusal = (
                    f"no user of this tenant has the email {email}"
                    if email
                    else f"the ID token carries no verified {provider['email_claim']} claim"
                )
                error = PermissionDenied(refusal)
            else:
                error = Unauthenticated(refusal)
            await record_audit(
                conn,
                tenant_id=provider["tenant_id"],
                resource="oidc_provider",
                details={
                    "method": "oidc",
                    "refused": refusal[:256],
                    "subject": str((claims or {}).get("sub", ""))[:128],
                },
                outcome=audit.FAILED,
                actor=events_pb2.Actor(
                    kind=events_pb2.ACTOR_KIND_USER, id=email or "unknown", tenant_id=provider["tenant_id"]
                ),
            )
        raise error
