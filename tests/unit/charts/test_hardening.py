"""What an SRE can trust in the rendered charts: checkov finds nothing on any values file (no secret
in the environment, digests, ...), a mistyped key at any level of either schema is refused, and a
dedicated tenant's namespace holds no platform credential while its people can only look."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.k8s import CHARTS, ROOT, render_chart, run_helm

PLATFORM_VALUES = sorted((CHARTS / "mevaas" / "ci").glob("*.yaml")) + sorted(
    (ROOT / "deploy" / "values").glob("*.yaml")
)
TENANT_VALUES = sorted((CHARTS / "tenant" / "ci").glob("*.yaml"))
CAPABILITIES = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "cert-manager.io/v1",
)
# Local images built by skaffold and loaded into kind (or a throwaway install) have no registry
# digest, and with no digest `imagePullPolicy: Always` would defeat loading them.
LOCAL_IMAGES = {"mevaas-dev", "mevaas-kind", "mevaas-minimal-values"}
LOCAL_IMAGE_CHECKS = {"CKV_K8S_43", "CKV_K8S_15"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("checkov")
    for values in PLATFORM_VALUES:
        objs = render_chart(
            "mevaas", [values], namespace="mevaas", release="mevaas", api_versions=CAPABILITIES
        )
        (out / f"mevaas-{values.stem}.yaml").write_text(yaml.safe_dump_all(objs))
    for values in TENANT_VALUES:
        objs = render_chart("tenant", [values], namespace="tenant-ci", release="tenant")
        (out / f"tenant-{values.stem}.yaml").write_text(yaml.safe_dump_all(objs))
    return out


def test_checkov_finds_nothing(rendered: Path) -> None:
    cli = Path(sys.executable).parent / "checkov"
    result = subprocess.run(
        [
            str(cli),
            "-d",
            str(rendered),
            "--framework",
            "kubernetes",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        (Path(f["file_path"]).stem, f["check_id"], f["resource"])
        for r in reports
        for f in r["results"]["failed_checks"]
        if not (Path(f["file_path"]).stem in LOCAL_IMAGES and f["check_id"] in LOCAL_IMAGE_CHECKS)
    ]
    assert not failed, failed
    passed = {f["check_id"] for r in reports for f in r["results"]["passed_checks"]}
    # Secrets as files, digests, read-only roots, no token where not needed: checked and passing.
    assert {"CKV_K8S_35", "CKV_K8S_43", "CKV_K8S_22", "CKV_K8S_38"} <= passed
    assert sum(r["summary"]["passed"] for r in reports) > 3000


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            resolved = _resolve(part, root)
            merged.update({k: v for k, v in resolved.items() if k != "required"})
        return merged
    return schema


def closed_paths(values: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "") -> list[str]:
    """Every mapping of the default values whose schema is closed (additionalProperties: false)."""
    node = _resolve(schema, root)
    if not isinstance(values, dict) or node.get("additionalProperties") is not False:
        return []
    found = [path]
    for key, value in values.items():
        child = (node.get("properties") or {}).get(key)
        if child is not None:
            found += closed_paths(value, child, root, f"{path}.{key}" if path else key)
    return found


def every_object_is_closed(schema: Any, where: str = "") -> list[str]:
    """Object schemas that accept unknown keys without typing them."""
    open_nodes: list[str] = []
    if isinstance(schema, dict):
        # Kubernetes' own nested structures (affinity terms) are the API server's to check.
        if (
            schema.get("type") == "object"
            and "additionalProperties" not in schema
            and not where.endswith(("nodeAffinity", "podAffinity", "podAntiAffinity"))
        ):
            open_nodes.append(where or "/")
        for key, value in schema.items():
            open_nodes += every_object_is_closed(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            open_nodes += every_object_is_closed(value, f"{where}/{i}")
    return open_nodes


@pytest.mark.parametrize("chart", ["mevaas", "tenant"])
def test_every_schema_object_is_closed(chart: str) -> None:
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert every_object_is_closed(schema) == []


@pytest.mark.parametrize("chart", ["mevaas", "tenant"])
def test_a_mistyped_key_at_any_level_is_rejected(chart: str, tmp_path: Path) -> None:
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
    paths = closed_paths(defaults, schema, schema)
    assert len(paths) >= (30 if chart == "mevaas" else 15)
    bad: dict[str, Any] = {}
    for path in paths:
        node = bad
        for part in filter(None, path.split(".")):
            node = node.setdefault(part, {})
        node["mistypedKey"] = 1
    values = tmp_path / "bad.yaml"
    values.write_text(yaml.safe_dump(bad))
    result = run_helm("template", chart, str(CHARTS / chart), "-f", str(values), check=False)
    assert result.returncode != 0
    for path in paths:
        where = "/" + path.replace(".", "/") if path else ""
        assert f"at '{where}': additional properties 'mistypedKey' not allowed" in result.stderr, where


def test_the_issue_examples_are_rejected() -> None:
    for setting in ("serviceDefault.replicas=2", "serviceDefaults.resources.limits.memroy=1Gi"):
        result = run_helm("template", "mevaas", str(CHARTS / "mevaas"), "--set", setting, check=False)
        assert result.returncode != 0 and "schema" in result.stderr, setting


@pytest.fixture(scope="module")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """A dedicated tenant rendered as the operator does: prod's tenant defaults under its spec."""
    platform = render_chart(
        "mevaas", [ROOT / "deploy" / "values" / "prod.yaml"], namespace="mevaas", release="mevaas"
    )
    (defaults,) = [o for o in platform if o["metadata"]["name"] == "mevaas-operator-tenant-defaults"]
    path = tmp_path_factory.mktemp("tenant") / "defaults.yaml"
    path.write_text(defaults["data"]["values.yaml"])
    return render_chart(
        "tenant",
        [path, CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml"],
        namespace="tenant-initech",
        release="initech",
    )


def referenced_secrets(objs: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "secretName" in node:
                found.add(node["secretName"])
            if "secret" in node and isinstance(node["secret"], dict) and "name" in node["secret"]:
                found.add(node["secret"]["name"])
            if "secretKeyRef" in node:
                found.add(node["secretKeyRef"]["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(objs)
    return found


def test_a_dedicated_tenant_holds_no_platform_credential(dedicated: list[dict[str, Any]]) -> None:
    assert referenced_secrets(dedicated) == {
        "mevaas-tenant-db-strategy",
        "mevaas-tenant-db-execution",
        "mevaas-tenant-data-key",
        "mevaas-tenant-nats",
        "mevaas-jwt",  # the public key only (items: public.pem)
    }
    text = yaml.safe_dump_all(dedicated)
    for platform_secret in ("mevaas-kek", "mevaas-db-strategy", "mevaas-db-execution", "mevaas-nats-"):
        assert platform_secret not in text
    for obj in dedicated:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert not [
            e for e in container["env"] if "valueFrom" in e or e["name"] in ("EXECUTION_KEK", "DATABASE_URL")
        ]
        jwt = next(v for v in pod["volumes"] if v["name"] == "jwt")
        assert jwt["secret"]["items"] == [{"key": "public.pem", "path": "public.pem"}]
        (secrets,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
        files = {
            i["path"]: s["secret"]["name"]
            for s in secrets["projected"]["sources"]
            for i in s["secret"]["items"]
        }
        expected = {
            "database_url": f"mevaas-tenant-db-{obj['metadata']['name']}",
            "nats_url": "mevaas-tenant-nats",
        }
        if obj["metadata"]["name"] == "execution":
            expected["execution_kek"] = "mevaas-tenant-data-key"
        assert files == expected
        assert pod["nodeSelector"] == {"mevaas.io/pool": "initech"}
        assert pod["tolerations"][0]["key"] == "mevaas.io/dedicated"


def test_only_dedicated_workers_reach_nats(dedicated: list[dict[str, Any]]) -> None:
    nats_policies = [
        o["metadata"]["name"]
        for o in dedicated
        if o["kind"] == "NetworkPolicy"
        and any(
            (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == "nats"
            for rule in o["spec"].get("egress", [])
            for peer in rule.get("to", [])
        )
    ]
    assert nats_policies == ["allow-workers-nats"]
    shared = render_chart("tenant", [CHARTS / "tenant" / "ci" / "starter-values.yaml"], namespace="tenant-s")
    assert "4222" not in yaml.safe_dump_all([o for o in shared if o["kind"] == "NetworkPolicy"])


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
INTERACTIVE = {"pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "services/proxy", "secrets"}


def test_tenant_roles_only_look_at_platform_managed_workloads() -> None:
    objs = render_chart("mevaas", [], namespace="mevaas", release="mevaas")
    roles = {
        o["metadata"]["name"]: o
        for o in objs
        if o["kind"] == "ClusterRole" and "mevaas.io/tenant-role" in o["metadata"]["labels"]
    }
    assert len(roles) == 5
    for name, role in roles.items():
        for rule in role["rules"]:
            assert not set(rule["verbs"]) & WRITE_VERBS, (name, rule)
            assert not set(rule["resources"]) & INTERACTIVE, (name, rule)
            assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], (name, rule)
    owner = {
        (g, r)
        for rule in roles["mevaas-tenant-owner"]["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {("apps", "deployments"), ("", "pods/log"), ("", "pods")} <= owner
