"""gRPC servicers for TenantService and AuthService: validate, translate, and run each mutation as
one transaction (state change + audit record + events + idempotency record)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import (
    ALGORITHM,
    PLATFORM_TENANT_ID,
    Principal,
    Role,
    SigningKey,
    TokenIssuer,
    key_id_of_pem,
)
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, require_tenant_scope, rpc
from mevaas_core.idempotency import IdempotentCall
from mevaas_core.pagination import decode_page_token, split_page
from mevaas_core.validation import EMAIL, HEX_COLOUR, HOSTNAME, Validator
from mevaas_tenancy import convert, store
from mevaas_tenancy.domain import api_keys, onboarding, plans
from mevaas_tenancy.domain.validation import SLUG, validate_plan
from mevaas_tenancy.events import SCHEMA, publish_tenant_event, record_audit

Ctx = Any
OWNER_ADMIN = (Role.OWNER, Role.ADMIN)
READERS = tuple(ALL_TENANT_ROLES)
PLATFORM = (Role.PLATFORM_ADMIN,)
PLATFORM_ONLY_FIELDS = {"tier", "plan", "isolation"}
TENANT_EDITABLE_FIELDS = {"display_name", "contact_email"}


def _roles_from_proto(values: Any, field: str, validator: Validator) -> list[str]:
    roles: list[str] = []
    for index, value in enumerate(values):
        role = convert.ROLE_BY_PROTO.get(value)
        if role is None:
            validator.fail(f"{field}[{index}]", "is not a known role")
        elif role is Role.PLATFORM_ADMIN:
            validator.fail(f"{field}[{index}]", "platform_admin cannot be granted through the API")
        else:
            roles.append(role.value)
    validator.check(bool(values), field, "must name at least one role")
    return sorted(set(roles))


def _check_may_grant(principal: Principal, roles: list[str]) -> None:
    if Role.OWNER.value in roles and not (principal.is_platform_admin or Role.OWNER in principal.roles):
        raise PermissionDenied("only an owner can grant the owner role")


class TenancyStore:
    """Transactions on tenancy's schema with the right row-level-security scope."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
        async with tenant_transaction(self.pool, tenant_id) as conn:
            yield conn

    @asynccontextmanager
    async def caller_scope(self) -> AsyncIterator[asyncpg.Connection]:
        """Platform admins see every tenant's rows; anyone else only their own."""
        principal = current_principal()
        if principal.is_platform_admin:
            async with platform_transaction(self.pool) as conn:
                yield conn
        else:
            async with tenant_transaction(self.pool, principal.tenant_id) as conn:
                yield conn

    @asynccontextmanager
    async def platform(self) -> AsyncIterator[asyncpg.Connection]:
        async with platform_transaction(self.pool) as conn:
            yield conn


