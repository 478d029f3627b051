"""The platform chart's lifecycle hooks, on the rendered chart: a pre-upgrade Job applies exactly
the chart's CRDs server-side before anything else of the upgrade, a pre-delete Job removes every
Tenant before the operator goes, each with only the permissions and egress it needs, all of it
hooks (so it works when upgrading from a release that had none of it)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mevaas_operator.lifecycle import build_parser
from tests.fixtures.k8s import load_crd, render_chart


def by_kind_name(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind_name(render_chart("mevaas", namespace="mevaas", release="mevaas"))


def hook(obj: dict[str, Any]) -> tuple[str, int]:
    annotations = obj["metadata"]["annotations"]
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    return annotations["helm.sh/hook"], int(annotations.get("helm.sh/hook-weight", "0"))


def container(job: dict[str, Any]) -> dict[str, Any]:
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def test_the_crd_upgrade_job_applies_the_charts_own_crd_first(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    job = rendered[("Job", "mevaas-lifecycle-crd-upgrade")]
    configmap = rendered[("ConfigMap", "mevaas-lifecycle-crds")]
    migrations = rendered[("Job", "mevaas-migrations")]
    assert hook(job) == ("pre-upgrade", -20)
    assert hook(configmap) == ("pre-upgrade", -30)
    # Before the migrations (and so before any new pod): the new operator may write new fields.
    assert int(migrations["metadata"]["annotations"]["helm.sh/hook-weight"]) > -20
    # Exactly the CRD in crds/, byte for byte as YAML.
    assert yaml.safe_load(configmap["data"]["tenants.mevaas.io.yaml"]) == load_crd()
    c = container(job)
    assert c["command"] == ["python", "-m", "mevaas_operator.lifecycle"]
    assert c["image"] == container(rendered[("Deployment", "mevaas-operator")])["image"]
    args = build_parser().parse_args(c["args"])
    assert args.command == "apply-crds" and str(args.directory) == "/etc/mevaas/crds"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["crds"] == "/etc/mevaas/crds"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["crds"]["configMap"]["name"] == "mevaas-lifecycle-crds"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "mevaas-lifecycle"


def test_the_uninstall_job_runs_before_anything_is_deleted(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    job = rendered[("Job", "mevaas-lifecycle-uninstall")]
    assert hook(job) == ("pre-delete", 0)
    args = build_parser().parse_args(container(job)["args"])
    assert args.command == "uninstall" and args.timeout == 300
    # Kubernetes must not kill it before its own timeout has passed and the teardown ran.
    assert job["spec"]["activeDeadlineSeconds"] > args.timeout


def test_its_rbac_and_egress_are_hooks_of_both_phases_and_minimal(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for key in (
        ("ServiceAccount", "mevaas-lifecycle"),
        ("ClusterRole", "mevaas-lifecycle"),
        ("ClusterRoleBinding", "mevaas-lifecycle"),
        ("NetworkPolicy", "mevaas-lifecycle"),
    ):
        assert hook(rendered[key]) == ("pre-upgrade,pre-delete", -30), key
    rules = rendered[("ClusterRole", "mevaas-lifecycle")]["rules"]
    grants = {
        (group, resource, verb, tuple(rule.get("resourceNames", [])))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert grants == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "get", ("tenants.mevaas.io",)),
        ("apiextensions.k8s.io", "customresourcedefinitions", "patch", ("tenants.mevaas.io",)),
        ("apiextensions.k8s.io", "customresourcedefinitions", "create", ()),
        ("mevaas.io", "tenants", "get", ()),
        ("mevaas.io", "tenants", "list", ()),
        ("mevaas.io", "tenants", "delete", ()),
        ("mevaas.io", "tenants", "patch", ()),
        ("", "namespaces", "get", ()),
        ("", "namespaces", "delete", ()),
    }
    policy = rendered[("NetworkPolicy", "mevaas-lifecycle")]["spec"]
    assert policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "lifecycle",
        "app.kubernetes.io/instance": "mevaas",
    }
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in policy
    operator_policy = rendered[("NetworkPolicy", "mevaas-operator")]["spec"]
    assert policy["egress"] == [operator_policy["egress"][0]]  # the API server, nothing else


def test_hooks_can_be_turned_off() -> None:
    uninstall_only = by_kind_name(
        render_chart(
            "mevaas",
            namespace="mevaas",
            release="mevaas",
            set_values=["operator.lifecycle.crdUpgrade.enabled=false"],
        )
    )
    assert ("Job", "mevaas-lifecycle-crd-upgrade") not in uninstall_only
    assert ("ConfigMap", "mevaas-lifecycle-crds") not in uninstall_only
    assert hook(uninstall_only[("ServiceAccount", "mevaas-lifecycle")]) == ("pre-delete", -30)
    kinds = {r["apiGroups"][0] for r in uninstall_only[("ClusterRole", "mevaas-lifecycle")]["rules"]}
    assert "apiextensions.k8s.io" not in kinds
    none = render_chart(
        "mevaas",
        namespace="mevaas",
        release="mevaas",
        set_values=[
            "operator.lifecycle.crdUpgrade.enabled=false",
            "operator.lifecycle.uninstall.enabled=false",
        ],
    )
    assert not [o for o in none if o["metadata"]["name"].startswith("mevaas-lifecycle")]
