"""The tenant operator (kopf) against kmock, a stateful Kubernetes API emulator over HTTP, with the
real helm binary rendering charts/tenant and a real NATS JetStream for tenancy's events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock
import kopf
import nats
import pytest
import pytest_asyncio

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_operator.config import OperatorConfig
from mevaas_operator.handlers import build_registry
from mevaas_operator.kube import KINDS, TENANT_KIND, KubeClient, NotFoundError
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path

pytestmark = pytest.mark.integration

DEADLINE = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kube(k8s_emulator: K8sEmulator) -> AsyncIterator[KubeClient]:
    client = KubeClient.connect(k8s_emulator.url)
    yield client
    client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator(k8s_emulator: K8sEmulator, nats_server: str, kube: KubeClient) -> AsyncIterator[str]:
    config = OperatorConfig(
        helm=str(helm_path()),
        tenant_chart=CHARTS / "tenant",
        kube_url=k8s_emulator.url,
        nats_url=nats_server,
        nats_durable=f"operator-{uuid.uuid4().hex[:12]}",
        retry_delay=0.5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(registry=build_registry(config), clusterwide=True, standalone=True, stop_flag=stop)
    )
    # Objects created while kmock is still replaying a new watch stream's initial state arrive
    # twice (replay and live), and kopf then waits for a change that never comes; start the tests
    # once the Tenant watch is streaming.
    await eventually(lambda: watching_tenants(k8s_emulator), "the operator watches Tenants")
    await asyncio.sleep(0.5)
    yield nats_server
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=30)


async def watching_tenants(k8s_emulator: K8sEmulator) -> bool:
    return any(
        r.params.get("watch") == "true" and r.url.path.endswith("/tenants")
        for r in list(k8s_emulator.handler)
    )


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll until `check` returns a truthy value (convergence, not speed, is under test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    last: Any = None
    while loop.time() < deadline:
        with contextlib.suppress(NotFoundError):
            last = await check()
            if last:
                return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"never converged: {what} (last: {last!r})")


async def get(kube: KubeClient, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    try:
        return await kube.get(KINDS.get(kind, TENANT_KIND), name, namespace)
    except NotFoundError:
        return None


async def names(kube: KubeClient, kind: str, namespace: str) -> set[str]:
    return {o["metadata"]["name"] for o in await kube.list(KINDS[kind], namespace)}


async def ready_at(kube: KubeClient, name: str, generation: int | None) -> dict[str, Any] | None:
    tenant = await get(kube, "Tenant", name)
    status = (tenant or {}).get("status") or {}
    if status.get("state") == "Ready" and status.get("observedGeneration") == generation:
        return tenant
    return None


def tenant_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mevaas.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "generation": 1},
        "spec": spec,
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
        "allow-nats",
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


async def test_dedicated_tier_gets_workers(operator: str, kube: KubeClient) -> None:
    spec = {**ACME, "tier": "enterprise", "isolation": "dedicated", "branding": {"primaryColor": "#112233"}}
    await kube.patch(TENANT_KIND, "acme", {"metadata": {"generation": 3}, "spec": spec})
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
            headers={"Nats-Msg-Id": f"{tenant_id}:1"},
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
            headers={"Nats-Msg-Id": f"{tenant_id}:2"},
        )

        async def namespace_gone() -> bool:
            return (
                await get(kube, "Tenant", slug) is None
                and await get(kube, "Namespace", f"tenant-{slug}") is None
            )

        await eventually(namespace_gone, "tenant.deleted removes the Tenant and its namespace")
    finally:
        await nc.close()