async def _live_tenant(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record:
    row = await store.get_tenant(conn, tenant_id, for_update=True)
    if row is None:
        raise NotFound("tenant", tenant_id)
    if row["status"] == "deleted":
        raise FailedPrecondition("the tenant is deleted", subject=f"tenants/{tenant_id}")
    return row


class TenantServicer(tenancy_pb2_grpc.TenantServiceServicer):
    def __init__(self, db: TenancyStore) -> None:
        self._db = db

    @rpc(*PLATFORM)
    async def CreateTenant(
        self, request: tenancy_pb2.CreateTenantRequest, context: Ctx
    ) -> tenancy_pb2.CreateTenantResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.pattern(
            request.slug, "slug", SLUG, "lower-case letters, digits and dashes (1-40), e.g. acme-capital"
        )
        v.length(request.display_name, "display_name", 1, 128)
        v.check(request.tier in convert.TIER_NAMES, "tier", "must be STARTER, PROFESSIONAL or ENTERPRISE")
        v.check(
            request.isolation in (0, *convert.ISOLATION_NAMES), "isolation", "must be SHARED or DEDICATED"
        )
        if request.contact_email:
            v.pattern(request.contact_email, "contact_email", EMAIL, "an email address")
        if request.owner_email:
            v.pattern(request.owner_email, "owner_email", EMAIL, "an email address")
        if request.HasField("plan"):
            validate_plan(request.plan, "plan", v)
        v.raise_if_any()
        principal = current_principal()
        async with self._db.platform() as conn:
            call = IdempotentCall(
                SCHEMA, tenant_id=principal.tenant_id, method="CreateTenant", request=request
            )
            replay = await call.replay(conn, tenancy_pb2.CreateTenantResponse)
            if replay is not None:
                return replay
            plan = request.plan if request.HasField("plan") else plans.standard_plan(request.tier)
            row = await store.insert_tenant(
                conn,
                tenant_id=str(uuid.uuid4()),
                slug=request.slug,
                display_name=request.display_name,
                contact_email=request.contact_email,
                tier=convert.TIER_NAMES[request.tier],
                isolation=convert.ISOLATION_NAMES.get(request.isolation, "shared"),
                plan=plan.SerializeToString(deterministic=True),
            )
            if row is None:
                raise AlreadyExists(f"slug {request.slug!r} is taken")
            tenant_id = row["tenant_id"]
            response = tenancy_pb2.CreateTenantResponse(tenant=convert.tenant(row))
            if request.owner_email:
                owner = await store.insert_user(
                    conn,
                    user_id=str(uuid.uuid4()),
                    tenant_id=tenant_id,
                    email=request.owner_email,
                    display_name=request.owner_display_name,
                    roles=[Role.OWNER.value],
                )
                assert owner is not None, "a new tenant has no users yet"
                response.owner.CopyFrom(convert.user(owner))
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action="tenancy.CreateTenant",
                resource=f"tenants/{tenant_id}",
                details={"slug": request.slug, "tier": row["tier"]},
                idempotency_key=request.idempotency_key,
            )
            await publish_tenant_event(conn, principal, events_pb2.TENANT_EVENT_KIND_CREATED, row)
            await call.remember(conn, response)
            return response

    @rpc(*READERS)
    async def GetTenant(
        self, request: tenancy_pb2.GetTenantRequest, context: Ctx
    ) -> tenancy_pb2.GetTenantResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        async with self._db.tenant(tenant_id) as conn:
            row = await store.get_tenant(conn, tenant_id)
            if row is None:
                raise NotFound("tenant", tenant_id)
            return tenancy_pb2.GetTenantResponse(
                tenant=convert.tenant(row, await store.get_branding(conn, tenant_id))
            )

    @rpc(*PLATFORM)
    async def ListTenants(
        self, request: tenancy_pb2.ListTenantsRequest, context: Ctx
    ) -> tenancy_pb2.ListTenantsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.check(request.status in (0, *convert.STATUS_NAMES), "status", "is not a known tenant status")
        v.check(request.tier in (0, *convert.TIER_NAMES), "tier", "is not a known tier")
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 1)
        async with self._db.platform() as conn:
            rows = await store.list_tenants(
                conn,
                after=str(cursor[0]) if cursor else "",
                limit=size + 1,
                status=convert.STATUS_NAMES.get(request.status),
                tier=convert.TIER_NAMES.get(request.tier),
                exclude=PLATFORM_TENANT_ID,
            )
        page, token = split_page(rows, size, lambda r: (r["tenant_id"],))
        return tenancy_pb2.ListTenantsResponse(
            tenants=[convert.tenant(r) for r in page], page=common_pb2.PageResponse(next_page_token=token)
        )

    @rpc(*OWNER_ADMIN)
    async def UpdateTenant(
        self, request: tenancy_pb2.UpdateTenantRequest, context: Ctx
    ) -> tenancy_pb2.UpdateTenantResponse:
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant.tenant_id)
        paths = list(request.update_mask.paths)
        v = Validator()
        v.check(bool(paths), "update_mask", "must name the fields to change")
        allowed = TENANT_EDITABLE_FIELDS | PLATFORM_ONLY_FIELDS
        for index, path in enumerate(paths):
            v.check(path in allowed, f"update_mask.paths[{index}]", f"must be one of {sorted(allowed)}")
        if "display_name" in paths:
            v.length(request.tenant.display_name, "tenant.display_name", 1, 128)
        if "contact_email" in paths and request.tenant.contact_email:
            v.pattern(request.tenant.contact_email, "tenant.contact_email", EMAIL, "an email address")
        if "tier" in paths:
            v.check(
                request.tenant.tier in convert.TIER_NAMES,
                "tenant.tier",
                "must be STARTER, PROFESSIONAL or ENTERPRISE",
            )
        if "isolation" in paths:
            v.check(
                request.tenant.isolation in convert.ISOLATION_NAMES,
                "tenant.isolation",
                "must be SHARED or DEDICATED",
            )
        if "plan" in paths:
            validate_plan(request.tenant.plan, "tenant.plan", v)
        v.raise_if_any()
        if PLATFORM_ONLY_FIELDS & set(paths) and not principal.is_platform_admin:
            raise PermissionDenied(
                "tier, plan and isolation are changed by the platform (contact your account manager)"
            )
        async with self._db.tenant(tenant_id) as conn:
            row = await _live_tenant(conn, tenant_id)
            if request.expected_version and request.expected_version != row["version"]:
                raise FailedPrecondition(
                    f"tenant is at version {row['version']}, not {request.expected_version}",
                    subject=f"tenants/{tenant_id}",
                    violation_type="VERSION",
                )
            changes: dict[str, object] = {}
            if "display_name" in paths:
                changes["display_name"] = request.tenant.display_name
            if "contact_email" in paths:
                changes["contact_email"] = request.tenant.contact_email
            if "isolation" in paths:
                changes["isolation"] = convert.ISOLATION_NAMES[request.tenant.isolation]
            if "tier" in paths:
                changes["tier"] = convert.TIER_NAMES[request.tenant.tier]
                if "plan" not in paths:
                    changes["plan"] = plans.standard_plan(request.tenant.tier).SerializeToString(
                        deterministic=True
                    )
            if "plan" in paths:
                changes["plan"] = request.tenant.plan.SerializeToString(deterministic=True)
            updated = await store.update_tenant(conn, tenant_id, changes)
            tier_changed = updated["tier"] != row["tier"]
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action="tenancy.UpdateTenant",
                resource=f"tenants/{tenant_id}",
                details={"fields": ",".join(sorted(paths))},
            )
            await publish_tenant_event(
                conn,
                principal,
                events_pb2.TENANT_EVENT_KIND_TIER_CHANGED
                if tier_changed
                else events_pb2.TENANT_EVENT_KIND_UPDATED,
                updated,
                previous_tier=row["tier"] if tier_changed else "",
            )
            return tenancy_pb2.UpdateTenantResponse(
                tenant=convert.tenant(updated, await store.get_branding(conn, tenant_id))
            )

    async def _set_status(
        self,
        tenant_id: str,
        *,
        target: str,
        expected: str,
        reason: str,
        action: str,
        kind: events_pb2.TenantEventKind.ValueType,
    ) -> tenancy_pb2.Tenant:
        principal = current_principal()
        async with self._db.tenant(tenant_id) as conn:
            row = await _live_tenant(conn, tenant_id)
            if row["status"] == target:
                return convert.tenant(row)
            if row["status"] != expected:
                raise FailedPrecondition(f"tenant is {row['status']}", subject=f"tenants/{tenant_id}")
            updated = await store.update_tenant(
                conn,
                tenant_id,
                {"status": target, "suspended_reason": reason if target == "suspended" else ""},
            )
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action=action,
                resource=f"tenants/{tenant_id}",
                details={"reason": reason},
            )
            await publish_tenant_event(conn, principal, kind, updated, reason=reason)
            return convert.tenant(updated)

    @rpc(*PLATFORM)
    async def SuspendTenant(
        self, request: tenancy_pb2.SuspendTenantRequest, context: Ctx
    ) -> tenancy_pb2.SuspendTenantResponse:
        v = Validator()
        v.required(request.tenant_id, "tenant_id")
        v.length(request.reason, "reason", 1, 512)
        v.raise_if_any()
        tenant = await self._set_status(
            request.tenant_id,
            target="suspended",
            expected="active",
            reason=request.reason,
            action="tenancy.SuspendTenant",
            kind=events_pb2.TENANT_EVENT_KIND_SUSPENDED,
        )
        return tenancy_pb2.SuspendTenantResponse(tenant=tenant)

    @rpc(*PLATFORM)
    async def ResumeTenant(
        self, request: tenancy_pb2.ResumeTenantRequest, context: Ctx
    ) -> tenancy_pb2.ResumeTenantResponse:
        v = Validator()
        v.required(request.tenant_id, "tenant_id")
        v.raise_if_any()
        tenant = await self._set_status(
            request.tenant_id,
            target="active",
            expected="suspended",
            reason=request.reason,
            action="tenancy.ResumeTenant",
            kind=events_pb2.TENANT_EVENT_KIND_RESUMED,
        )
        return tenancy_pb2.ResumeTenantResponse(tenant=tenant)

    @rpc(Role.OWNER)
    async def DeleteTenant(
        self, request: tenancy_pb2.DeleteTenantRequest, context: Ctx
    ) -> tenancy_pb2.DeleteTenantResponse:
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        v.required(request.confirm_slug, "confirm_slug")
        v.raise_if_any()
        async with self._db.tenant(tenant_id) as conn:
            row = await store.get_tenant(conn, tenant_id, for_update=True)
            if row is None:
                raise NotFound("tenant", tenant_id)
            if request.confirm_slug != row["slug"]:
                raise InvalidArgument(FieldViolation("confirm_slug", "must equal the tenant's slug"))
            if row["status"] == "deleted":
                return tenancy_pb2.DeleteTenantResponse(tenant=convert.tenant(row))
            users, keys = await store.erase_tenant_personal_data(conn, tenant_id)
            updated = await store.update_tenant(
                conn, tenant_id, {"status": "deleted", "contact_email": "", "deleted_at": datetime.now(UTC)}
            )
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action="tenancy.DeleteTenant",
                resource=f"tenants/{tenant_id}",
                details={"reason": request.reason, "users_erased": str(users), "api_keys_revoked": str(keys)},
            )
            await publish_tenant_event(
                conn, principal, events_pb2.TENANT_EVENT_KIND_DELETED, updated, reason=request.reason
            )
            return tenancy_pb2.DeleteTenantResponse(
                tenant=convert.tenant(updated), users_erased=users, api_keys_revoked=keys
            )

    @rpc(*OWNER_ADMIN)
    async def AdvanceOnboarding(
        self, request: tenancy_pb2.AdvanceOnboardingRequest, context: Ctx
    ) -> tenancy_pb2.AdvanceOnboardingResponse:
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant_id)
        target = convert.PHASE_NAMES.get(request.target_phase)
        if target is None:
            raise InvalidArgument(FieldViolation("target_phase", "must be a known onboarding phase"))
        async with self._db.tenant(tenant_id) as conn:
            row = await _live_tenant(conn, tenant_id)
            try:
                onboarding.check_transition(row["onboarding_phase"], target)
            except onboarding.OnboardingTransitionError as exc:
                raise FailedPrecondition(
                    str(exc), subject=f"tenants/{tenant_id}", violation_type="ONBOARDING"
                ) from None
            if row["onboarding_phase"] == target:
                return tenancy_pb2.AdvanceOnboardingResponse(tenant=convert.tenant(row))
            updated = await store.update_tenant(conn, tenant_id, {"onboarding_phase": target})
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action="tenancy.AdvanceOnboarding",
                resource=f"tenants/{tenant_id}",
                details={"from": row["onboarding_phase"], "to": target, "notes": request.notes},
            )
            await publish_tenant_event(conn, principal, events_pb2.TENANT_EVENT_KIND_UPDATED, updated)
            return tenancy_pb2.AdvanceOnboardingResponse(tenant=convert.tenant(updated))

    @rpc(*OWNER_ADMIN)
    async def SetBranding(
        self, request: tenancy_pb2.SetBrandingRequest, context: Ctx
    ) -> tenancy_pb2.SetBrandingResponse:
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant_id)
        b = request.branding
        v = Validator()
        if b.display_name:
            v.length(b.display_name, "branding.display_name", 1, 128)
        if b.logo_url:
            v.check(
                b.logo_url.startswith("https://") and len(b.logo_url) <= 2048,
                "branding.logo_url",
                "must be an absolute https URL of at most 2048 characters",
            )
        for name in ("primary_color", "secondary_color"):
            value = getattr(b, name)
            if value:
                v.pattern(value, f"branding.{name}", HEX_COLOUR, "a colour like #1A2B3C")
        if b.custom_domain:
            v.pattern(
                b.custom_domain,
                "branding.custom_domain",
                HOSTNAME,
                "a lower-case hostname such as mev.example.com",
            )
        v.raise_if_any()
        async with self._db.tenant(tenant_id) as conn:
            tenant_row = await _live_tenant(conn, tenant_id)
            try:
                async with conn.transaction():
                    row = await store.upsert_branding(
                        conn,
                        tenant_id,
                        display_name=b.display_name,
                        logo_url=b.logo_url,
                        primary_color=b.primary_color,
                        secondary_color=b.secondary_color,
                        custom_domain=b.custom_domain or None,
                    )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"custom domain {b.custom_domain!r} belongs to another tenant") from None
            await record_audit(
                conn,
                principal,
                tenant_id=tenant_id,
                action="tenancy.SetBranding",
                resource=f"tenants/{tenant_id}/branding",
                details={"custom_domain": b.custom_domain},
            )
            await publish_tenant_event(conn, principal, events_pb2.TENANT_EVENT_KIND_UPDATED, tenant_row)
            branding = convert.branding(row)
            assert branding is not None
            return tenancy_pb2.SetBrandingResponse(branding=branding)

    @rpc(*READERS)
    async def GetBranding(
        self, request: tenancy_pb2.GetBrandingRequest, context: Ctx
    ) -> tenancy_pb2.GetBrandingResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        async with self._db.tenant(tenant_id) as conn:
            if await store.get_tenant(conn, tenant_id) is None:
                raise NotFound("tenant", tenant_id)
            branding = convert.branding(await store.get_branding(conn, tenant_id))
            return tenancy_pb2.GetBrandingResponse(branding=branding or tenancy_pb2.Branding())

    @rpc(*OWNER_ADMIN)
    async def CreateUser(
        self, request: tenancy_pb2.CreateUserRequest, context: Ctx
    ) -> tenancy_pb2.CreateUserResponse:
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.pattern(request.email, "email", EMAIL, "an email address")
        v.length(request.display_name, "display_name", 0, 128)
        roles = _roles_from_proto(request.roles, "roles", v)
        v.raise_if_any()
        _check_may_grant(principal, roles)
        async with self._db.tenant(tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="CreateUser", request=request)
            replay = await call.replay(conn, tenancy_pb2.CreateUserResponse)
            if replay is not None:
                return replay
            await _live_tenant(conn, tenant_id)
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
                principal,
                tenant_id=tenant_id,
                action="tenancy.CreateUser",
                resource=f"users/{row['user_id']}",
                details={"roles": ",".join(roles)},
                idempotency_key=request.idempotency_key,
            )
            response = tenancy_pb2.CreateUserResponse(user=convert.user(row))
            await call.remember(conn, response)
            return response

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE, Role.VIEWER)
    async def ListUsers(
        self, request: tenancy_pb2.ListUsersRequest, context: Ctx
    ) -> tenancy_pb2.ListUsersResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 1)
        async with self._db.tenant(tenant_id) as conn:
            rows = await store.list_users(
                conn, tenant_id, after=str(cursor[0]) if cursor else "", limit=size + 1
            )
        page, token = split_page(rows, size, lambda r: (r["user_id"],))
        return tenancy_pb2.ListUsersResponse(
            users=[convert.user(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    @rpc(*OWNER_ADMIN)
    async def UpdateUserRoles(
        self, request: tenancy_pb2.UpdateUserRolesRequest, context: Ctx
    ) -> tenancy_pb2.UpdateUserRolesResponse:
        principal = current_principal()
        v = Validator()
        v.required(request.user_id, "user_id")
        roles = _roles_from_proto(request.roles, "roles", v)
        v.raise_if_any()
        _check_may_grant(principal, roles)
        async with self._db.caller_scope() as conn:
            row = await store.get_user(conn, request.user_id)
            if row is None:
                raise NotFound("user", request.user_id)
            if Role.OWNER.value in row["roles"] and Role.OWNER.value not in roles:
                _check_may_grant(principal, [Role.OWNER.value])
                if await store.count_owners(conn, row["tenant_id"]) <= 1:
                    raise FailedPrecondition(
                        "a tenant must keep at least one owner", subject=f"users/{request.user_id}"
                    )
            updated = await store.set_user_roles(conn, request.user_id, roles)
            await record_audit(
                conn,
                principal,
                tenant_id=row["tenant_id"],
                action="tenancy.UpdateUserRoles",
                resource=f"users/{request.user_id}",
                details={"roles": ",".join(roles)},
            )
            return tenancy_pb2.UpdateUserRolesResponse(user=convert.user(updated))

    @rpc(*OWNER_ADMIN)
    async def DeleteUser(
        self, request: tenancy_pb2.DeleteUserRequest, context: Ctx
    ) -> tenancy_pb2.DeleteUserResponse:
        principal = current_principal()
        if not request.user_id:
            raise InvalidArgument(FieldViolation("user_id", "is required"))
        async with self._db.caller_scope() as conn:
            row = await store.get_user(conn, request.user_id)
            if row is None:
                raise NotFound("user", request.user_id)
            if Role.OWNER.value in row["roles"]:
                _check_may_grant(principal, [Role.OWNER.value])
                if await store.count_owners(conn, row["tenant_id"]) <= 1:
                    raise FailedPrecondition(
                        "a tenant must keep at least one owner", subject=f"users/{request.user_id}"
                    )
            await store.delete_user(conn, request.user_id)
            await record_audit(
                conn,
                principal,
                tenant_id=row["tenant_id"],
                action="tenancy.DeleteUser",
                resource=f"users/{request.user_id}",
            )
            return tenancy_pb2.DeleteUserResponse()

    @rpc(*OWNER_ADMIN)
    async def CreateApiKey(
        self, request: tenancy_pb2.CreateApiKeyRequest, context: Ctx
    ) -> tenancy_pb2.CreateApiKeyResponse:
        principal = current_principal()
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.length(request.name, "name", 1, 64)
        roles = _roles_from_proto(request.roles, "roles", v)
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        if expires_at is not None:
            v.check(expires_at > datetime.now(UTC), "expires_at", "must be in the future")
        v.raise_if_any()
        _check_may_grant(principal, roles)
        async with self._db.tenant(tenant_id) as conn:
            # The secret is shown once: a replay returns the key's metadata, never the secret again.
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="CreateApiKey", request=request)
            replay = await call.replay(conn, tenancy_pb2.CreateApiKeyResponse)
            if replay is not None:
                return replay
            await _live_tenant(conn, tenant_id)
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
                principal,
                tenant_id=tenant_id,
                action="tenancy.CreateApiKey",
                resource=f"api_keys/{new_key.key_id}",
                details={"roles": ",".join(roles), "name": request.name},
                idempotency_key=request.idempotency_key,
            )
            metadata_only = tenancy_pb2.CreateApiKeyResponse(api_key=convert.api_key(row))
            await call.remember(conn, metadata_only)
            return tenancy_pb2.CreateApiKeyResponse(api_key=convert.api_key(row), secret=new_key.plaintext)

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
    async def ListApiKeys(
        self, request: tenancy_pb2.ListApiKeysRequest, context: Ctx
    ) -> tenancy_pb2.ListApiKeysResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 1)
        async with self._db.tenant(tenant_id) as conn:
            rows = await store.list_api_keys(
                conn,
                tenant_id,
                after=str(cursor[0]) if cursor else "",
                limit=size + 1,
                include_revoked=request.include_revoked,
            )
        page, token = split_page(rows, size, lambda r: (r["key_id"],))
        return tenancy_pb2.ListApiKeysResponse(
            api_keys=[convert.api_key(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    @rpc(*OWNER_ADMIN)
    async def RevokeApiKey(
        self, request: tenancy_pb2.RevokeApiKeyRequest, context: Ctx
    ) -> tenancy_pb2.RevokeApiKeyResponse:
        principal = current_principal()
        if not request.api_key_id:
            raise InvalidArgument(FieldViolation("api_key_id", "is required"))
        async with self._db.caller_scope() as conn:
            row = await store.get_api_key(conn, request.api_key_id)
            if row is None:
                raise NotFound("api key", request.api_key_id)
            if row["revoked_at"] is not None:
                return tenancy_pb2.RevokeApiKeyResponse(api_key=convert.api_key(row))
            revoked = await store.revoke_api_key(conn, request.api_key_id)
            await record_audit(
                conn,
                principal,
                tenant_id=row["tenant_id"],
                action="tenancy.RevokeApiKey",
                resource=f"api_keys/{request.api_key_id}",
                details={"reason": request.reason},
            )
            return tenancy_pb2.RevokeApiKeyResponse(api_key=convert.api_key(revoked))

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
    async def ListAuditRecords(
        self, request: tenancy_pb2.ListAuditRecordsRequest, context: Ctx
    ) -> tenancy_pb2.ListAuditRecordsResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 1)
        time_range = request.time_range
        async with self._db.tenant(tenant_id) as conn:
            rows = await store.list_audit_records(
                conn,
                tenant_id,
                after=int(cursor[0]) if cursor else 0,
                limit=size + 1,
                start=time_range.start.ToDatetime(tzinfo=UTC) if time_range.HasField("start") else None,
                end=time_range.end.ToDatetime(tzinfo=UTC) if time_range.HasField("end") else None,
                actor_id=request.actor_id,
                action_prefix=request.action_prefix,
                resource_prefix=request.resource_prefix,
            )
        page, token = split_page(rows, size, lambda r: (r["record_id"],))
        return tenancy_pb2.ListAuditRecordsResponse(
            records=[_audit_record(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )


def _audit_record(row: asyncpg.Record) -> events_pb2.AuditRecord:
    return events_pb2.AuditRecord(
        event_id=row["event_id"],
        tenant_id=row["tenant_id"],
        occurred_at=convert.timestamp(row["occurred_at"]),
        actor=events_pb2.Actor(
            kind=events_pb2.ActorKind.Value(row["actor_kind"]),
            id=row["actor_id"],
            tenant_id=row["actor_tenant_id"],
        ),
        action=row["action"],
        resource=row["resource"],
        outcome=events_pb2.AuditOutcome.Value(row["outcome"]),
        details=json.loads(row["details"]) if isinstance(row["details"], str) else dict(row["details"]),
        idempotency_key=row["idempotency_key"],
        service="tenancy",
    )


class AuthServicer(tenancy_pb2_grpc.AuthServiceServicer):
    def __init__(
        self, db: TenancyStore, issuer: TokenIssuer, signing_key: SigningKey, extra_public_pems: list[str]
    ) -> None:
        self._db = db
        self._issuer = issuer
        self._signing_key = signing_key
        self._extra_public_pems = extra_public_pems

    @rpc(public=True)
    async def ExchangeApiKey(
        self, request: tenancy_pb2.ExchangeApiKeyRequest, context: Ctx
    ) -> tenancy_pb2.ExchangeApiKeyResponse:
        try:
            key_id, secret = api_keys.split_api_key(request.api_key)
        except api_keys.MalformedApiKey as exc:
            raise InvalidArgument(FieldViolation("api_key", str(exc))) from None
        async with self._db.platform() as conn:
            key = await store.get_api_key(conn, key_id)
            # One message for unknown and wrong keys, so key ids cannot be probed.
            if key is None or not await api_keys.verify_secret(key["secret_hash"], secret):
                raise Unauthenticated("invalid API key")
            if key["revoked_at"] is not None:
                raise Unauthenticated("API key revoked")
            if key["expires_at"] is not None and key["expires_at"] <= datetime.now(UTC):
                raise Unauthenticated("API key expired")
            tenant = await store.get_tenant(conn, key["tenant_id"])
            assert tenant is not None, "api_keys.tenant_id references tenants"
            if tenant["status"] != "active":
                raise PermissionDenied(f"tenant is {tenant['status']}")
            await store.touch_api_key(conn, key_id)
        plan = convert.plan_from_bytes(bytes(tenant["plan"]))
        roles = frozenset(Role(r) for r in key["roles"])
        is_admin = Role.PLATFORM_ADMIN in roles
        principal = Principal(
            subject=key_id,
            tenant_id=key["tenant_id"],
            roles=roles,
            tier=tenant["tier"],
            rate_per_second=0.0 if is_admin else float(plan.rate_limit_per_second),
            burst=0 if is_admin else int(plan.rate_limit_burst or plan.rate_limit_per_second),
        )
        token, expires_at = self._issuer.issue(principal)
        return tenancy_pb2.ExchangeApiKeyResponse(
            access_token=token,
            token_type="Bearer",
            expires_at=Timestamp(seconds=expires_at),
            tenant_id=key["tenant_id"],
            roles=convert.roles_to_proto(sorted(key["roles"])),
            plan=plan,
            tier=convert.TIERS[tenant["tier"]],
            api_key_id=key_id,
        )

    @rpc(public=True)
    async def GetPublicKeys(
        self, request: tenancy_pb2.GetPublicKeysRequest, context: Ctx
    ) -> tenancy_pb2.GetPublicKeysResponse:
        pems = [self._signing_key.public_pem(), *self._extra_public_pems]
        keys = [
            tenancy_pb2.PublicKey(key_id=key_id_of_pem(pem), algorithm=ALGORITHM, public_key_pem=pem)
            for pem in pems
        ]
        return tenancy_pb2.GetPublicKeysResponse(
            keys=keys, issuer=self._issuer.issuer, audience=self._issuer.audience
        )

    @rpc(*READERS)
    async def WhoAmI(self, request: tenancy_pb2.WhoAmIRequest, context: Ctx) -> tenancy_pb2.WhoAmIResponse:
        principal = current_principal()
        async with self._db.tenant(principal.tenant_id) as conn:
            tenant = await store.get_tenant(conn, principal.tenant_id)
        if tenant is None:
            raise NotFound("tenant", principal.tenant_id)
        return tenancy_pb2.WhoAmIResponse(
            tenant_id=principal.tenant_id,
            subject=principal.subject,
            actor_kind=events_pb2.ACTOR_KIND_PLATFORM_ADMIN
            if principal.is_platform_admin
            else events_pb2.ACTOR_KIND_API_KEY,
            roles=[convert.ROLES[r] for r in sorted(principal.roles)],
            tier=convert.TIERS[tenant["tier"]],
            plan=convert.plan_from_bytes(bytes(tenant["plan"])),
            expires_at=Timestamp(seconds=principal.expires_at),
            api_key_id=principal.subject,
            tenant_status=convert.STATUSES[tenant["status"]],
        )
