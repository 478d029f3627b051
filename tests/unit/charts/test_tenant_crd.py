"""The Tenant CRD (charts/mevaas/crds, the single source): its shape, and example Tenant objects
validated against its openAPIV3Schema."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from tests.fixtures.k8s import CHARTS, render_chart, run_helm


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def errors(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema_of(crd))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def tenant(spec: dict[str, Any], name: str = "acme") -> dict[str, Any]:
    return {"apiVersion": "mevaas.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}


FULL = tenant(
    {
        "tenantId": "7d9f0c1e-2b3a-4c5d-8e6f-a1b2c3d4e5f6",
        "displayName": "Acme Capital",
        "tier": "enterprise",
        "isolation": "dedicated",
        "owners": [
            {"kind": "User", "name": "alice@acme.example", "role": "owner"},
            {"kind": "Group", "name": "acme-desk", "role": "trader"},
            {"name": "audit@acme.example", "role": "compliance"},
        ],
        "quota": {"hard": {"pods": 80, "requests.cpu": "40", "limits.memory": "200Gi"}},
        "limitRange": {"max": {"cpu": "16", "memory": "64Gi"}, "defaultRequest": {"cpu": "250m"}},
        "network": {
            "egress": [
                {"cidr": "203.0.113.10/32", "ports": [{"port": 8545}, {"port": 30303, "protocol": "UDP"}]},
                {"cidr": "2001:db8::/64", "ports": [{"port": 443}], "description": "IPv6 RPC"},
            ]
        },
        "branding": {"ref": "acme", "domain": "mev.acme.example", "primaryColor": "#0A84FF"},
    }
)


def test_crd_shape(tenant_crd: dict[str, Any]) -> None:
    spec = tenant_crd["spec"]
    assert tenant_crd["metadata"]["name"] == "tenants.mevaas.io"
    assert spec["group"] == "mevaas.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "Tenant"
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Tier": ".spec.tier",
        "Isolation": ".spec.isolation",
        "State": ".status.state",
        "Namespace": ".status.namespace",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Age": ".metadata.creationTimestamp",
    }
    props = schema_of(tenant_crd)["properties"]
    assert props["spec"]["properties"]["tier"]["default"] == "starter"
    assert props["spec"]["properties"]["isolation"]["default"] == "shared"
    condition = props["status"]["properties"]["conditions"]["items"]["properties"]
    assert condition["reason"]["enum"] == ["Reconciling", "WorkloadsUnavailable", "Succeeded", "Failed"]
    assert "observedGeneration" in props["status"]["properties"]


@pytest.mark.parametrize(
    "obj",
    [tenant({"tier": "starter"}), tenant({"tier": "professional", "owners": []}), FULL],
    ids=["minimal", "professional", "full"],
)
def test_valid_tenants(tenant_crd: dict[str, Any], obj: dict[str, Any]) -> None:
    assert errors(tenant_crd, obj) == []


def mutated(path: list[str | int], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(FULL)
    target: Any = obj["spec"]
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        (mutated(["tier"], "gold"), "spec/tier"),
        (mutated(["isolation"], "private"), "spec/isolation"),
        (mutated(["owners", 0, "role"], "root"), "spec/owners/0/role"),
        (mutated(["owners", 1, "kind"], "ServiceAccount"), "spec/owners/1/kind"),
        (mutated(["owners", 2, "role"], KeyError), "spec/owners/2"),
        (mutated(["quota", "hard", "pods"], "lots"), "spec/quota/hard/pods"),
        (mutated(["limitRange", "max", "cpu"], "16 cores"), "spec/limitRange/max/cpu"),
        (mutated(["network", "egress", 0, "cidr"], "203.0.113.10"), "spec/network/egress/0/cidr"),
        (mutated(["network", "egress", 0, "ports", 0, "port"], 70000), "spec/network/egress/0/ports/0/port"),
        (mutated(["network", "egress", 1, "ports"], []), "spec/network/egress/1/ports"),
        (mutated(["branding", "primaryColor"], "blue"), "spec/branding/primaryColor"),
        (mutated(["tenantId"], "-bad id"), "spec/tenantId"),
        ({"apiVersion": "mevaas.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "x"}}, ""),
        (tenant({"tier": "starter", "owners": {"name": "alice", "role": "owner"}}), "spec/owners"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_tenants_rejected(tenant_crd: dict[str, Any], obj: dict[str, Any], where: str) -> None:
    found = errors(tenant_crd, obj)
    assert found, "expected a validation error"
    assert any(e.split(":")[0] == where for e in found), found


def test_status_schema_accepts_operator_status(tenant_crd: dict[str, Any]) -> None:
    obj = copy.deepcopy(FULL)
    obj["status"] = {
        "state": "Ready",
        "namespace": "tenant-acme",
        "tier": "enterprise",
        "appliedObjects": 14,
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "14 objects applied",
                "observedGeneration": 3,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    assert errors(tenant_crd, obj) == []
    obj["status"]["conditions"][0]["reason"] = "Partying"
    assert errors(tenant_crd, obj)


@pytest.mark.parametrize(
    "name",
    ["a", "acme", "a" * 53, "a" * 54, "a" * 56, "acme.corp", "Acme", "-acme", "acme-", "ac_me"],
)
def test_the_crd_accepts_exactly_the_names_the_tenant_chart_renders(
    tenant_crd: dict[str, Any], name: str
) -> None:
    """A name the CRD admits must render (helm release name, namespace tenant-<name>), and one that
    cannot render must be refused at admission, so no Tenant is stuck Failed for its name."""
    admitted = not errors(tenant_crd, tenant({"tier": "starter"}, name=name))
    result = run_helm(
        "template",
        name,
        str(CHARTS / "tenant"),
        "--namespace",
        f"tenant-{name}",
        "--set",
        f"tenant.name={name}",
        check=False,
    )
    assert admitted == (result.returncode == 0), result.stderr
    assert admitted == (
        len(name) <= 53
        and name == name.lower()
        and "." not in name
        and "_" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )
    if admitted:
        assert render_chart(
            "tenant", namespace=f"tenant-{name}", release=name, set_values=[f"tenant.name={name}"]
        )
