"""The platform chart's lifecycle hooks (mevaas_operator.lifecycle) against kmock: the pre-upgrade
CRD apply (server-side, the chart's own CRD) and the pre-delete uninstall (with the operator
running its finalizer removes each Tenant's namespace; without it the hook tears them down and
releases the finalizer, never touching a namespace the operator did not create)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
import pytest_asyncio

from mevaas_operator.config import FINALIZER, OperatorConfig
from mevaas_operator.kube import CRD_KIND, KINDS, TENANT_KIND, KubeClient
from mevaas_operator.lifecycle import _main, apply_crds, load_crds, uninstall
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path
from tests.integration.operator.support import eventually, get, ready_at, running_operator, tenant_body

pytestmark = pytest.mark.integration

CRDS = CHARTS / "mevaas" / "crds"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kube(k8s_emulator: K8sEmulator) -> AsyncIterator[KubeClient]:
    k8s_emulator.handler.resources[
        kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    ] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "create", "patch"}
    )
    client = KubeClient.connect(k8s_emulator.url)
    yield client
    client.close()


def crd_patches(k8s_emulator: K8sEmulator) -> list[kmock.Request]:
    return [
        r
        for r in list(k8s_emulator.handler)
        if r.method == "PATCH" and "/customresourcedefinitions/" in r.url.path
    ]


async def test_apply_crds_creates_then_applies_server_side(
    kube: KubeClient, k8s_emulator: K8sEmulator
) -> None:
    (crd,) = load_crds(CRDS)
    assert await apply_crds(kube, [crd]) == ["tenants.mevaas.io: created"]
    live = await kube.get(CRD_KIND, "tenants.mevaas.io")
    assert live["spec"]["versions"] == crd["spec"]["versions"]

    # A new chart version adds a printer column: the hook applies it over the installed CRD.
    newer = copy.deepcopy(crd)
    columns: list[dict[str, Any]] = newer["spec"]["versions"][0].setdefault("additionalPrinterColumns", [])
    columns.append({"name": "Added", "type": "string", "jsonPath": ".status.added"})
    assert await apply_crds(kube, [newer]) == ["tenants.mevaas.io: applied"]
    live = await kube.get(CRD_KIND, "tenants.mevaas.io")
    assert live["spec"]["versions"][0]["additionalPrinterColumns"][-1]["name"] == "Added"
    (patch,) = crd_patches(k8s_emulator)
    assert patch.headers["Content-Type"] == "application/apply-patch+yaml"
    assert patch.params["fieldManager"] == "mevaas-chart" and patch.params["force"] == "true"

    # The Job's command line: the chart's crds/ directory, exit 0.
    assert await _main(["--kube-url", k8s_emulator.url, "apply-crds", str(CRDS)]) == 0
    assert len(crd_patches(k8s_emulator)) == 2


async def test_apply_crds_refuses_a_directory_without_crds(k8s_emulator: K8sEmulator, tmp_path: Any) -> None:
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert await _main(["--kube-url", k8s_emulator.url, "apply-crds", str(tmp_path)]) == 1
    assert await _main(["--kube-url", k8s_emulator.url, "apply-crds", str(tmp_path / "empty")]) == 1


async def test_uninstall_with_the_operator_running(k8s_emulator: K8sEmulator, kube: KubeClient) -> None:
    config = OperatorConfig(
        helm=str(helm_path()), tenant_chart=CHARTS / "tenant", kube_url=k8s_emulator.url, retry_delay=0.5
    )
    async with running_operator(config, k8s_emulator):
        for name in ("one", "two"):
            await kube.create(TENANT_KIND, tenant_body(name, {"tier": "starter"}))
        await eventually(lambda: both_ready(kube), "one and two Ready")
        done = await uninstall(kube, timeout=60, poll=0.2)
    assert sorted(done.deleted) == ["one", "two"] and done.forced == []
    assert await kube.list(TENANT_KIND) == []
    for name in ("one", "two"):
        assert await get(kube, "Namespace", f"tenant-{name}") is None
        assert await kube.list(KINDS["ResourceQuota"], f"tenant-{name}") == []


async def both_ready(kube: KubeClient) -> bool:
    return all([await ready_at(kube, "one", 1), await ready_at(kube, "two", 1)])


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


async def test_uninstall_when_the_operator_is_gone(kube: KubeClient) -> None:
    """No operator serves the finalizer: after the timeout the hook deletes the namespace the
    operator created and releases the Tenant; a squatter's namespace is left alone."""
    for name in ("orphan", "squatted"):
        body = tenant_body(name, {"tier": "starter"})
        body["metadata"]["finalizers"] = [FINALIZER, "example.com/other"]
        await kube.create(TENANT_KIND, body)
    owner = {"mevaas.io/tenant": "orphan", "app.kubernetes.io/managed-by": "mevaas-operator"}
    await kube.create(KINDS["Namespace"], namespace("tenant-orphan", owner))
    await kube.create(KINDS["Namespace"], namespace("tenant-squatted", {"team": "x"}))

    done = await uninstall(kube, timeout=1, poll=0.2)

    assert done.deleted == [] and sorted(done.forced) == ["orphan", "squatted"]
    assert await get(kube, "Namespace", "tenant-orphan") is None
    assert await get(kube, "Namespace", "tenant-squatted") is not None
    # Only the operator's finalizer is released: another controller's stays (and holds the Tenant).
    for name in ("orphan", "squatted"):
        tenant = await kube.get(TENANT_KIND, name)
        assert tenant["metadata"]["finalizers"] == ["example.com/other"]
        assert tenant["metadata"].get("deletionTimestamp")
        await kube.patch(TENANT_KIND, name, {"metadata": {"finalizers": None}})
    assert await kube.list(TENANT_KIND) == []
