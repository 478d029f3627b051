"""Both charts with the real helm binary: lint --strict, template over every charts/*/ci values file,
kubernetes-validate --strict at the lowest and highest Kubernetes versions it ships, schema rejection
of bad values, and the hardening the platform promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.k8s import CHARTS, render_chart, run_helm

MONITORING_APIS = ("monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor")
SERVICES = ("tenancy", "strategy", "risk", "execution", "analytics")


def ci_values(chart: str) -> list[Path]:
    return sorted((CHARTS / chart / "ci").glob("*.yaml"))


def shipped_versions() -> list[str]:
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = {
        m.group(1) for d in schemas.iterdir() if (m := re.fullmatch(r"v(\d+\.\d+\.\d+)-local-strict", d.name))
    }
    return sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def render_ci(chart: str, values: Path) -> list[dict[str, Any]]:
    if chart == "tenant":
        return render_chart("tenant", [values], namespace="tenant-ci", release="tenant")
    return render_chart(
        "mevaas", [values], namespace="mevaas", api_versions=MONITORING_APIS, include_crds=True
    )


CASES = [(chart, values) for chart in ("mevaas", "tenant") for values in ci_values(chart)]
CASE_IDS = [f"{chart}-{values.stem}" for chart, values in CASES]


def test_ci_values_cover_tiers_and_profiles() -> None:
    assert {p.stem for p in ci_values("tenant")} >= {
        "starter-values",
        "professional-values",
        "enterprise-dedicated-values",
    }
    assert {p.stem for p in ci_values("mevaas")} >= {"minimal-values", "full-values"}


@pytest.mark.parametrize(("chart", "values"), CASES, ids=CASE_IDS)
def test_helm_lint_strict(chart: str, values: Path) -> None:
    result = run_helm("lint", "--strict", str(CHARTS / chart), "-f", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    for (chart, values), case_id in zip(CASES, CASE_IDS, strict=True):
        (out / f"{case_id}.yaml").write_text(yaml.safe_dump_all(render_ci(chart, values)))
    return out


@pytest.mark.parametrize("which", ["lowest", "highest"])
def test_rendered_manifests_validate_strict(rendered_dir: Path, which: str) -> None:
    versions = shipped_versions()
    assert len(versions) >= 2
    version = versions[0] if which == "lowest" else versions[-1]
    files = sorted(str(p) for p in rendered_dir.glob("*.yaml"))
    cli = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(cli), "--strict", "-k", version, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = [line for line in output.splitlines() if " passed for resource " in line]
    assert len(passed) >= 60
    # Only the Prometheus Operator's CRD kinds have no schema in kubernetes-validate.
    for line in output.splitlines():
        if line.startswith("WARN"):
            assert "ServiceMonitor" in line, line


@pytest.mark.parametrize(
    ("chart", "setting", "message"),
    [
        ("tenant", "tier=gold", "/tier"),
        ("tenant", "owners[0].name=eve,owners[0].role=root", "/owners/0/role"),
        (
            "tenant",
            "network.egress[0].cidr=everywhere,network.egress[0].ports[0].port=443",
            "/network/egress/0/cidr",
        ),
        ("mevaas", "services.risk.replicas=-1", "/services/risk/replicas"),
        ("mevaas", "nats.url=http://nats:4222", "/nats/url"),
        ("mevaas", "operator.replicas=2", "/operator/replicas"),
    ],
)
def test_values_schema_rejects_bad_values(chart: str, setting: str, message: str) -> None:
    result = run_helm("template", chart, str(CHARTS / chart), "--set", setting, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr
    assert message in result.stderr


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objs
        if o["kind"] in ("Deployment", "Job")
    ]


@pytest.mark.parametrize(("chart", "values"), CASES, ids=CASE_IDS)
def test_pods_are_hardened(chart: str, values: Path) -> None:
    specs = pod_specs(render_ci(chart, values))
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"], name


def test_platform_services_ports_probes_and_policies() -> None:
    objs = render_ci("mevaas", CHARTS / "mevaas" / "ci" / "full-values.yaml")
    deployments, services = by_kind(objs, "Deployment"), by_kind(objs, "Service")
    for svc in SERVICES:
        name = f"mevaas-{svc}"
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == 50051, (name, probe)
        # full-values turns the Protect RPC on: execution's Service carries its port.
        assert {p["name"]: p["port"] for p in services[name]["spec"]["ports"]} == {
            "grpc": 50051,
            "metrics": 9090,
            **({"protect-rpc": 8545} if svc == "execution" else {}),
        }
        env = {e["name"] for e in container["env"]}
        assert {"NATS_URL", "SECRETS_DIR", "JWT_PUBLIC_KEYS", "GRPC_HOST", "METRICS_HOST"} <= env
        assert ("CHAINS_FILE" in env) == (svc in ("strategy", "execution"))
        assert not {"EXECUTION_KEK", "DATABASE_URL"} & env
    everything = (*SERVICES, "gateway", "operator")
    assert set(by_kind(objs, "PodDisruptionBudget")) == {f"mevaas-{s}" for s in everything}
    assert set(by_kind(objs, "HorizontalPodAutoscaler")) == {
        f"mevaas-{s}" for s in (*SERVICES, "gateway") if s != "execution"
    }
    assert set(by_kind(objs, "ServiceMonitor")) == {f"mevaas-{s}" for s in everything}
    policies = by_kind(objs, "NetworkPolicy")
    deny = policies["mevaas-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert {f"mevaas-{s}" for s in (*SERVICES, "gateway", "operator", "migrations")} <= set(policies)
    job = by_kind(objs, "Job")["mevaas-migrations"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    steps = job["spec"]["template"]["spec"]["initContainers"] + job["spec"]["template"]["spec"]["containers"]
    assert [c["args"] for c in steps] == [["--service", s] for s in SERVICES]
    assert all(c["command"] == ["mevaas-migrate"] for c in steps)
    crds = by_kind(objs, "CustomResourceDefinition")
    assert set(crds) == {"tenants.mevaas.io"}


def test_monitoring_objects_need_the_capability() -> None:
    full = CHARTS / "mevaas" / "ci" / "full-values.yaml"
    objs = render_chart("mevaas", [full], namespace="mevaas")
    assert not by_kind(objs, "ServiceMonitor")
    notes = run_helm("install", "mevaas", str(CHARTS / "mevaas"), "-f", str(full), "--dry-run=client").stdout
    assert "no ServiceMonitor was created" in notes


def test_operator_rbac_covers_what_it_manages() -> None:
    objs = render_ci("mevaas", CHARTS / "mevaas" / "ci" / "minimal-values.yaml")
    rules = by_kind(objs, "ClusterRole")["mevaas-operator"]["rules"]
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    for needed in [
        ("mevaas.io", "tenants"),
        ("mevaas.io", "tenants/status"),
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("", "configmaps"),
        ("", "events"),
        ("networking.k8s.io", "networkpolicies"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("apps", "deployments"),
    ]:
        assert needed in granted, needed
    bind = next(r for r in rules if r["verbs"] == ["bind"])
    tenant_roles = {f"mevaas-tenant-{role}" for role in ("owner", "admin", "trader", "viewer", "compliance")}
    assert tenant_roles <= set(by_kind(objs, "ClusterRole"))
    assert set(bind["resourceNames"]) == tenant_roles


def test_tenant_defaults_render_the_tenant_chart(tmp_path: Path) -> None:
    """The platform's tenant-defaults ConfigMap is exactly what the operator feeds charts/tenant."""
    objs = render_ci("mevaas", CHARTS / "mevaas" / "ci" / "full-values.yaml")
    values = by_kind(objs, "ConfigMap")["mevaas-operator-tenant-defaults"]["data"]["values.yaml"]
    assert yaml.safe_load(values)["platform"]["chainRpcEgress"][0]["cidr"] == "198.51.100.0/24"
    path = tmp_path / "tenant-defaults.yaml"
    path.write_text(values)
    tenant = render_chart(
        "tenant", [path], namespace="tenant-x", set_values=["isolation=dedicated,tier=enterprise"]
    )
    image = by_kind(tenant, "Deployment")["strategy"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/mevaas/mevaas-strategy:0.1.0@sha256:" + "2" * 64


def test_tenant_tiers_quota_and_overrides() -> None:
    starter = by_kind(render_ci("tenant", CHARTS / "tenant" / "ci" / "starter-values.yaml"), "ResourceQuota")
    pro = render_ci("tenant", CHARTS / "tenant" / "ci" / "professional-values.yaml")
    assert starter["tenant-quota"]["spec"]["hard"]["pods"] == "10"
    hard = by_kind(pro, "ResourceQuota")["tenant-quota"]["spec"]["hard"]
    assert hard["pods"] == "60"  # the Tenant's override
    assert hard["requests.memory"] == "16Gi"  # the tier's default
    limits = by_kind(pro, "LimitRange")["tenant-limits"]["spec"]["limits"][0]
    assert limits["max"] == {"cpu": "4", "memory": "12Gi"}
    bindings = by_kind(pro, "RoleBinding")
    assert set(bindings) == {"mevaas-tenant-owner", "mevaas-tenant-trader", "mevaas-tenant-compliance"}
    assert bindings["mevaas-tenant-trader"]["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "globex-traders"}
    ]
    assert not by_kind(pro, "Deployment")


def test_dedicated_tier_gets_its_own_workers_and_branding() -> None:
    objs = render_ci("tenant", CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml")
    deployments = by_kind(objs, "Deployment")
    assert set(deployments) == {"strategy", "execution"}
    for name, deployment in deployments.items():
        assert deployment["metadata"]["namespace"] == "tenant-ci"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert deployment["spec"]["template"]["metadata"]["annotations"]["mevaas.io/tenant-id"] == "initech"
        assert container["image"].startswith(f"registry.example.com/mevaas/mevaas-{name}:0.1.0@sha256:")
        assert container["readinessProbe"]["grpc"]["port"] == 50051
    branding = by_kind(objs, "ConfigMap")["tenant-branding"]["data"]
    assert branding["primaryColor"] == "#1F6FEB"
    assert branding["domain"] == "mev.initech.example"
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert labels["mevaas.io/tenant"] == "initech"
        assert labels["app.kubernetes.io/name"] == "tenant"
        assert labels["helm.sh/chart"] == "tenant-0.1.0"
