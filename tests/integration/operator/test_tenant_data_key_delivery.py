"""The tenant data key delivered by the operator (mevaas_operator.data_keys): execution's own
answer (mevaas_execution.keys.delivery) served on the session's real NATS as the `execution`
identity, on a real PostgreSQL with execution's schema, and the operator on kmock as the
`operator` identity. A dedicated Tenant gets Secret `mevaas-tenant-data-key` holding exactly its
data key (which opens its wallets and not another tenant's); the key crossed the bus sealed; no
other service identity may ask for it; once the data key is rotated the next reconcile delivers the
new version and rolls the worker's pods onto it; moved to a shared tier, the Secret goes."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import pytest
import pytest_asyncio

from mevaas.execution.v1 import execution_pb2
from mevaas_chain.keystore import KeyRing, KeystoreError, SecretKey, decrypt_private_key, encrypt_private_key
from mevaas_core import sealed, subjects
from mevaas_core.auth import SigningKey
from mevaas_core.bus import Bus, RemoteError
from mevaas_core.db import create_pool, provision_service_database, tenant_transaction
from mevaas_core.migrations import apply_migrations
from mevaas_execution.keys import TenantKeys
from mevaas_execution.keys.data_key_rotation import rotate_tenant_key
from mevaas_execution.keys.delivery import TenantKeyDelivery
from mevaas_execution.wallets import keyring_from_settings
from mevaas_local.embedded import EmbeddedNats
from mevaas_operator.config import OperatorConfig
from mevaas_operator.credentials import DATA_KEY_VERSION_ANNOTATION
from mevaas_operator.kube import KINDS, SECRET_KIND, TENANT_KIND, KubeClient, NotFoundError
from tests.fixtures.execution import EXECUTION_KEK
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path
from tests.fixtures.platform import service_passwords
from tests.fixtures.servers import HARNESS_USER, NatsAccess, platform_nats_users
from tests.integration.operator.support import eventually, get, running_operator, tenant_body

pytestmark = pytest.mark.integration

# No event of this test is signed with it: the operator's tenant-event consumer acts on none.
TENANCY_KEY = SigningKey.generate()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsAccess]:
    """A NATS server of this module's own with the platform's permission model (so the operator
    does not wade through every tenant event the session's other modules published)."""
    server = EmbeddedNats(
        tmp_path_factory.mktemp("data-key-nats"), server_name="data-key-test", users=platform_nats_users()
    )
    await server.start()
    try:
        yield NatsAccess(server.url, server.url_for(HARNESS_USER), server)
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(postgres_server: str) -> AsyncIterator[asyncpg.Pool]:
    from mevaas_execution.server import SERVICE

    dsns = await provision_service_database(
        postgres_server, "execution", *service_passwords(postgres_server, "execution")
    )
    assert SERVICE.migrations is not None
    await apply_migrations(dsns.owner_dsn, "execution", SERVICE.migrations)
    pool = await create_pool(dsns.app_dsn, platform_dsn=dsns.platform_dsn, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def platform_keys() -> KeyRing:
    return keyring_from_settings(EXECUTION_KEK, "kek-1")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key_service(
    module_nats: NatsAccess, pool: asyncpg.Pool, platform_keys: KeyRing
) -> AsyncIterator[None]:
    """Execution's answer on the subject, as the platform's execution serves it (its identity)."""
    bus = await Bus.connect(module_nats.url_for("execution"), "execution-keys-test")
    service = await bus.serve(
        subjects.KEYS_TENANT_DATA_KEY,
        "execution-tenant-keys",
        execution_pb2.TenantDataKeyRequest,
        TenantKeyDelivery(pool, platform_keys).answer,
    )
    yield
    await service.stop()
    await bus.close()


async def wallet_of(pool: asyncpg.Pool, platform_keys: KeyRing, tenant_id: str) -> Any:
    """A wallet record sealed as CreateWallet seals it (under the tenant's data key)."""
    async with tenant_transaction(pool, tenant_id) as conn:
        ring = await TenantKeys(platform_keys).sealing_ring(conn, tenant_id)
    return encrypt_private_key(tenant_id, SecretKey.generate(), ring)


async def get_secret(kube: KubeClient, name: str) -> dict[str, Any] | None:
    try:
        return await kube.get(SECRET_KIND, name, "tenant-globex")
    except NotFoundError:
        return None


async def test_the_operator_delivers_the_tenant_data_key(
    key_service: None,
    pool: asyncpg.Pool,
    platform_keys: KeyRing,
    module_nats: NatsAccess,
    k8s_emulator: K8sEmulator,
) -> None:
    config = OperatorConfig(
        helm=str(helm_path()),
        tenant_chart=CHARTS / "tenant",
        kube_url=k8s_emulator.url,
        nats_url=module_nats.url_for("operator"),
        nats_durable=f"operator-{uuid.uuid4().hex[:12]}",
        event_public_keys=(TENANCY_KEY.public_pem(),),
        retry_delay=0.5,
        tenant_data_keys=True,
    )
    kube = KubeClient.connect(k8s_emulator.url)
    tenant_id, other = f"globex-{uuid.uuid4()}", f"other-{uuid.uuid4()}"
    spec = {"tenantId": tenant_id, "tier": "enterprise", "isolation": "dedicated"}
    try:
        async with running_operator(config, k8s_emulator):
            await kube.create(TENANT_KIND, tenant_body("globex", spec))
            secret = await eventually(
                lambda: get_secret(kube, "mevaas-tenant-data-key"), "the data key Secret written"
            )
            ring_text = base64.b64decode(secret["data"]["ring"]).decode()
            assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mevaas-operator"
            # The worker's whole ring: the tenant's data key, no KEK.
            ring = keyring_from_settings(ring_text, "kek-1")
            assert ring.current.startswith("tdk-") and "kek-1" not in ring
            mine, theirs = (
                await wallet_of(pool, platform_keys, tenant_id),
                await wallet_of(pool, platform_keys, other),
            )
            assert mine.kek_id == ring.current
            decrypt_private_key(mine, ring)  # opens the tenant's own wallet
            with pytest.raises(KeystoreError):
                decrypt_private_key(theirs, ring)
            # The same key at every reconcile (the wallets are under it): a tier-preserving
            # change rewrites the Secret with the same ring.
            await kube.patch(
                TENANT_KIND, "globex", {"metadata": {"generation": 2}, "spec": {**spec, "displayName": "G"}}
            )

            async def reconciled_twice() -> bool:
                tenant = await get(kube, "Tenant", "globex")
                return bool(tenant and (tenant.get("status") or {}).get("observedGeneration") == 2)

            await eventually(reconciled_twice, "the change reconciled")
            again = await get_secret(kube, "mevaas-tenant-data-key")
            assert again is not None and base64.b64decode(again["data"]["ring"]).decode() == ring_text
            # The render never carries the key (it is not a value of the tenant chart), only the
            # version the worker mounts.
            for kind in ("ConfigMap", "Deployment"):
                assert ring_text.split(":", 1)[1] not in str(await kube.list(KINDS[kind], "tenant-globex"))
            assert await data_key_version(kube) == ring.current

            # Rotated: the next reconcile delivers the new version and rolls the worker onto it.
            rotated = await rotate_tenant_key(
                pool, platform_keys, tenant_id, actor="sre", from_key_id=ring.current
            )
            await kube.patch(
                TENANT_KIND, "globex", {"metadata": {"generation": 3}, "spec": {**spec, "displayName": "H"}}
            )

            async def delivered() -> bool:
                found = await get_secret(kube, "mevaas-tenant-data-key")
                text = base64.b64decode((found or {}).get("data", {}).get("ring", "")).decode()
                return (
                    text.startswith(f"{rotated.key_id}:") and await data_key_version(kube) == rotated.key_id
                )

            await eventually(delivered, "the rotated data key delivered and the worker rolled")
            new_ring = keyring_from_settings(
                base64.b64decode(
                    (await get_secret(kube, "mevaas-tenant-data-key") or {})["data"]["ring"]
                ).decode(),
                "kek-1",
            )
            assert ring.current not in new_ring and new_ring.current == rotated.key_id

            await kube.patch(
                TENANT_KIND,
                "globex",
                {"metadata": {"generation": 4}, "spec": {**spec, "isolation": "shared"}},
            )

            async def removed() -> bool:
                return await get_secret(kube, "mevaas-tenant-data-key") is None

            await eventually(removed, "the data key Secret removed once the tenant is shared")
            await kube.delete(TENANT_KIND, "globex")
            await eventually(lambda: _gone(kube), "globex released")
    finally:
        kube.close()


async def data_key_version(kube: KubeClient) -> str | None:
    """The data key version on the execution worker's pod template."""
    deployment = await kube.get(KINDS["Deployment"], "execution", "tenant-globex")
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(DATA_KEY_VERSION_ANNOTATION)


async def _gone(kube: KubeClient) -> bool:
    return await get(kube, "Tenant", "globex") is None


async def test_the_answer_is_sealed_and_only_the_operator_may_ask(
    key_service: None, module_nats: NatsAccess
) -> None:
    tenant_id = f"initrode-{uuid.uuid4()}"
    recipient = sealed.Recipient()
    request = execution_pb2.TenantDataKeyRequest(recipient_public_key=recipient.public_key)
    operator = await Bus.connect(module_nats.url_for("operator"), "operator-keys-test")
    try:
        answer = await operator.request(
            subjects.KEYS_TENANT_DATA_KEY, request, execution_pb2.TenantDataKeyResponse, tenant_id=tenant_id
        )
        # On the wire: a key id and ciphertext, never the key (it opens only with the request's key
        # pair and for this tenant and key id).
        box = sealed.Sealed(answer.sender_public_key, answer.sealed_ring)
        ring = recipient.open(box, subjects.tenant_data_key_context(tenant_id, answer.key_id)).decode()
        assert ring.startswith(answer.key_id + ":")
        assert ring.split(":", 1)[1].encode() not in answer.SerializeToString()
        with pytest.raises(sealed.SealError):
            recipient.open(box, subjects.tenant_data_key_context("someone-else", answer.key_id))
        with pytest.raises(sealed.SealError):
            sealed.Recipient().open(box, subjects.tenant_data_key_context(tenant_id, answer.key_id))
        # Bad requests are answered 400, never 500.
        for bad, tenant in ((b"short", tenant_id), (recipient.public_key, "")):
            with pytest.raises(RemoteError) as refused:
                await operator.request(
                    subjects.KEYS_TENANT_DATA_KEY,
                    execution_pb2.TenantDataKeyRequest(recipient_public_key=bad),
                    execution_pb2.TenantDataKeyResponse,
                    tenant_id=tenant or None,
                )
            assert refused.value.code == 400
    finally:
        await operator.close()
    # Every other service identity (strategy and analytics may ask rpc.execution.>) is refused by
    # the server: the request is never delivered.
    for service in ("strategy", "analytics", "risk", "tenancy", "gateway"):
        nc = await nats.connect(module_nats.url_for(service), inbox_prefix=f"_INBOX_{service}")
        try:
            with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
                await nc.request(subjects.KEYS_TENANT_DATA_KEY, request.SerializeToString(), timeout=1.0)
        finally:
            await nc.close()
        assert module_nats.violations(service), f"{service} was not refused"
