"""Translation between tenancy's rows and its protobuf messages (one place, used by api and events)."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_core import onboarding
from mevaas_core.auth import Role

TIERS = {
    "starter": common_pb2.TIER_STARTER,
    "professional": common_pb2.TIER_PROFESSIONAL,
    "enterprise": common_pb2.TIER_ENTERPRISE,
}
TIER_NAMES = {v: k for k, v in TIERS.items()}
ISOLATIONS = {"shared": common_pb2.ISOLATION_SHARED, "dedicated": common_pb2.ISOLATION_DEDICATED}
ISOLATION_NAMES = {v: k for k, v in ISOLATIONS.items()}
STATUSES = {
    "active": common_pb2.TENANT_STATUS_ACTIVE,
    "suspended": common_pb2.TENANT_STATUS_SUSPENDED,
    "deleted": common_pb2.TENANT_STATUS_DELETED,
}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}
PHASES = dict(onboarding.PROTO_OF_PHASE)
PHASE_NAMES = {v: k for k, v in PHASES.items()}
ROLES = {
    Role.OWNER: common_pb2.ROLE_OWNER,
    Role.ADMIN: common_pb2.ROLE_ADMIN,
    Role.TRADER: common_pb2.ROLE_TRADER,
    Role.VIEWER: common_pb2.ROLE_VIEWER,
    Role.COMPLIANCE: common_pb2.ROLE_COMPLIANCE,
    Role.PLATFORM_ADMIN: common_pb2.ROLE_PLATFORM_ADMIN,
}
ROLE_BY_PROTO = {v: k for k, v in ROLES.items()}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def plan_from_bytes(data: bytes) -> common_pb2.Plan:
    plan = common_pb2.Plan()
    plan.ParseFromString(data)
    return plan


def roles_to_proto(roles: list[str]) -> list[common_pb2.Role.ValueType]:
    return [ROLES[Role(r)] for r in roles]


def branding(row: asyncpg.Record | None) -> tenancy_pb2.Branding | None:
    if row is None:
        return None
    return tenancy_pb2.Branding(
        display_name=row["display_name"],
        logo_url=row["logo_url"],
        primary_color=row["primary_color"],
        secondary_color=row["secondary_color"],
        custom_domain=row["custom_domain"] or "",
    )


def tenant(row: asyncpg.Record, branding_row: asyncpg.Record | None = None) -> tenancy_pb2.Tenant:
    return tenancy_pb2.Tenant(
        tenant_id=row["tenant_id"],
        slug=row["slug"],
        display_name=row["display_name"],
        tier=TIERS[row["tier"]],
        isolation=ISOLATIONS[row["isolation"]],
        status=STATUSES[row["status"]],
        plan=plan_from_bytes(bytes(row["plan"])),
        onboarding_phase=PHASES[row["onboarding_phase"]],
        branding=branding(branding_row),
        contact_email=row["contact_email"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        suspended_reason=row["suspended_reason"],
        deleted_at=timestamp(row["deleted_at"]),
        version=row["version"],
    )


def onboarding_state(row: asyncpg.Record) -> common_pb2.OnboardingStateResponse:
    return common_pb2.OnboardingStateResponse(
        onboarding_phase=PHASES[row["onboarding_phase"]],
        status=STATUSES[row["status"]],
        plan=plan_from_bytes(bytes(row["plan"])),
        tier=TIERS[row["tier"]],
    )


def tenant_snapshot(
    row: asyncpg.Record, owner_user_ids: list[str], custom_domain: str
) -> events_pb2.TenantSnapshot:
    return events_pb2.TenantSnapshot(
        tenant_id=row["tenant_id"],
        slug=row["slug"],
        display_name=row["display_name"],
        tier=TIERS[row["tier"]],
        isolation=ISOLATIONS[row["isolation"]],
        status=STATUSES[row["status"]],
        plan=plan_from_bytes(bytes(row["plan"])),
        onboarding_phase=PHASES[row["onboarding_phase"]],
        owner_user_ids=owner_user_ids,
        custom_domain=custom_domain,
        version=row["version"],
    )


def user(row: asyncpg.Record) -> tenancy_pb2.User:
    return tenancy_pb2.User(
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        email=row["email"],
        display_name=row["display_name"],
        roles=roles_to_proto(row["roles"]),
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )


def api_key(row: asyncpg.Record) -> tenancy_pb2.ApiKey:
    return tenancy_pb2.ApiKey(
        api_key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        roles=roles_to_proto(row["roles"]),
        prefix=f"mvs_{row['key_id']}_",
        user_id=row["user_id"],
        created_at=timestamp(row["created_at"]),
        expires_at=timestamp(row["expires_at"]),
        last_used_at=timestamp(row["last_used_at"]),
        revoked=row["revoked_at"] is not None,
        revoked_at=timestamp(row["revoked_at"]),
        created_by=row["created_by"],
    )


def audit_record(row: asyncpg.Record) -> events_pb2.AuditRecord:
    return events_pb2.AuditRecord(
        event_id=row["event_id"],
        tenant_id=row["tenant_id"],
        occurred_at=timestamp(row["occurred_at"]),
        actor=events_pb2.Actor(
            kind=events_pb2.ActorKind.Value(row["actor_kind"]),
            id=row["actor_id"],
            tenant_id=row["actor_tenant_id"],
            roles=[common_pb2.Role.Value(r) for r in row["actor_roles"]],
        ),
        action=row["action"],
        resource=row["resource"],
        outcome=events_pb2.AuditOutcome.Value(row["outcome"]),
        details=json.loads(row["details"]) if isinstance(row["details"], str) else dict(row["details"]),
        idempotency_key=row["idempotency_key"],
        service=row["service"],
        request_id=row["request_id"],
    )
