"""Tenancy service wiring: the token signing key, the servicers, the outbox relay, and the
platform-admin bootstrap key."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core import subjects
from mevaas_core.auth import PLATFORM_TENANT_ID, Role, SigningKey, TokenIssuer, TokenVerifier
from mevaas_core.bus import Delivery, RequestContext, ServiceError
from mevaas_core.bus.signing import EventSigner
from mevaas_core.config import ConfigError, ServiceSettings
from mevaas_core.db import platform_transaction
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_tenancy import convert, store
from mevaas_tenancy.api import AuthServicer, TenantServicer
from mevaas_tenancy.commands import AccessCommands, TenantCommands
from mevaas_tenancy.domain import api_keys, plans
from mevaas_tenancy.events import SCHEMA, keep_audit_record
from mevaas_tenancy.signin.api import SignInServicer
from mevaas_tenancy.signin.commands import SignInCommands
from mevaas_tenancy.signin.oidc import OidcClient
from mevaas_tenancy.store import TenancyStore


class TenancySettings(ServiceSettings):
    service_name: str = "tenancy"
    # Ed25519 private key (PEM, or a path to one) that signs access tokens.
    jwt_private_key: str
    token_ttl_seconds: int = 900
    # Optional `mvs_<id>_<secret>` key that is made the platform admin's key at start (bootstrap).
    bootstrap_admin_key: str = ""
    # The platform admins' plan: calls per second and burst, across the fleet.
    platform_admin_rate_per_second: float = Field(default=1000.0, gt=0)
    platform_admin_burst: int = Field(default=2000, ge=1)
    # Durable consumer that keeps every service's audit records (audit.*.record) in the trail.
    audit_durable: str = "tenancy-audit-trail"
    # How long a person's portal session lasts after signing in (its tokens still live 15 min).
    user_session_ttl_seconds: int = Field(default=12 * 3600, ge=60)

    def signing_key(self) -> SigningKey:
        pem = self.jwt_private_key
        return SigningKey.from_pem(pem if "BEGIN" in pem else Path(pem).read_text())


class TenancyRuntime(ServiceRuntime[TenancySettings]):
    name = "tenancy"
    erasure = store.ERASURE

    def verifier(self) -> TokenVerifier:
        # Tenancy trusts its own signing key in addition to any configured verification keys.
        verifier = super().verifier()
        verifier.add_key(self.settings.signing_key().public_pem())
        return verifier

    async def setup(self) -> None:
        if self.settings.token_ttl_seconds > self.settings.jwt_max_lifetime_seconds:
            raise ConfigError(
                "TOKEN_TTL_SECONDS exceeds JWT_MAX_LIFETIME_SECONDS: no service would accept the tokens"
            )
        key = self.settings.signing_key()
        # The operator acts on tenancy's events only when they carry this signature.
        self.bus.signer = EventSigner(key)
        issuer = TokenIssuer(
            key,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            ttl_seconds=self.settings.token_ttl_seconds,
        )
        db = TenancyStore(self.pool)
        access = AccessCommands(
            db,
            issuer,
            admin_rate=(self.settings.platform_admin_rate_per_second, self.settings.platform_admin_burst),
        )
        if self.settings.bootstrap_admin_key:
            await ensure_platform_admin_key(self, self.settings.bootstrap_admin_key)
        tenants = TenantCommands(db)

        async def onboarding_state(
            _: common_pb2.OnboardingStateRequest, ctx: RequestContext
        ) -> common_pb2.OnboardingStateResponse:
            # Other services gate capabilities by the phase (mevaas_core.onboarding).
            if not ctx.tenant_id:
                raise ServiceError(400, "the request names no tenant")
            row = await tenants.find_tenant(ctx.tenant_id)
            if row is None:
                raise ServiceError(404, "unknown tenant")
            return convert.onboarding_state(row)

        onboarding = await self.bus.serve(
            subjects.TENANCY_ONBOARDING_STATE,
            "tenancy-onboarding",
            common_pb2.OnboardingStateRequest,
            onboarding_state,
        )
        self.on_stop(onboarding.stop)
        self.add_servicer(
            TenantServicer(tenants, access),
            tenancy_pb2_grpc.add_TenantServiceServicer_to_server,
            tenancy_pb2.DESCRIPTOR.services_by_name["TenantService"],
        )
        self.add_servicer(
            AuthServicer(access, issuer, key, self.settings.public_key_pems()),
            tenancy_pb2_grpc.add_AuthServiceServicer_to_server,
            tenancy_pb2.DESCRIPTOR.services_by_name["AuthService"],
        )
        oidc_client = OidcClient()
        self.on_stop(oidc_client.close)
        self.add_servicer(
            SignInServicer(
                SignInCommands(
                    db, issuer, oidc_client, session_ttl_seconds=self.settings.user_session_ttl_seconds
                )
            ),
            tenancy_pb2_grpc.add_SignInServiceServicer_to_server,
            tenancy_pb2.DESCRIPTOR.services_by_name["SignInService"],
        )
        relay = OutboxRelay(self.pool, SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)

        async def keep(record: events_pb2.AuditRecord, delivery: Delivery) -> None:
            await keep_audit_record(self.pool, record, delivery)

        trail = await self.bus.subscribe(
            "AUDIT",
            self.settings.audit_durable,
            "audit.*.record",
            events_pb2.AuditRecord,
            keep,
            concurrency=8,
        )
        self.on_stop(trail.stop)


async def ensure_platform_admin_key(runtime: TenancyRuntime, plaintext: str) -> None:
    """Create the platform tenant and its admin key once; later starts change nothing."""
    key_id, secret = api_keys.split_api_key(plaintext)
    async with platform_transaction(runtime.pool) as conn:
        if await store.get_tenant(conn, PLATFORM_TENANT_ID) is None:
            await store.insert_tenant(
                conn,
                tenant_id=PLATFORM_TENANT_ID,
                slug="platform",
                display_name="MEVaaS platform",
                contact_email="",
                tier="enterprise",
                isolation="dedicated",
                plan=plans.standard_plan(common_pb2.TIER_ENTERPRISE).SerializeToString(deterministic=True),
            )
        if await store.get_api_key(conn, key_id) is None:
            key = api_keys.api_key_from_secret(key_id, secret)
            await store.insert_api_key(
                conn,
                key_id=key.key_id,
                tenant_id=PLATFORM_TENANT_ID,
                name="bootstrap platform admin",
                secret_hash=key.secret_hash,
                roles=[Role.PLATFORM_ADMIN.value],
                user_id="",
                created_by="bootstrap",
                expires_at=None,
            )


SERVICE = ServiceSpec(
    name="tenancy",
    module="mevaas_tenancy",
    schema=SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    order=10,
    needs=("JWT_PRIVATE_KEY", "BOOTSTRAP_ADMIN_KEY"),
)


def run() -> None:
    main(TenancyRuntime, TenancySettings)
