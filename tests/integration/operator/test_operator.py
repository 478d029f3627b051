"""The tenant operator (kopf) against kmock, a stateful Kubernetes API emulator over HTTP, with the
real helm binary rendering charts/tenant and a real NATS JetStream for tenancy's events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import kmock
import nats
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.auth import SigningKey
from mevaas_core.bus.signing import HEADER_SIGNATURE, EventSigner
from mevaas_local.embedded import EmbeddedNats
from mevaas_operator.config import OperatorConfig
from mevaas_operator.kube import KINDS, TENANT_KIND, KubeClient
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path
from tests.fixtures.servers import HARNESS_USER, NatsAccess, platform_nats_users
from tests.integration.operator.cluster import SECRET_KIND, secret
from tests.integration.operator.support import eventually, get, names, ready_at, running_operator, tenant_body

pytestmark = pytest.mark.integration


# Tenancy's signing key: the operator acts only on tenant events it signed.
TENANCY_KEY = SigningKey.generate()


def rejected() -> float:
    """Tenant events the operator dropped as not signed by tenancy."""
    return REGISTRY.get_sample_value("mevaas_operator_rejected_events_total") or 0.0


def signed(subject: str, msg_id: str, data: bytes) -> dict[str, str]:
    return {
        "Nats-Msg-Id": msg_id,
        HEADER_SIGNATURE: EventSigner(TENANCY_KEY).signature(subject, msg_id, data),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kube(k8s_emulator: K8sEmulator) -> AsyncIterator[KubeClient]:
    client = KubeClient.connect(k8s_emulator.url)
    yield client
    client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsAccess]:
    """A NATS server of this module's own, with the platform's permission model. The operator
    consumes every `tenant.>` event of the TENANT stream from its start (as in production); on the
    session's shared server that stream holds every tenant other modules' tenancy published, which
    the operator must read (and drop as signed by another key) before this module's events, and
    those drops would count in the rejected-events metric the forgery test reads."""
    data_dir = tmp_path_factory.mktemp("operator-nats")
    server = EmbeddedNats(data_dir, server_name="operator-test", users=platform_nats_users())
    await server.start()
    try:
        yield NatsAccess(server.url, server.url_for(HARNESS_USER), server)
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator(
    k8s_emulator: K8sEmulator, operator_nats: NatsAccess, kube: KubeClient
) -> AsyncIterator[str]:
    nats_access = operator_nats
    config = OperatorConfig(
        helm=str(helm_path()),
        tenant_chart=CHARTS / "tenant",
        kube_url=k8s_emulator.url,
        # The operator's own bus identity (it may only consume TENANT).
        nats_url=nats_access.url_for("operator"),
        nats_durable=f"operator-{uuid.uuid4().hex[:12]}",
        event_public_keys=(TENANCY_KEY.public_pem(),),
        retry_delay=0.5,
    )
    async with running_operator(config, k8s_emulator):
        yield nats_access.harness_url


# A dedicated tenant's own Secrets (charts/tenant `workers.secrets`), by name and key.
WORKER_SECRETS = {
    "mevaas-tenant-db-strategy": "url",
    "mevaas-tenant-db-execution": "url",
    "mevaas-tenant-data-key": "ring",
    "mevaas-tenant-nats": "url",
    "mevaas-jwt": "public.pem",
}

ACME: dict[str, Any] = {
    "tenantId": "acme-id",
    "tier": "starter",
    "isolation": "shared",
    "owners": [
        {"kind": "User", "name": "alice@acme.example", "role": "owner"},
        {"kind": "User", "name": "bob@acme.example", "role": "viewer"},
    ],
    "network": {"egress": [{"cidr": "203.0.113.10/32", "ports": [{"port": 8545}]}]},
}


async def test_create_tenant_provisions_its_namespace(operator: str, kube: KubeClient) -> None:
    await kube.create(TENANT_KIND, tenant_body("acme", ACME))
    tenant = await eventually(lambda: ready_at(kube, "acme", 1), "acme Ready")

    (condition,) = tenant["status"]["conditions"]
    assert (
        condition["type"] == "Ready" and condition["status"] == "True" and condition["reason"] == "Succeeded"
    )
    assert tenant["status"]["namespace"] == "tenant-acme"
    assert tenant["status"]["tier"] == "starter"
    assert "mevaas.io/tenant-cleanup" in tenant["metadata"]["finalizers"]

    namespace = await get(kube, "Namespace", "tenant-acme")
    assert namespace is not None
    assert namespace["metadata"]["labels"]["mevaas.io/tenant"] == "acme"
    quota = await kube.get(KINDS["ResourceQuota"], "tenant-quota", "tenant-acme")
    assert quota["spec"]["hard"]["pods"] == "10"
    assert quota["spec"]["hard"]["requests.memory"] == "4Gi"
    limits = await kube.get(KINDS["LimitRange"], "tenant-limits", "tenant-acme")
    assert limits["spec"]["limits"][0]["max"] == {"cpu": "1", "memory": "1Gi"}
    assert await names(kube, "NetworkPolicy", "tenant-acme") == {
        "default-deny",
        "allow-same-namespace",
        "allow-dns",
        "allow-platform",
        "allow-tenant-egress",
    }
    egress = await kube.get(KINDS["NetworkPolicy"], "allow-tenant-egress", "tenant-acme")
    assert egress["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "203.0.113.10/32"}}]
    bindings = {b["metadata"]["name"]: b for b in await kube.list(KINDS["RoleBinding"], "tenant-acme")}
    assert set(bindings) == {"mevaas-tenant-owner", "mevaas-tenant-viewer"}
    assert bindings["mevaas-tenant-owner"]["subjects"][0]["name"] == "alice@acme.example"
    assert bindings["mevaas-tenant-owner"]["roleRef"]["name"] == "mevaas-tenant-owner"
    for binding in bindings.values():
        assert binding["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mevaas-operator"
    assert not await kube.list(KINDS["Deployment"], "tenant-acme")


async def test_tier_change_rerenders_and_prunes(operator: str, kube: KubeClient) -> None:
    spec = {**ACME, "tier": "professional", "owners": list(ACME["owners"])[:1], "network": {"egress": []}}
    await kube.patch(TENANT_KIND, "acme", {"metadata": {"generation": 2}, "spec": spec})
    tenant = await eventually(lambda: ready_at(kube, "acme", 2), "acme Ready at generation 2")

    assert tenant["status"]["tier"] == "professional"
    quota = await kube.get(KINDS["ResourceQuota"], "tenant-quota", "tenant-acme")
    assert quota["spec"]["hard"]["pods"] == "40"
    assert quota["metadata"]["labels"]["mevaas.io/tier"] == "professional"
    assert "allow-tenant-egress" not in await names(kube, "NetworkPolicy", "tenant-acme")
    assert await names(kube, "RoleBinding", "tenant-acme") == {"mevaas-tenant-owner"}


# Secrets only the execution worker mounts: the status must name them, not only strategy's.
MISSING_FOR_EXECUTION = ("mevaas-tenant-db-execution", "mevaas-tenant-data-key", "mevaas-tenant-nats")


async def test_dedicated_tier_gets_workers(operator: str, kube: KubeClient) -> None:
    spec = {**ACME, "tier": "enterprise", "isolation": "dedicated", "branding": {"primaryColor": "#112233"}}
    await kube.patch(TENANT_KIND, "acme", {"metadata": {"generation": 3}, "spec": spec})

    # Its workers need the tenant's own Secrets, which nobody has created yet: their pods cannot
    # start, so the Tenant is not Ready and its status says which Secret is missing.
    async def waiting() -> dict[str, Any] | None:
        tenant = await get(kube, "Tenant", "acme")
        status = (tenant or {}).get("status") or {}
        condition = (status.get("conditions") or [{}])[0]
        # Once the deployment controller has seen both (before, "generation N not observed yet")
        # and the kubelet has reported each one's failed mounts (a pass may see one pod's first).
        message = condition.get("message", "")
        seen = all(
            f"Deployment/{d}: 0/1 available, 1 updated (" in message for d in ("strategy", "execution")
        )
        named = all(f'secret "{missing}" not found' in message for missing in MISSING_FOR_EXECUTION)
        seen = seen and named
        if status.get("observedGeneration") == 3 and condition.get("reason") == "WorkloadsUnavailable":
            return status if seen else None
        return None

    status = await eventually(waiting, "acme waiting for its workers")
    assert status["state"] == "Provisioning"
    (condition,) = status["conditions"]
    assert condition["status"] == "False"
    assert await ready_at(kube, "acme", 3) is None

    # The SRE creates them (docs/operations.md, "Dedicated tenants see one tenant"): the pods start.
    for name, key in WORKER_SECRETS.items():
        await kube.create(SECRET_KIND, secret("tenant-acme", name, {key: "x"}))
    await eventually(lambda: ready_at(kube, "acme", 3), "acme Ready at generation 3")
    deployments = {d["metadata"]["name"]: d for d in await kube.list(KINDS["Deployment"], "tenant-acme")}
    assert set(deployments) == {"strategy", "execution"}
    template = deployments["execution"]["spec"]["template"]
    assert template["metadata"]["annotations"]["mevaas.io/tenant-id"] == "acme-id"
    branding = await kube.get(KINDS["ConfigMap"], "tenant-branding", "tenant-acme")
    assert branding["data"]["primaryColor"] == "#112233"


async def test_injected_api_failure_is_retried(
    operator: str, kube: KubeClient, k8s_emulator: K8sEmulator
) -> None:
    seen: list[int] = []

    def first_quota_read(request: kmock.Request) -> bool:
        # Fail exactly one read of globex's quota with a 503; later reads reach the emulator.
        if (
            request.method == "GET"
            and request.url.path.endswith("/namespaces/tenant-globex/resourcequotas/tenant-quota")
            and (not seen or seen[0] == request.id)
        ):
            seen[:1] = [request.id]
            return True
        return False

    failure = k8s_emulator.handler[first_quota_read] << 503
    await kube.create(TENANT_KIND, tenant_body("globex", {"tier": "starter"}))
    tenant = await eventually(lambda: ready_at(kube, "globex", 1), "globex Ready after a 503")

    assert len(list(failure)) == 1
    assert tenant["status"]["conditions"][0]["reason"] == "Succeeded"
    quota = await kube.get(KINDS["ResourceQuota"], "tenant-quota", "tenant-globex")
    assert quota["spec"]["hard"]["pods"] == "10"


async def test_a_terminating_namespace_is_retried(
    operator: str, kube: KubeClient, k8s_emulator: K8sEmulator
) -> None:
    """A namespace being deleted (a Tenant re-created right after its deletion) refuses new objects
    with a 403 until it is gone: retried as temporary, never a permanent failure."""
    seen: list[int] = []

    def first_quota_create(request: kmock.Request) -> bool:
        if (
            request.method == "POST"
            and request.url.path.endswith("/namespaces/tenant-hooli/resourcequotas")
            and (not seen or seen[0] == request.id)
        ):
            seen[:1] = [request.id]
            return True
        return False

    def terminating() -> None:
        raise kmock.KubernetesError(
            status=403,
            reason="Forbidden",
            message='resourcequotas "tenant-quota" is forbidden: unable to create new content in '
            "namespace tenant-hooli because it is being terminated",
        )

    retried = REGISTRY.get_sample_value(
        "mevaas_operator_reconciles_total", {"outcome": "retried", "trigger": "change"}
    )
    failure = k8s_emulator.handler[first_quota_create] << terminating
    await kube.create(TENANT_KIND, tenant_body("hooli", {"tier": "starter"}))
    tenant = await eventually(lambda: ready_at(kube, "hooli", 1), "hooli Ready after a 403")

    assert len(list(failure)) == 1
    assert (
        REGISTRY.get_sample_value(
            "mevaas_operator_reconciles_total", {"outcome": "retried", "trigger": "change"}
        )
        or 0.0
    ) >= (retried or 0.0) + 1
    assert tenant["status"]["conditions"][0]["reason"] == "Succeeded"


async def test_delete_removes_everything(operator: str, kube: KubeClient) -> None:
    await kube.delete(TENANT_KIND, "acme")

    async def gone() -> bool:
        return await get(kube, "Tenant", "acme") is None

    await eventually(gone, "acme Tenant released by its finalizer")
    assert await get(kube, "Namespace", "tenant-acme") is None
    for kind in (
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "RoleBinding",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
    ):
        assert await kube.list(KINDS[kind], "tenant-acme") == [], kind
    assert await get(kube, "Namespace", "tenant-globex") is not None


async def test_tenant_created_event_creates_the_tenant(operator: str, kube: KubeClient) -> None:
    tenant_id = str(uuid.uuid4())
    slug = f"ev-{tenant_id[:8]}"
    event = events_pb2.TenantEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        kind=events_pb2.TENANT_EVENT_KIND_CREATED,
        tenant=events_pb2.TenantSnapshot(
            tenant_id=tenant_id,
            slug=slug,
            display_name="Event Capital",
            tier=common_pb2.TIER_PROFESSIONAL,
            isolation=common_pb2.ISOLATION_SHARED,
            owner_user_ids=["user-1"],
            version=1,
        ),
    )
    nc = await nats.connect(operator)
    try:
        js = nc.jetstream()
        await js.publish(
            f"tenant.{tenant_id}.created",
            event.SerializeToString(),
            headers=signed(f"tenant.{tenant_id}.created", f"{tenant_id}:1", event.SerializeToString()),
        )

        tenant = await eventually(lambda: get(kube, "Tenant", slug), "Tenant from tenant.created")
        assert tenant["spec"]["tenantId"] == tenant_id
        assert tenant["spec"]["tier"] == "professional"
        assert tenant["spec"]["owners"] == [{"kind": "User", "name": "user-1", "role": "owner"}]
        # The operator then provisions it like any other Tenant (generation is absent here).
        await eventually(lambda: ready_at(kube, slug, None), "event tenant Ready")
        quota = await kube.get(KINDS["ResourceQuota"], "tenant-quota", f"tenant-{slug}")
        assert quota["spec"]["hard"]["pods"] == "40"

        deleted = events_pb2.TenantEvent()
        deleted.CopyFrom(event)
        deleted.kind = events_pb2.TENANT_EVENT_KIND_DELETED
        deleted.tenant.version = 2
        await js.publish(
            f"tenant.{tenant_id}.deleted",
            deleted.SerializeToString(),
            headers=signed(f"tenant.{tenant_id}.deleted", f"{tenant_id}:2", deleted.SerializeToString()),
        )

        async def namespace_gone() -> bool:
            return (
                await get(kube, "Tenant", slug) is None
                and await get(kube, "Namespace", f"tenant-{slug}") is None
            )

        await eventually(namespace_gone, "tenant.deleted removes the Tenant and its namespace")
    finally:
        await nc.close()


async def test_a_forged_tenant_deletion_changes_nothing(operator: str, kube: KubeClient) -> None:
    """Anyone allowed on the bus (here the unrestricted test harness) can put a deletion in the
    TENANT stream; unsigned or signed with another key, the operator drops it and deletes nothing."""
    tenant_id = str(uuid.uuid4())
    slug = f"fg-{tenant_id[:8]}"
    event = events_pb2.TenantEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        kind=events_pb2.TENANT_EVENT_KIND_CREATED,
        tenant=events_pb2.TenantSnapshot(
            tenant_id=tenant_id, slug=slug, tier=common_pb2.TIER_STARTER, owner_user_ids=["u"], version=1
        ),
    )
    subject = f"tenant.{tenant_id}.created"
    nc = await nats.connect(operator)
    try:
        js = nc.jetstream()
        await js.publish(
            subject,
            event.SerializeToString(),
            headers=signed(subject, f"{tenant_id}:1", event.SerializeToString()),
        )
        await eventually(lambda: get(kube, "Tenant", slug), "Tenant from a signed tenant.created")
        await eventually(lambda: ready_at(kube, slug, None), "signed tenant Ready")
        deleted = events_pb2.TenantEvent()
        deleted.CopyFrom(event)
        deleted.kind = events_pb2.TENANT_EVENT_KIND_DELETED
        deleted.tenant.version = 2
        data = deleted.SerializeToString()
        subject = f"tenant.{tenant_id}.deleted"
        impostor = EventSigner(SigningKey.generate()).signature(subject, f"{tenant_id}:2", data)
        before = rejected()
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"{tenant_id}:2"})
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"{tenant_id}:3", HEADER_SIGNATURE: impostor})
        # Replayed signature on another subject: the signature covers the subject.
        other = f"tenant.{uuid.uuid4()}.deleted"
        await js.publish(
            other, data, headers=signed(subject, f"{tenant_id}:4", data) | {"Nats-Msg-Id": f"{tenant_id}:4"}
        )

        async def all_dropped() -> bool:
            return rejected() >= before + 3

        await eventually(all_dropped, "the operator dropped the three forged deletions")
        assert await get(kube, "Tenant", slug) is not None
        assert await get(kube, "Namespace", f"tenant-{slug}") is not None
    finally:
        await nc.close()


async def test_a_foreign_namespace_is_never_adopted(operator: str, kube: KubeClient) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "tenant-squatter", "labels": {"team": "x"}},
    }
    await kube.create(KINDS["Namespace"], foreign)
    await kube.create(TENANT_KIND, tenant_body("squatter", {"tier": "starter"}))

    async def failed() -> dict[str, Any] | None:
        tenant = await get(kube, "Tenant", "squatter")
        return tenant if ((tenant or {}).get("status") or {}).get("state") == "Failed" else None

    tenant = await eventually(failed, "squatter Failed")
    assert "not adopting" in tenant["status"]["conditions"][0]["message"]
    namespace = await kube.get(KINDS["Namespace"], "tenant-squatter")
    assert namespace["metadata"]["labels"] == {"team": "x"}
    assert await kube.list(KINDS["ResourceQuota"], "tenant-squatter") == []
    # Deleting the Tenant leaves the namespace it never owned.
    await kube.delete(TENANT_KIND, "squatter")
    await eventually(lambda: _gone(kube, "squatter"), "squatter released")
    assert await get(kube, "Namespace", "tenant-squatter") is not None


async def _gone(kube: KubeClient, name: str) -> bool:
    return await get(kube, "Tenant", name) is None


def test_a_403_from_a_terminating_namespace_is_temporary() -> None:
    from mevaas_operator.kube import _is_temporary

    terminating = (
        b'{"message":"unable to create new content in namespace tenant-x because it is being terminated"}'
    )
    assert _is_temporary(403, terminating)
    assert not _is_temporary(403, b'{"message":"forbidden: User cannot create resource"}')
    assert _is_temporary(503) and not _is_temporary(422)
