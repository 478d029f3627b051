"""Tenancy service wiring: the token signing key, the servicers, the outbox relay, and the
platform-admin bootstrap key."""

from __future__ import annotations

from pathlib import Path

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import PLATFORM_TENANT_ID, Role, SigningKey, TokenIssuer, TokenVerifier
from mevaas_core.config import ServiceSettings
from mevaas_core.db import platform_transaction
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec
from mevaas_tenancy import store
from mevaas_tenancy.api import AuthServicer, TenancyStore, TenantServicer
from mevaas_tenancy.domain import api_keys, plans
from mevaas_tenancy.events import SCHEMA


class TenancySettings(ServiceSettings):
    service_name: str = "tenancy"
    # Ed25519 private key (PEM, or a path to one) that signs access tokens.
    jwt_private_key: str
    token_ttl_seconds: int = 900
    # Optional `mvs_<id>_<secret>` key that is made the platform admin's key at start (bootstrap).
    bootstrap_admin_key: str = ""

    def signing_key(self) -> SigningKey:
        pem = self.jwt_private_key
        return SigningKey.from_pem(pem if "BEGIN" in pem else Path(pem).read_text())


class TenancyRuntime(ServiceRuntime[TenancySettings]):
    name = "tenancy"

    def verifier(self) -> TokenVerifier:
        # Tenancy trusts its own signing key in addition to any configured verification keys.
        verifier = super().verifier()
        verifier.add_key(self.settings.signing_key().public_pem())
        return verifier

    async def setup(self) -> None:
        key = self.settings.signing_key()
        issuer = TokenIssuer(
            key,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            ttl_seconds=self.settings.token_ttl_seconds,
        )
        db = TenancyStore(self.pool)
        if self.settings.bootstrap_admin_key:
            await ensure_platform_admin_key(self, self.settings.bootstrap_admin_key)
        self.add_servicer(
            TenantServicer(db),
            tenancy_pb2_grpc.add_TenantServiceServicer_to_server,
            tenancy_pb2.DESCRIPTOR.services_by_name["TenantService"],
        )
        self.add_servicer(
            AuthServicer(db, issuer, key, self.settings.public_key_pems()),
            tenancy_pb2_grpc.add_AuthServiceServicer_to_server,
            tenancy_pb2.DESCRIPTOR.services_by_name["AuthService"],
        )
        relay = OutboxRelay(self.pool, SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)


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
