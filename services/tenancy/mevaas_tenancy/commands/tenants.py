"""Tenant lifecycle: create, update, suspend/resume, delete (erasing personal data), onboarding
and branding."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core import revocation
from mevaas_core.auth import PLATFORM_TENANT_ID, Principal, Role
from mevaas_core.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from mevaas_core.idempotency import IdempotentCall
from mevaas_tenancy import convert, store
from mevaas_tenancy.domain import onboarding, plans
from mevaas_tenancy.events import SCHEMA, publish_revocation, publish_tenant_event, record_audit
from mevaas_tenancy.store import Row, TenancyStore


@dataclass(frozen=True)
class TenantChanges:
    """The fields an UpdateTenant sets (validated); ``plan`` is the serialised plan."""

    display_name: str | None = None
    contact_email: str | None = None
    isolation: str | None = None
    tier: str | None = None
    plan: bytes | None = None

    def as_columns(self) -> dict[str, object]:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class BrandingInput:
    display_name: str
    logo_url: str
    primary_color: str
    secondary_color: str
    custom_domain: str


async def live_tenant(conn: asyncpg.Connection, tenant_id: str) -> Row:
    """The tenant, row-locked; NOT_FOUND or FAILED_PRECONDITION when it is gone or deleted."""
    row = await store.get_tenant(conn, tenant_id, for_update=True)
    if row is None:
        raise NotFound("tenant", tenant_id)
    if row["status"] == "deleted":
        raise FailedPrecondition("the tenant is deleted", subject=f"tenants/{tenant_id}")
    return row


class TenantCommands:
    def __init__(self, db: TenancyStore) -> None:
        self._db = db

    async def create_tenant(
        self, principal: Principal, request: tenancy_pb2.CreateTenantRequest
    ) -> tenancy_pb2.CreateTenantResponse:
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
                tenant_id=tenant_id,
                resource=f"tenants/{tenant_id}",
                details={"slug": request.slug, "tier": row["tier"]},
                idempotency_key=request.idempotency_key,
            )
            await publish_tenant_event(conn, principal, events_pb2.TENANT_EVENT_KIND_CREATED, row)
            await call.remember(conn, response)
            return response

    async def get_tenant(self, tenant_id: str) -> tuple[Row, Row | None]:
        """The tenant and its branding."""
        async with self._db.tenant(tenant_id) as conn:
            row = await store.get_tenant(conn, tenant_id)
            if row is None:
                raise NotFound("tenant", tenant_id)
            return row, await store.get_branding(conn, tenant_id)

    async def find_tenant(self, tenant_id: str) -> Row | None:
        async with self._db.tenant(tenant_id) as conn:
            return await store.get_tenant(conn, tenant_id)

    async def list_tenants(
        self, *, after: str, limit: int, status: str | None, tier: str | None
    ) -> list[Row]:
        async with self._db.platform() as conn:
            return await store.list_tenants(
                conn, after=after, limit=limit, status=status, tier=tier, exclude=PLATFORM_TENANT_ID
            )

    async def update_tenant(
        self,
        principal: Principal,
        tenant_id: str,
        changes: TenantChanges,
        *,
        fields: list[str],
        expected_version: int,
    ) -> tuple[Row, Row | None]:
        """Apply ``changes``; a tier change is its own event kind. Returns the tenant and branding."""
        async with self._db.tenant(tenant_id) as conn:
            row = await live_tenant(conn, tenant_id)
            if expected_version and expected_version != row["version"]:
                raise FailedPrecondition(
                    f"tenant is at version {row['version']}, not {expected_version}",
                    subject=f"tenants/{tenant_id}",
                    violation_type="VERSION",
                )
            updated = await store.update_tenant(conn, tenant_id, changes.as_columns())
            tier_changed = updated["tier"] != row["tier"]
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource=f"tenants/{tenant_id}",
                details={"fields": ",".join(sorted(fields))},
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
            return updated, await store.get_branding(conn, tenant_id)

    async def set_status(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        target: str,
        expected: str,
        reason: str,
        kind: events_pb2.TenantEventKind.ValueType,
    ) -> Row:
        """Move the tenant from ``expected`` to ``target`` (a no-op when it is there already);
        suspension revokes every token of the tenant."""
        async with self._db.tenant(tenant_id) as conn:
            row = await live_tenant(conn, tenant_id)
            if row["status"] == target:
                return row
            if row["status"] != expected:
                raise FailedPrecondition(f"tenant is {row['status']}", subject=f"tenants/{tenant_id}")
            updated = await store.update_tenant(
                conn,
                tenant_id,
                {"status": target, "suspended_reason": reason if target == "suspended" else ""},
            )
            await record_audit(
                conn, tenant_id=tenant_id, resource=f"tenants/{tenant_id}", details={"reason": reason}
            )
            await publish_tenant_event(conn, principal, kind, updated, reason=reason)
            if target == "suspended":
                await publish_revocation(conn, tenant_id, revocation.TENANT, tenant_id, "tenant_suspended")
            return updated

    async def delete_tenant(
        self, principal: Principal, tenant_id: str, *, confirm_slug: str, reason: str
    ) -> tuple[Row, int, int]:
        """Delete the tenant (idempotent): personal data erased, every token revoked. Returns the
        tenant, users erased and API keys revoked."""
        async with self._db.tenant(tenant_id) as conn:
            row = await store.get_tenant(conn, tenant_id, for_update=True)
            if row is None:
                raise NotFound("tenant", tenant_id)
            if confirm_slug != row["slug"]:
                raise InvalidArgument(FieldViolation("confirm_slug", "must equal the tenant's slug"))
            if row["status"] == "deleted":
                return row, 0, 0
            users, keys = await store.erase_tenant_personal_data(conn, tenant_id)
            updated = await store.update_tenant(
                conn, tenant_id, {"status": "deleted", "contact_email": "", "deleted_at": datetime.now(UTC)}
            )
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource=f"tenants/{tenant_id}",
                details={"reason": reason, "users_erased": str(users), "api_keys_revoked": str(keys)},
            )
            await publish_tenant_event(
                conn, principal, events_pb2.TENANT_EVENT_KIND_DELETED, updated, reason=reason
            )
            await publish_revocation(conn, tenant_id, revocation.TENANT, tenant_id, "tenant_deleted")
            return updated, users, keys

    async def advance_onboarding(self, principal: Principal, tenant_id: str, target: str, notes: str) -> Row:
        async with self._db.tenant(tenant_id) as conn:
            row = await live_tenant(conn, tenant_id)
            try:
                onboarding.check_transition(row["onboarding_phase"], target)
            except onboarding.OnboardingTransitionError as exc:
                raise FailedPrecondition(
                    str(exc), subject=f"tenants/{tenant_id}", violation_type="ONBOARDING"
                ) from None
            if row["onboarding_phase"] == target:
                return row
            updated = await store.update_tenant(conn, tenant_id, {"onboarding_phase": target})
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource=f"tenants/{tenant_id}",
                details={"from": row["onboarding_phase"], "to": target, "notes": notes},
            )
            await publish_tenant_event(conn, principal, events_pb2.TENANT_EVENT_KIND_UPDATED, updated)
            return updated

    async def set_branding(self, principal: Principal, tenant_id: str, branding: BrandingInput) -> Row:
        async with self._db.tenant(tenant_id) as conn:
            tenant_row = await live_tenant(conn, tenant_id)
            try:
                async with conn.transaction():
                    row = await store.upsert_branding(
                        conn,
                        tenant_id,
                        display_name=branding.display_name,
                        logo_url=branding.logo_url,
                        primary_color=branding.primary_color,
                        secondary_color=branding.secondary_color,
                        custom_domain=branding.custom_domain or None,
                    )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(
                    f"custom domain {branding.custom_domain!r} belongs to another tenant"
                ) from None
            await record_audit(
                conn,
                tenant_id=tenant_id,
                resource=f"tenants/{tenant_id}/branding",
                details={"custom_domain": branding.custom_domain},
            )
            await publish_tenant_event(conn, principal, events_pb2.TENANT_EVENT_KIND_UPDATED, tenant_row)
            return row

    async def get_branding(self, tenant_id: str) -> Row | None:
        async with self._db.tenant(tenant_id) as conn:
            if await store.get_tenant(conn, tenant_id) is None:
                raise NotFound("tenant", tenant_id)
            return await store.get_branding(conn, tenant_id)
