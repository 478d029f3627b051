"""The operator's periodic resync against kmock: objects deleted, edited or added by hand are
restored to the render (and counted as drift); a changed platform values file (the tenant-defaults
ConfigMap) reaches running tenants (and is not drift); the tenants gauge counts Tenants by state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from prometheus_client import REGISTRY

from mevaas_operator.config import OperatorConfig
from mevaas_operator.kube import KINDS, TENANT_KIND, KubeClient
from mevaas_operator.metrics import STATES
from tests.fixtures.k8s import CHARTS, K8sEmulator, helm_path
from tests.integration.operator.cluster import SECRET_KIND, secret
from tests.integration.operator.support import eventually, get, names, ready_at, running_operator, tenant_body

pytestmark = pytest.mark.integration

RESYNC_SECONDS = 3.0


def platform_values(dns_namespace: str) -> str:
    return yaml.safe_dump({"platform": {"namespace": "mevaas", "dns": {"namespace": dns_namespace}}})


def drift(kind: str) -> float:
    return REGISTRY.get_sample_value("mevaas_operator_drift_repaired_total", {"kind": kind}) or 0.0


def tenants_gauge(state: str) -> float | None:
    return REGISTRY.get_sample_value("mevaas_operator_tenants", {"state": state})


@pytest.fixture(scope="module")
def values_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tenant-defaults") / "values.yaml"
    path.write_text(platform_values("kube-system"))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kube(k8s_emulator: K8sEmulator) -> AsyncIterator[KubeClient]:
    client = KubeClient.connect(k8s_emulator.url)
    yield client
    client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator(k8s_emulator: K8sEmulator, values_file: Path) -> AsyncIterator[None]:
    config = OperatorConfig(
        helm=str(helm_path()),
        tenant_chart=CHARTS / "tenant",
        tenant_values=values_file,
        kube_url=k8s_emulator.url,
        retry_delay=0.5,
        resync_interval=RESYNC_SECONDS,
    )
    async with running_operator(config, k8s_emulator):
        yield


async def test_resync_repairs_drift(operator: None, kube: KubeClient) -> None:
    await kube.create(TENANT_KIND, tenant_body("drifty", {"tier": "starter"}))
    await eventually(lambda: ready_at(kube, "drifty", 1), "drifty Ready")
    before = {kind: drift(kind) for kind in ("NetworkPolicy", "ResourceQuota", "ConfigMap", "RoleBinding")}

    # Someone deletes a policy, raises the quota and adds an object carrying the operator's labels.
    await kube.delete(KINDS["NetworkPolicy"], "allow-dns", "tenant-drifty")
    await kube.patch(
        KINDS["ResourceQuota"], "tenant-quota", {"spec": {"hard": {"pods": "999"}}}, "tenant-drifty"
    )
    labels = {"mevaas.io/tenant": "drifty", "app.kubernetes.io/managed-by": "mevaas-operator"}
    await kube.create(
        KINDS["ConfigMap"],
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "smuggled", "namespace": "tenant-drifty", "labels": labels},
            "data": {"a": "b"},
        },
    )

    async def repaired() -> bool:
        quota = await kube.get(KINDS["ResourceQuota"], "tenant-quota", "tenant-drifty")
        policies = await names(kube, "NetworkPolicy", "tenant-drifty")
        configmaps = await names(kube, "ConfigMap", "tenant-drifty")
        counted = all(
            drift(kind) == before[kind] + 1 for kind in ("NetworkPolicy", "ResourceQuota", "ConfigMap")
        )
        return (
            quota["spec"]["hard"]["pods"] == "10"
            and "allow-dns" in policies
            and "smuggled" not in configmaps
            and counted
        )

    await eventually(repaired, "the resync restores the render")
    # Each repair counted once, under its kind; what nobody touched is not drift.
    for kind in ("NetworkPolicy", "ResourceQuota", "ConfigMap"):
        assert drift(kind) == before[kind] + 1, kind
    assert drift("RoleBinding") == before["RoleBinding"]
    tenant = await get(kube, "Tenant", "drifty")
    assert tenant is not None and tenant["status"]["state"] == "Ready"


DEDICATED = {"tenantId": "handy-id", "tier": "enterprise", "isolation": "dedicated"}
WORKER_SECRETS = {
    "mevaas-tenant-db-strategy": "url",
    "mevaas-tenant-db-execution": "url",
    "mevaas-tenant-data-key": "ring",
    "mevaas-tenant-nats": "url",
    "mevaas-jwt": "public.pem",
}


async def test_resync_removes_fields_added_by_hand(operator: None, kube: KubeClient) -> None:
    """Fields the render never sets, added at any depth (an env var, a container, a `command`, a
    label), are removed by the next resync and counted as drift; the rest of the object is kept."""
    for name, key in WORKER_SECRETS.items():
        await kube.create(SECRET_KIND, secret("tenant-handy", name, {key: "x"}))
    await kube.create(TENANT_KIND, tenant_body("handy", DEDICATED))
    await eventually(lambda: ready_at(kube, "handy", 1), "handy Ready")
    rendered = await kube.get(KINDS["Deployment"], "execution", "tenant-handy")
    policy = await kube.get(KINDS["NetworkPolicy"], "default-deny", "tenant-handy")
    before = {kind: drift(kind) for kind in ("Deployment", "NetworkPolicy", "ServiceAccount")}

    # A tenant admin (or an SRE) adds an env var and a `command` to the execution worker, a
    # sidecar to the strategy worker, and a label to a NetworkPolicy.
    containers = rendered["spec"]["template"]["spec"]["containers"]
    tampered = [
        {
            **containers[0],
            "command": ["sh", "-c", "cat /etc/mevaas/secrets/*"],
            "env": [*containers[0]["env"], {"name": "DUMP", "value": "1"}],
        },
    ]
    await kube.patch(
        KINDS["Deployment"],
        "execution",
        {"spec": {"template": {"spec": {"containers": tampered}}}},
        "tenant-handy",
    )
    strategy = await kube.get(KINDS["Deployment"], "strategy", "tenant-handy")
    sidecar = {"name": "sidecar", "image": "busybox", "command": ["sleep", "1d"]}
    await kube.patch(
        KINDS["Deployment"],
        "strategy",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [*strategy["spec"]["template"]["spec"]["containers"], sidecar]}
                }
            }
        },
        "tenant-handy",
    )
    await kube.patch(
        KINDS["NetworkPolicy"], "default-deny", {"metadata": {"labels": {"exempt": "true"}}}, "tenant-handy"
    )

    async def repaired() -> bool:
        execution = await kube.get(KINDS["Deployment"], "execution", "tenant-handy")
        strategy = await kube.get(KINDS["Deployment"], "strategy", "tenant-handy")
        policy = await kube.get(KINDS["NetworkPolicy"], "default-deny", "tenant-handy")
        (container,) = execution["spec"]["template"]["spec"]["containers"]
        return (
            "command" not in container
            and all(e["name"] != "DUMP" for e in container["env"])
            and [c["name"] for c in strategy["spec"]["template"]["spec"]["containers"]] == ["strategy"]
            and "exempt" not in policy["metadata"]["labels"]
            and drift("Deployment") == before["Deployment"] + 2
            and drift("NetworkPolicy") == before["NetworkPolicy"] + 1
        )

    await eventually(repaired, "the resync removes what was added by hand")
    execution = await kube.get(KINDS["Deployment"], "execution", "tenant-handy")
    assert execution["spec"] == rendered["spec"]
    repaired_policy = await kube.get(KINDS["NetworkPolicy"], "default-deny", "tenant-handy")
    assert repaired_policy["metadata"]["labels"] == policy["metadata"]["labels"]
    assert repaired_policy["spec"] == policy["spec"]
    # Untouched objects are not drift, and the status the deployment controller writes is not either.
    assert drift("ServiceAccount") == before["ServiceAccount"]
    await asyncio.sleep(2 * RESYNC_SECONDS)
    assert drift("Deployment") == before["Deployment"] + 2


async def test_a_values_change_reaches_running_tenants(
    operator: None, kube: KubeClient, values_file: Path
) -> None:
    """The tenant-defaults ConfigMap changes (a `helm upgrade` of the platform; the kubelet updates
    the mounted file): the next resync re-renders every Tenant with it. That is a rollout, not
    drift. The test makes its own Tenant: it passes alone (`-k`) as in the module."""
    await kube.create(TENANT_KIND, tenant_body("shifty", {"tier": "starter"}))
    await eventually(lambda: ready_at(kube, "shifty", 1), "shifty Ready")
    before = drift("NetworkPolicy")

    def dns_namespace(policy: dict[str, Any]) -> str:
        selector = policy["spec"]["egress"][0]["to"][0]["namespaceSelector"]
        return str(selector["matchLabels"]["kubernetes.io/metadata.name"])

    policy = await kube.get(KINDS["NetworkPolicy"], "allow-dns", "tenant-shifty")
    assert dns_namespace(policy) == "kube-system"
    values_file.write_text(platform_values("dns-system"))

    async def rerendered() -> bool:
        policy = await kube.get(KINDS["NetworkPolicy"], "allow-dns", "tenant-shifty")
        return dns_namespace(policy) == "dns-system"

    await eventually(rerendered, "shifty re-rendered with the new platform values")
    assert drift("NetworkPolicy") == before


async def test_the_tenants_gauge_counts_tenants_by_state(operator: None, kube: KubeClient) -> None:
    # A namespace of that name the operator did not create is never adopted: Failed for good.
    await kube.create(
        KINDS["Namespace"], {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-broken"}}
    )
    await kube.create(TENANT_KIND, tenant_body("broken", {"tier": "starter"}))
    await kube.create(TENANT_KIND, tenant_body("second", {"tier": "professional"}))

    async def counted() -> tuple[dict[str, float | None], int] | None:
        tenants = await kube.list(TENANT_KIND)
        by_name = {t["metadata"]["name"]: (t.get("status") or {}).get("state") for t in tenants}
        states = list(by_name.values())
        gauge = {state: tenants_gauge(state) for state in STATES}
        expected = {state: float(states.count(state)) for state in STATES}
        settled = by_name.get("broken") == "Failed" and by_name.get("second") == "Ready"
        return (
            (gauge, len(tenants)) if settled and gauge == expected and not expected["Provisioning"] else None
        )

    # The module's other tests leave their Tenants Ready: every one but `broken`.
    gauge, count = await eventually(counted, "the gauge equals the Tenants' states")
    assert gauge == {"Provisioning": 0.0, "Ready": float(count - 1), "Failed": 1.0, "Terminating": 0.0}
    # Every state has a sample, so `state!="Ready"` alerts see zeros rather than nothing.
    await kube.delete(TENANT_KIND, "broken")
    await eventually(lambda: _gone(kube, "broken"), "broken released")
    await eventually(lambda: _equals(tenants_gauge("Failed"), 0.0), "no Failed Tenant left")


async def _gone(kube: KubeClient, name: str) -> bool:
    return await get(kube, "Tenant", name) is None


async def _equals(value: float | None, expected: float) -> bool:
    return value == expected
