"""gRPC servicers for TenantService and AuthService: each handler validates the request, calls one
command (commands/) and converts the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import ALGORITHM, Role, SigningKey, TokenIssuer, key_id_of_pem
from mevaas_core.errors import FieldViolation, InvalidArgument, PermissionDenied
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, require_tenant_scope, rpc
from mevaas_core.pagination import decode_page_token, page_position, split_page
from mevaas_core.validation import EMAIL, HEX_COLOUR, HOSTNAME, Validator
from mevaas_tenancy import convert
from mevaas_tenancy.commands import AccessCommands, BrandingInput, TenantChanges, TenantCommands
from mevaas_tenancy.domain import api_keys, plans
from mevaas_tenancy.domain.validation import SLUG, validate_plan

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


def _cursor(token: str) -> str:
    cursor = decode_page_token(token, 1)
    return str(cursor[0]) if cursor else ""


class TenantServicer(tenancy_pb2_grpc.TenantServiceServicer):
    def __init__(self, tenants: TenantCommands, access: AccessCommands) -> None:
        self._tenants = tenants
        self._access = access

    # tenants --------------------------------------------------------------------------------------

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
        return await self._tenants.create_tenant(current_principal(), request)

    @rpc(*READERS)
    async def GetTenant(
        self, request: tenancy_pb2.GetTenantRequest, context: Ctx
    ) -> tenancy_pb2.GetTenantResponse:
        row, branding = await self._tenants.get_tenant(require_tenant_scope(request.tenant_id))
        return tenancy_pb2.GetTenantResponse(tenant=convert.tenant(row, branding))

    @rpc(*PLATFORM)
    async def ListTenants(
        self, request: tenancy_pb2.ListTenantsRequest, context: Ctx
    ) -> tenancy_pb2.ListTenantsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.check(request.status in (0, *convert.STATUS_NAMES), "status", "is not a known tenant status")
        v.check(request.tier in (0, *convert.TIER_NAMES), "tier", "is not a known tier")
        v.raise_if_any()
        rows = await self._tenants.list_tenants(
            after=_cursor(request.page.page_token),
            limit=size + 1,
            status=convert.STATUS_NAMES.get(request.status),
            tier=convert.TIER_NAMES.get(request.tier),
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
        tenant = request.tenant
        v = Validator()
        v.check(bool(paths), "update_mask", "must name the fields to change")
        allowed = TENANT_EDITABLE_FIELDS | PLATFORM_ONLY_FIELDS
        for index, path in enumerate(paths):
            v.check(path in allowed, f"update_mask.paths[{index}]", f"must be one of {sorted(allowed)}")
        if "display_name" in paths:
            v.length(tenant.display_name, "tenant.display_name", 1, 128)
        if "contact_email" in paths and tenant.contact_email:
            v.pattern(tenant.contact_email, "tenant.contact_email", EMAIL, "an email address")
        if "tier" in paths:
            v.check(
                tenant.tier in convert.TIER_NAMES,
                "tenant.tier",
                "must be STARTER, PROFESSIONAL or ENTERPRISE",
            )
        if "isolation" in paths:
            v.check(
                tenant.isolation in convert.ISOLATION_NAMES, "tenant.isolation", "must be SHARED or DEDICATED"
            )
        if "plan" in paths:
            validate_plan(tenant.plan, "tenant.plan", v)
        v.raise_if_any()
        if PLATFORM_ONLY_FIELDS & set(paths) and not principal.is_platform_admin:
            raise PermissionDenied(
                "tier, plan and isolation are changed by the platform (contact your account manager)"
            )
        # A tier change without an explicit plan takes the tier's standard plan.
        plan = (
            tenant.plan if "plan" in paths else plans.standard_plan(tenant.tier) if "tier" in paths else None
        )
        changes = TenantChanges(
            display_name=tenant.display_name if "display_name" in paths else None,
            contact_email=tenant.contact_email if "contact_email" in paths else None,
            isolation=convert.ISOLATION_NAMES[tenant.isolation] if "isolation" in paths else None,
            tier=convert.TIER_NAMES[tenant.tier] if "tier" in paths else None,
            plan=plan.SerializeToString(deterministic=True) if plan is not None else None,
        )
        row, branding = await self._tenants.update_tenant(
            principal, tenant_id, changes, fields=paths, expected_version=request.expected_version
        )
        return tenancy_pb2.UpdateTenantResponse(tenant=convert.tenant(row, branding))

    @rpc(*PLATFORM)
    async def SuspendTenant(
        self, request: tenancy_pb2.SuspendTenantRequest, context: Ctx
    ) -> tenancy_pb2.SuspendTenantResponse:
        v = Validator()
        v.required(request.tenant_id, "tenant_id")
        v.length(request.reason, "reason", 1, 512)
        v.raise_if_any()
        row = await self._tenants.set_status(
            current_principal(),
            request.tenant_id,
            target="suspended",
            expected="active",
            reason=request.reason,
            kind=events_pb2.TENANT_EVENT_KIND_SUSPENDED,
        )
        return tenancy_pb2.SuspendTenantResponse(tenant=convert.tenant(row))

    @rpc(*PLATFORM)
    async def ResumeTenant(
        self, request: tenancy_pb2.ResumeTenantRequest, context: Ctx
    ) -> tenancy_pb2.ResumeTenantResponse:
        v = Validator()
        v.required(request.tenant_id, "tenant_id")
        v.raise_if_any()
        row = await self._tenants.set_status(
            current_principal(),
            request.tenant_id,
            target="active",
            expected="suspended",
            reason=request.reason,
            kind=events_pb2.TENANT_EVENT_KIND_RESUMED,
        )
        return tenancy_pb2.ResumeTenantResponse(tenant=convert.tenant(row))

    @rpc(Role.OWNER)
    async def DeleteTenant(
        self, request: tenancy_pb2.DeleteTenantRequest, context: Ctx
    ) -> tenancy_pb2.DeleteTenantResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        v.required(request.confirm_slug, "confirm_slug")
        v.raise_if_any()
        row, users, keys = await self._tenants.delete_tenant(
            current_principal(), tenant_id, confirm_slug=request.confirm_slug, reason=request.reason
        )
        return tenancy_pb2.DeleteTenantResponse(
            tenant=convert.tenant(row), users_erased=users, api_keys_revoked=keys
        )

    @rpc(*OWNER_ADMIN)
    async def AdvanceOnboarding(
        self, request: tenancy_pb2.AdvanceOnboardingRequest, context: Ctx
    ) -> tenancy_pb2.AdvanceOnboardingResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        target = convert.PHASE_NAMES.get(request.target_phase)
        if target is None:
            raise InvalidArgument(FieldViolation("target_phase", "must be a known onboarding phase"))
        row = await self._tenants.advance_onboarding(current_principal(), tenant_id, target, request.notes)
        return tenancy_pb2.AdvanceOnboardingResponse(tenant=convert.tenant(row))

    @rpc(*OWNER_ADMIN)
    async def SetBranding(
        self, request: tenancy_pb2.SetBrandingRequest, context: Ctx
    ) -> tenancy_pb2.SetBrandingResponse:
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
        row = await self._tenants.set_branding(
            current_principal(),
            tenant_id,
            BrandingInput(b.display_name, b.logo_url, b.primary_color, b.secondary_color, b.custom_domain),
        )
        branding = convert.branding(row)
        assert branding is not None
        return tenancy_pb2.SetBrandingResponse(branding=branding)

    @rpc(*READERS)
    async def GetBranding(
        self, request: tenancy_pb2.GetBrandingRequest, context: Ctx
    ) -> tenancy_pb2.GetBrandingResponse:
        row = await self._tenants.get_branding(require_tenant_scope(request.tenant_id))
        return tenancy_pb2.GetBrandingResponse(branding=convert.branding(row) or tenancy_pb2.Branding())

    # users ----------------------------------------------------------------------------------------

    @rpc(*OWNER_ADMIN)
    async def CreateUser(
        self, request: tenancy_pb2.CreateUserRequest, context: Ctx
    ) -> tenancy_pb2.CreateUserResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.pattern(request.email, "email", EMAIL, "an email address")
        v.length(request.display_name, "display_name", 0, 128)
        roles = _roles_from_proto(request.roles, "roles", v)
        v.raise_if_any()
        return await self._access.create_user(current_principal(), tenant_id, request, roles)

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE, Role.VIEWER)
    async def ListUsers(
        self, request: tenancy_pb2.ListUsersRequest, context: Ctx
    ) -> tenancy_pb2.ListUsersResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        rows = await self._access.list_users(
            tenant_id, after=_cursor(request.page.page_token), limit=size + 1
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
        v = Validator()
        v.required(request.user_id, "user_id")
        roles = _roles_from_proto(request.roles, "roles", v)
        v.raise_if_any()
        row = await self._access.update_user_roles(current_principal(), request.user_id, roles)
        return tenancy_pb2.UpdateUserRolesResponse(user=convert.user(row))

    @rpc(*OWNER_ADMIN)
    async def DeleteUser(
        self, request: tenancy_pb2.DeleteUserRequest, context: Ctx
    ) -> tenancy_pb2.DeleteUserResponse:
        if not request.user_id:
            raise InvalidArgument(FieldViolation("user_id", "is required"))
        await self._access.delete_user(current_principal(), request.user_id)
        return tenancy_pb2.DeleteUserResponse()

    # API keys -------------------------------------------------------------------------------------

    @rpc(*OWNER_ADMIN)
    async def CreateApiKey(
        self, request: tenancy_pb2.CreateApiKeyRequest, context: Ctx
    ) -> tenancy_pb2.CreateApiKeyResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.length(request.name, "name", 1, 64)
        roles = _roles_from_proto(request.roles, "roles", v)
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        if expires_at is not None:
            v.check(expires_at > datetime.now(UTC), "expires_at", "must be in the future")
        v.raise_if_any()
        return await self._access.create_api_key(current_principal(), tenant_id, request, roles, expires_at)

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
    async def ListApiKeys(
        self, request: tenancy_pb2.ListApiKeysRequest, context: Ctx
    ) -> tenancy_pb2.ListApiKeysResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        rows = await self._access.list_api_keys(
            tenant_id,
            after=_cursor(request.page.page_token),
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
        if not request.api_key_id:
            raise InvalidArgument(FieldViolation("api_key_id", "is required"))
        row = await self._access.revoke_api_key(current_principal(), request.api_key_id, request.reason)
        return tenancy_pb2.RevokeApiKeyResponse(api_key=convert.api_key(row))

    @rpc(Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
    async def ListAuditRecords(
        self, request: tenancy_pb2.ListAuditRecordsRequest, context: Ctx
    ) -> tenancy_pb2.ListAuditRecordsResponse:
        tenant_id = require_tenant_scope(request.tenant_id)
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        after = page_position(request.page.page_token)
        time_range = request.time_range
        rows = await self._access.list_audit_records(
            tenant_id,
            after=after,
            limit=size + 1,
            start=time_range.start.ToDatetime(tzinfo=UTC) if time_range.HasField("start") else None,
            end=time_range.end.ToDatetime(tzinfo=UTC) if time_range.HasField("end") else None,
            actor_id=request.actor_id,
            action_prefix=request.action_prefix,
            resource_prefix=request.resource_prefix,
        )
        page, token = split_page(rows, size, lambda r: (r["record_id"],))
        return tenancy_pb2.ListAuditRecordsResponse(
            records=[convert.audit_record(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )


class AuthServicer(tenancy_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        access: AccessCommands,
        issuer: TokenIssuer,
        signing_key: SigningKey,
        extra_public_pems: list[str],
    ) -> None:
        self._access = access
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
        issued = await self._access.exchange_api_key(key_id, secret)
        return tenancy_pb2.ExchangeApiKeyResponse(
            access_token=issued.token,
            token_type="Bearer",
            expires_at=Timestamp(seconds=issued.expires_at),
            tenant_id=issued.tenant_id,
            roles=convert.roles_to_proto(sorted(issued.roles)),
            plan=issued.plan,
            tier=convert.TIERS[issued.tier],
            api_key_id=issued.key_id,
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

    @rpc(public=True)
    async def GetPortal(
        self, request: tenancy_pb2.GetPortalRequest, context: Ctx
    ) -> tenancy_pb2.GetPortalResponse:
        v = Validator()
        v.check(
            bool(request.slug) != bool(request.custom_domain),
            "slug",
            "give exactly one of slug and custom_domain",
        )
        if request.custom_domain:
            v.pattern(
                request.custom_domain.lower(), "custom_domain", HOSTNAME, "a hostname, e.g. portal.acme.com"
            )
        v.raise_if_any()
        row = await self._access.find_portal(slug=request.slug, custom_domain=request.custom_domain.lower())
        return tenancy_pb2.GetPortalResponse(
            slug=row["slug"],
            display_name=row["display_name"],
            logo_url=row["logo_url"],
            primary_color=row["primary_color"],
            secondary_color=row["secondary_color"],
            custom_domain=row["custom_domain"],
            onboarding_phase=convert.PHASES[row["onboarding_phase"]],
            tenant_id=row["tenant_id"],
            oidc_enabled=row["oidc_enabled"],
        )

    @rpc(*READERS)
    async def WhoAmI(self, request: tenancy_pb2.WhoAmIRequest, context: Ctx) -> tenancy_pb2.WhoAmIResponse:
        principal = current_principal()
        tenant = await self._access.caller_tenant(principal)
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
            user_id=principal.user_id,
            tenant_status=convert.STATUSES[tenant["status"]],
        )
