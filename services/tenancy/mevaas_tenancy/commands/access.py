"""Who may act for a tenant: users and their roles, API keys (minted, revoked, exchanged for
tokens), and the audit trail that records it all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core import revocation
from mevaas_core.auth import Principal, Role, TokenIssuer
from mevaas_core.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied, Unauthenticated
from mevaas_core.idempotency import IdempotentCall
from mevaas_tenancy import convert, store
from mevaas_tenancy.commands.tenants import live_tenant
from mevaas_tenancy.domain import api_keys
from mevaas_tenancy.events import SCHEMA, publish_revocation, record_audit
from mevaas_tenancy.signin import store as signin_store
from mevaas_tenancy.store import Row, TenancyStore


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: int
    tenant_id: str
    key_id: str
    roles: frozenset[Role]
    tier: str
    plan: common_pb2.Plan


def check_may_grant(principal: Principal, roles: list[str]) -> None:
    if Role.OWNER.value in roles and not (principal.is_platform_admin or Role.OWNER in principal.roles):
        raise PermissionDenied("only an owner can grant the owner role")


class AccessCommands:
    def __init__(
        self, db: TenancyStore, issuer: TokenIssuer, *, admin_rate: tuple[float, int] = (1000.0, 2000)
    ) -> None:
        self._db = db
        self._issuer = issuer
        # Platform admins are limited too, at a higher plan of their own (calls/s, burst).
        self._admin_rate = admin_rate

    # users ----------------------------------------------------------------------------------------

    async def create_user(
        self, principal: Principal, tenant_id: str, request: tenancy_pb2.CreateUserRequest, roles: list[str]
    ) -> tenancy_pb2.CreateUserResponse:
        check_may_grant(principal, roles)
        async with self._db.tenant(tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="CreateUser", request=request)
            replay = await call.replay(conn, tenancy_pb2.CreateUserResponse)
            if replay is not None:
                return replay
            await live_tenant(conn, tenant_id)
            row = await store.insert_user(
                conn,
                user_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                email=request.email,
                display_name=request.display_name,
                roles=roles,
            )
            if row is None:
                raise AlreadyExists(f"{request.email} is already a user of this tenant")
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource=f"users/{row['user_id']}",
                details={"roles": ",".join(roles)},
                idempotency_key=request.idempotency_key,
            )
            response = tenancy_pb2.CreateUserResponse(user=convert.user(row))
            await call.remember(conn, response)
            return response

    async def list_users(self, tenant_id: str, *, after: str, limit: int) -> list[Row]:
        async with self._db.tenant(tenant_id) as conn:
            return await store.list_users(conn, tenant_id, after=after, limit=limit)

    async def update_user_roles(self, principal: Principal, user_id: str, roles: list[str]) -> Row:
        """Set the user's roles; its tokens (issued with the old roles) are revoked."""
        check_may_grant(principal, roles)
        async with self._db.caller_scope(principal) as conn:
            row = await store.get_user(conn, user_id)
            if row is None:
                raise NotFound("user", user_id)
            if Role.OWNER.value in row["roles"] and Role.OWNER.value not in roles:
                await self._check_owner_may_go(conn, principal, row)
            updated = await store.set_user_roles(conn, user_id, roles)
            await publish_revocation(conn, row["tenant_id"], revocation.USER, user_id, "user_roles_changed")
            await record_audit(
                conn,
                tenant_id=row["tenant_id"],
                resource=f"users/{user_id}",
                details={"roles": ",".join(roles)},
            )
            return updated

    async def delete_user(self, principal: Principal, user_id: str) -> None:
        async with self._db.caller_scope(principal) as conn:
            row = await store.get_user(conn, user_id)
            if row is None:
                raise NotFound("user", user_id)
            if Role.OWNER.value in row["roles"]:
                await self._check_owner_may_go(conn, principal, row)
            await store.delete_user(conn, user_id)
            await publish_revocation(conn, row["tenant_id"], revocation.USER, user_id, "user_deleted")
            await record_audit(conn, tenant_id=row["tenant_id"], resource=f"users/{user_id}")

    @staticmethod
    async def _check_owner_may_go(conn: Any, principal: Principal, user: Row) -> None:
        check_may_grant(principal, [Role.OWNER.value])
        if await store.count_owners(conn, user["tenant_id"]) <= 1:
            raise FailedPrecondition(
                "a tenant must keep at least one owner", subject=f"users/{user['user_id']}"
            )

    # API keys -------------------------------------------------------------------------------------

    async def create_api_key(
        self,
        principal: Principal,
        tenant_id: str,
        request: tenancy_pb2.CreateApiKeyRequest,
        roles: list[str],
        expires_at: datetime | None,
    ) -> tenancy_pb2.CreateApiKeyResponse:
        check_may_grant(principal, roles)
        # The caller's own key (a platform admin's lives in the platform tenant) is read in the same
        # transaction, share-locked: a key minted here is seen by, and revoked with, its parent.
        scope = self._db.platform() if principal.is_platform_admin else self._db.tenant(tenant_id)
        async with scope as conn:
            # The secret is shown once: a replay returns the key's metadata, never the secret again.
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="CreateApiKey", request=request)
            replay = await call.replay(conn, tenancy_pb2.CreateApiKeyResponse)
            if replay is not None:
                return replay
            parent = await store.lock_api_key(conn, principal.subject)
            if parent is None and principal.user_id:
                # A person signed in to the portal (the token came from their session, not a key).
                if await signin_store.live_session(conn, principal.subject) is None:
                    raise Unauthenticated("the session this token came from has ended")
            elif parent is None or parent["revoked_at"] is not None:
                raise Unauthenticated("the API key this token came from is revoked")
            elif parent["expires_at"] is not None and (
                expires_at is None or expires_at > parent["expires_at"]
            ):
                # A minted key cannot outlive the key it was minted with.
                expires_at = parent["expires_at"]
            await live_tenant(conn, tenant_id)
            if request.user_id and await store.get_user(conn, request.user_id) is None:
                raise NotFound("user", request.user_id)
            new_key = api_keys.generate_api_key()
            row = await store.insert_api_key(
                conn,
                key_id=new_key.key_id,
                tenant_id=tenant_id,
                name=request.name,
                secret_hash=new_key.secret_hash,
                roles=roles,
                user_id=request.user_id,
                created_by=principal.subject,
                expires_at=expires_at,
            )
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource=f"api_keys/{new_key.key_id}",
                details={"roles": ",".join(roles), "name": request.name},
                idempotency_key=request.idempotency_key,
            )
            metadata_only = tenancy_pb2.CreateApiKeyResponse(api_key=convert.api_key(row))
            await call.remember(conn, metadata_only)
            return tenancy_pb2.CreateApiKeyResponse(api_key=convert.api_key(row), secret=new_key.plaintext)

    async def list_api_keys(
        self, tenant_id: str, *, after: str, limit: int, include_revoked: bool
    ) -> list[Row]:
        async with self._db.tenant(tenant_id) as conn:
            return await store.list_api_keys(
                conn, tenant_id, after=after, limit=limit, include_revoked=include_revoked
            )

    async def revoke_api_key(self, principal: Principal, key_id: str, reason: str) -> Row:
        """Revoke the key and every key minted with it (idempotent)."""
        async with self._db.caller_scope(principal) as conn:
            row = await store.get_api_key(conn, key_id)
            if row is None:
                raise NotFound("api key", key_id)
            if row["revoked_at"] is not None:
                return row
            revoked = await store.revoke_api_key(conn, key_id)
            minted = await store.revoke_descendant_keys(conn, key_id)
            for revoked_id in (key_id, *minted):
                await publish_revocation(
                    conn, row["tenant_id"], revocation.KEY, revoked_id, "api_key_revoked"
                )
            await record_audit(
                conn,
                tenant_id=row["tenant_id"],
                resource=f"api_keys/{key_id}",
                details={"reason": reason, "minted_keys_revoked": ",".join(minted)},
            )
            return revoked

    async def find_portal(self, *, slug: str, custom_domain: str) -> Row:
        async with self._db.platform() as conn:
            row = await store.find_portal(conn, slug=slug, custom_domain=custom_domain)
        if row is None:
            raise NotFound("portal", slug or custom_domain)
        return row

    async def exchange_api_key(self, key_id: str, secret: str) -> IssuedToken:
        """A token for a valid key of an active tenant, holding no more than the key's user does."""
        # The key, its user and its tenant are share-locked and the token issued (on the database's
        # clock) before the transaction ends, so a revocation committed by another transaction
        # either happened first (and is seen here) or gets a later not-before than this token.
        async with self._db.platform() as conn:
            key = await store.lock_api_key(conn, key_id)
            # One message for unknown and wrong keys, so key ids cannot be probed.
            if key is None or not await api_keys.verify_secret(key["secret_hash"], secret):
                raise Unauthenticated("invalid API key")
            if key["revoked_at"] is not None:
                raise Unauthenticated("API key revoked")
            if key["expires_at"] is not None and key["expires_at"] <= datetime.now(UTC):
                raise Unauthenticated("API key expired")
            tenant = await store.get_tenant(conn, key["tenant_id"], for_share=True)
            assert tenant is not None, "api_keys.tenant_id references tenants"
            if tenant["status"] != "active":
                raise PermissionDenied(f"tenant is {tenant['status']}")
            key_roles = frozenset(Role(r) for r in key["roles"])
            if key["user_id"]:
                user_roles = await store.live_user_roles(conn, key["user_id"])
                if user_roles is None:
                    raise Unauthenticated("the API key's user was deleted")
                # A user's key never holds more than the user does now.
                key_roles = key_roles & frozenset(Role(r) for r in user_roles)
                if not key_roles:
                    raise PermissionDenied("the API key's user no longer holds any of its roles")
            await store.touch_api_key(conn, key_id)
            plan = convert.plan_from_bytes(bytes(tenant["plan"]))
            is_admin = Role.PLATFORM_ADMIN in key_roles
            principal = Principal(
                subject=key_id,
                tenant_id=key["tenant_id"],
                roles=key_roles,
                tier=tenant["tier"],
                rate_per_second=self._admin_rate[0] if is_admin else float(plan.rate_limit_per_second),
                burst=self._admin_rate[1]
                if is_admin
                else int(plan.rate_limit_burst or plan.rate_limit_per_second),
                user_id=key["user_id"],
            )
            token, expires_at = self._issuer.issue(principal, now=await store.clock_epoch(conn))
        return IssuedToken(token, expires_at, key["tenant_id"], key_id, key_roles, tenant["tier"], plan)

    async def caller_tenant(self, principal: Principal) -> Row:
        async with self._db.tenant(principal.tenant_id) as conn:
            tenant = await store.get_tenant(conn, principal.tenant_id)
        if tenant is None:
            raise NotFound("tenant", principal.tenant_id)
        return tenant

    # audit ----------------------------------------------------------------------------------------

    async def list_audit_records(self, tenant_id: str, **filters: Any) -> list[Row]:
        async with self._db.tenant(tenant_id) as conn:
            return await store.list_audit_records(conn, tenant_id, **filters)
