"""The charts set exactly the environment the services read: every variable a service container
gets is a field of its settings class (or a name the code reads from os.environ itself), every
required field is set, secrets come from Secrets, files from mounted Secrets/ConfigMaps, and the
servers listen on all of the pod's interfaces. The migration Job gets what `mevaas-migrate` reads."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from mevaas_analytics.server import AnalyticsSettings
from mevaas_chain.registry import ChainRegistry, parse_registry
from mevaas_core.config import ServiceSettings
from mevaas_execution.server import ExecutionSettings
from mevaas_risk.server import RiskSettings
from mevaas_strategy.server import StrategySettings
from mevaas_tenancy.server import TenancySettings
from tests.fixtures.k8s import CHARTS, render_chart

SETTINGS: dict[str, type[ServiceSettings]] = {
    "tenancy": TenancySettings,
    "strategy": StrategySettings,
    "risk": RiskSettings,
    "execution": ExecutionSettings,
    "analytics": AnalyticsSettings,
}
# Read from os.environ directly: the chain registry (mevaas_chain.registry), tracing
# (mevaas_core.telemetry and the OpenTelemetry SDK it configures).
READ_BY_CODE = frozenset(
    {
        "MEVAAS_CHAINS",
        "MEVAAS_CHAINS_FILE",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_SERVICE_NAME",
    }
)
# Settings holding key material: never a literal value in a manifest.
SECRET_FIELDS = frozenset({"DATABASE_URL", "EXECUTION_KEK", "BOOTSTRAP_ADMIN_KEY"})
# Settings that are paths to files (or may be): they must point into a mounted volume.
FILE_FIELDS = frozenset({"JWT_PUBLIC_KEYS", "JWT_PRIVATE_KEY", "CHAINS_FILE", "MEVAAS_CHAINS_FILE"})
MIGRATE_ENV = frozenset({"DATABASE_URL", "DB_APP_PASSWORD", "DB_OWNER_PASSWORD"})

PLATFORM_CASES = {
    "defaults": ([], []),
    "minimal": ([CHARTS / "mevaas" / "ci" / "minimal-values.yaml"], []),
    "full": ([CHARTS / "mevaas" / "ci" / "full-values.yaml"], []),
    "provision": (
        [],
        ["database.provision.enabled=true,auth.bootstrapAdminKey.name=admin,auth.bootstrapAdminKey.key=key"],
    ),
}
DEDICATED_VALUES = CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml"


def env_names(settings_cls: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in settings_cls.model_fields}


def required_env(settings_cls: type[BaseSettings]) -> set[str]:
    return {name.upper() for name, field in settings_cls.model_fields.items() if field.is_required()}


def service_containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service, container, pod spec) of every Deployment running a MEVaaS service."""
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for obj in objs:
        if obj["kind"] != "Deployment":
            continue
        component = obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        if component not in SETTINGS:
            continue
        pod = obj["spec"]["template"]["spec"]
        found.extend((component, container, pod) for container in pod["containers"])
    return found


def render_platform(case: str) -> list[dict[str, Any]]:
    files, sets = PLATFORM_CASES[case]
    return render_chart("mevaas", files, namespace="mevaas", release="mevaas", set_values=sets)


def render_dedicated() -> list[dict[str, Any]]:
    return render_chart("tenant", [DEDICATED_VALUES], namespace="tenant-initech", release="tenant")


def mounted_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str, str]:
    """(kind, name, key) of the Secret or ConfigMap item that `path` is in the container."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes[mount["name"]]
        relative = path[len(prefix) :]
        for kind, source, name_field in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
        ):
            if source in volume:
                items = volume[source].get("items")
                if items is None:
                    return kind, volume[source][name_field], relative
                keys = {item["path"]: item["key"] for item in items}
                assert relative in keys, f"{path}: volume {mount['name']} does not project it"
                return kind, volume[source][name_field], keys[relative]
        raise AssertionError(f"{path}: volume {mount['name']} is neither a Secret nor a ConfigMap")
    raise AssertionError(f"{path} is not under any volumeMount of {container['name']}")


def check_service_env(
    component: str, container: dict[str, Any], pod: dict[str, Any], configmaps: dict[str, dict[str, Any]]
) -> None:
    settings_cls = SETTINGS[component]
    env = {e["name"]: e for e in container["env"]}
    assert len(env) == len(container["env"]), f"{component}: an env var is set twice"
    unread = set(env) - env_names(settings_cls) - READ_BY_CODE
    assert not unread, f"{component} sets env vars {settings_cls.__name__} does not read: {sorted(unread)}"
    missing = required_env(settings_cls) - set(env)
    assert not missing, f"{component} lacks required settings: {sorted(missing)}"
    for name in ("GRPC_HOST", "METRICS_HOST"):
        assert env[name].get("value") == "0.0.0.0", f"{component}: {name} must listen on the pod's IP"
    for name in SECRET_FIELDS & set(env):
        assert "secretKeyRef" in env[name].get("valueFrom", {}), f"{component}: {name} not from a Secret"
    for name in FILE_FIELDS & set(env):
        paths = [p.strip() for p in env[name]["value"].split(";") if p.strip()]
        assert paths, f"{component}: {name} is empty"
        for path in paths:
            kind, source, key = mounted_file(pod, container, path)
            if kind == "ConfigMap" and source in configmaps:
                assert key in configmaps[source]["data"], f"{component}: {source} has no {key}"
            if name in ("CHAINS_FILE", "MEVAAS_CHAINS_FILE"):
                assert kind == "ConfigMap", f"{component}: the chain registry comes from a ConfigMap"
                registry = parse_registry(configmaps[source]["data"][key], yaml_format=True)
                assert isinstance(registry, ChainRegistry)


@pytest.mark.parametrize("case", sorted(PLATFORM_CASES))
def test_platform_services_get_exactly_what_their_settings_read(case: str) -> None:
    objs = render_platform(case)
    configmaps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    containers = service_containers(objs)
    assert {c for c, _, _ in containers} >= set(SETTINGS) - {"analytics"}
    for component, container, pod in containers:
        check_service_env(component, container, pod, configmaps)


def test_dedicated_workers_get_exactly_what_their_settings_read() -> None:
    objs = render_dedicated()
    configmaps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    containers = service_containers(objs)
    assert sorted(c for c, _, _ in containers) == ["execution", "strategy"]
    for component, container, pod in containers:
        check_service_env(component, container, pod, configmaps)
    registry = parse_registry(configmaps["chains"]["data"]["chains.yaml"], yaml_format=True)
    assert [chain.chain_id for chain in registry] == [1]


def test_platform_chains_reach_the_registry_and_the_tenant_defaults() -> None:
    objs = render_platform("full")
    configmaps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    registry = parse_registry(configmaps["mevaas-chains"]["data"]["chains.yaml"], yaml_format=True)
    assert [(c.chain_id, c.name, c.ws_url) for c in registry] == [
        (1, "ethereum", "wss://eth.rpc.example.com/ws"),
        (8453, "base", None),
    ]
    defaults = yaml.safe_load(configmaps["mevaas-operator-tenant-defaults"]["data"]["values.yaml"])
    assert parse_registry(yaml.safe_dump(defaults["workers"]), yaml_format=True).chains == registry.chains
    assert set(defaults["workers"]["databaseSecrets"]) == {"strategy", "execution"}


@pytest.mark.parametrize("provision", [False, True])
def test_migration_job_gets_what_mevaas_migrate_reads(provision: bool) -> None:
    objs = render_platform("provision" if provision else "defaults")
    (job,) = [o for o in objs if o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    steps = pod.get("initContainers", []) + pod["containers"]
    assert [c["args"][1] for c in steps] == list(SETTINGS)
    for step in steps:
        service = step["args"][1]
        env = {e["name"]: e for e in step["env"]}
        assert set(env) <= MIGRATE_ENV, sorted(set(env) - MIGRATE_ENV)
        assert all("secretKeyRef" in e["valueFrom"] for e in env.values())
        assert ("--provision" in step["args"]) == provision
        if provision:
            assert set(env) == MIGRATE_ENV
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "mevaas-db-admin"
            passwords = {
                env[n]["valueFrom"]["secretKeyRef"]["name"] for n in ("DB_APP_PASSWORD", "DB_OWNER_PASSWORD")
            }
            assert passwords == {f"mevaas-db-{service}"}
        else:
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": f"mevaas-db-{service}",
                "key": "owner-url",
            }


def test_each_service_connects_with_its_own_role() -> None:
    for component, container, _ in service_containers(render_platform("defaults")):
        ref = next(e for e in container["env"] if e["name"] == "DATABASE_URL")["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"mevaas-db-{component}", "key": "app-url"}


def test_the_check_catches_names_no_settings_class_reads() -> None:
    """A chart setting the operator's old guesses (…_FILE names) and missing tenancy's signing key
    fails the check."""
    pod: dict[str, Any] = {"volumes": [{"name": "jwt", "secret": {"secretName": "mevaas-jwt"}}]}
    container: dict[str, Any] = {
        "name": "tenancy",
        "env": [
            {"name": "GRPC_HOST", "value": "0.0.0.0"},
            {"name": "METRICS_HOST", "value": "0.0.0.0"},
            {"name": "JWT_PUBLIC_KEY_FILE", "value": "/etc/mevaas/jwt/public.pem"},
        ],
        "volumeMounts": [{"name": "jwt", "mountPath": "/etc/mevaas/jwt"}],
    }
    with pytest.raises(AssertionError, match="JWT_PUBLIC_KEY_FILE"):
        check_service_env("tenancy", container, pod, {})
    container["env"][2] = {"name": "JWT_PUBLIC_KEYS", "value": "/etc/mevaas/jwt/public.pem"}
    with pytest.raises(AssertionError, match="JWT_PRIVATE_KEY"):
        check_service_env("tenancy", container, pod, {})
