"""The charts set exactly the environment the services read: every variable a service container
gets is a field of its settings class (or a name the code reads from os.environ itself), every
required field is set, key material is never in the environment but a file of SECRETS_DIR projected
from a Secret (mevaas_core.config reads it), files come from mounted Secrets/ConfigMaps, and the
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
from tests.fixtures.k8s import CHARTS, ROOT, render_chart

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
SECRET_FIELDS = frozenset(
    {
        "DATABASE_URL",
        "PLATFORM_DATABASE_URL",
        "EXECUTION_KEK",
        "BOOTSTRAP_ADMIN_KEY",
        "FAIR_ORDERING_SIGNING_KEY",
        "GATEWAY_SESSION_KEY",
    }
)
SECRETS_DIR = "/etc/mevaas/secrets"
# Settings that are paths to files (or may be): they must point into a mounted volume.
FILE_FIELDS = frozenset({"JWT_PUBLIC_KEYS", "JWT_PRIVATE_KEY", "CHAINS_FILE", "MEVAAS_CHAINS_FILE"})
FILE_FIELDS = FILE_FIELDS | {
    "GRPC_TLS_CERT_FILE",
    "GRPC_TLS_KEY_FILE",
    "GRPC_TLS_CA_FILE",
    "NATS_TLS_CA_FILE",
}
MIGRATE_SECRETS = frozenset({"DATABASE_URL", "DB_APP_PASSWORD", "DB_OWNER_PASSWORD", "DB_PLATFORM_PASSWORD"})

PLATFORM_CASES = {
    "defaults": ([], []),
    "minimal": ([CHARTS / "mevaas" / "ci" / "minimal-values.yaml"], []),
    "full": ([CHARTS / "mevaas" / "ci" / "full-values.yaml"], []),
    "provision": (
        [],
        ["database.provision.enabled=true,auth.bootstrapAdminKey.name=admin,auth.bootstrapAdminKey.key=key"],
    ),
    "prod": ([ROOT / "deploy" / "values" / "prod.yaml"], []),
    "tls-ca-bundle": (
        [],
        ["tls.enabled=true,tls.caBundle=-----BEGIN CERTIFICATE-----x,nats.credentials.enabled=true"],
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


def secret_files(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """SECRETS_DIR's files in the container: file name -> (Secret, key), from its projected volume."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("SECRETS_DIR") == SECRETS_DIR, f"{container['name']}: SECRETS_DIR not set"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == SECRETS_DIR]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    files: dict[str, tuple[str, str]] = {}
    for source in volume["projected"]["sources"]:
        assert set(source) == {"secret"}, f"{container['name']}: SECRETS_DIR holds only Secrets"
        for item in source["secret"]["items"]:
            assert item["path"] not in files, f"{container['name']}: {item['path']} projected twice"
            files[item["path"]] = (source["secret"]["name"], item["key"])
    return files


def mounted_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str, str]:
    """(kind, name, key) of the Secret or ConfigMap item that `path` is in the container."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes[mount["name"]]
        relative = path[len(prefix) :]
        if "projected" in volume:
            for projected in volume["projected"]["sources"]:
                for kind, source in (("Secret", "secret"), ("ConfigMap", "configMap")):
                    for item in (projected.get(source) or {}).get("items", []):
                        if item["path"] == relative:
                            return kind, projected[source]["name"], item["key"]
            raise AssertionError(f"{path}: projected volume {mount['name']} does not project it")
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
    unread = set(env) - env_names(settings_cls) - READ_BY_CODE - {"SECRETS_DIR"}
    assert not unread, f"{component} sets env vars {settings_cls.__name__} does not read: {sorted(unread)}"
    files = {name.upper() for name in secret_files(pod, container)}
    unread_files = files - env_names(settings_cls)
    assert not unread_files, f"{component}: secret files no setting reads: {sorted(unread_files)}"
    assert not files & set(env), f"{component}: set both as a variable and a file: {sorted(files & set(env))}"
    missing = required_env(settings_cls) - set(env) - files
    assert not missing, f"{component} lacks required settings: {sorted(missing)}"
    assert "DATABASE_URL" in files, f"{component}: no database login"
    for name in ("GRPC_HOST", "METRICS_HOST"):
        assert env[name].get("value") == "0.0.0.0", f"{component}: {name} must listen on the pod's IP"
    for entry in container["env"]:
        assert "valueFrom" not in entry, f"{component}: {entry['name']} comes from an object, not a file"
        assert entry["name"] not in SECRET_FIELDS, f"{component}: {entry['name']} is key material in env"
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
    assert set(defaults["workers"]["secrets"]["database"]) == {"strategy", "execution"}


@pytest.mark.parametrize("provision", [False, True])
def test_migration_job_gets_what_mevaas_migrate_reads(provision: bool) -> None:
    objs = render_platform("provision" if provision else "defaults")
    (job,) = [o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == "mevaas-migrations"]
    pod = job["spec"]["template"]["spec"]
    steps = pod.get("initContainers", []) + pod["containers"]
    assert [c["args"][1] for c in steps] == list(SETTINGS)
    for step in steps:
        service = step["args"][1]
        assert [e["name"] for e in step["env"]] == ["SECRETS_DIR"]
        files = {name.upper(): ref for name, ref in secret_files(pod, step).items()}
        assert ("--provision" in step["args"]) == provision
        if provision:
            assert set(files) == MIGRATE_SECRETS
            assert files["DATABASE_URL"] == ("mevaas-db-admin", "url")
            assert {
                files[n][0] for n in ("DB_APP_PASSWORD", "DB_OWNER_PASSWORD", "DB_PLATFORM_PASSWORD")
            } == {f"mevaas-db-{service}"}
        else:
            assert files == {"DATABASE_URL": (f"mevaas-db-{service}", "owner-url")}


def test_each_service_connects_with_its_own_role() -> None:
    for component, container, pod in service_containers(render_platform("defaults")):
        assert secret_files(pod, container)["database_url"] == (f"mevaas-db-{component}", "app-url")


def test_execution_reads_the_kek_ring_from_a_file_only_there() -> None:
    for component, container, pod in service_containers(render_platform("prod")):
        files = secret_files(pod, container)
        assert ("execution_kek" in files) == (component == "execution"), component
        assert files["nats_url"] == (f"mevaas-nats-{component}", "url")


def test_the_check_catches_names_no_settings_class_reads() -> None:
    """A chart setting the operator's old guesses (…_FILE names) and missing tenancy's signing key
    fails the check."""
    secrets = {"secret": {"name": "mevaas-db-tenancy", "items": [{"key": "app-url", "path": "database_url"}]}}
    pod: dict[str, Any] = {
        "volumes": [
            {"name": "jwt", "secret": {"secretName": "mevaas-jwt"}},
            {"name": "secrets", "projected": {"sources": [secrets]}},
        ]
    }
    container: dict[str, Any] = {
        "name": "tenancy",
        "env": [
            {"name": "GRPC_HOST", "value": "0.0.0.0"},
            {"name": "METRICS_HOST", "value": "0.0.0.0"},
            {"name": "SECRETS_DIR", "value": SECRETS_DIR},
            {"name": "JWT_PUBLIC_KEY_FILE", "value": "/etc/mevaas/jwt/public.pem"},
        ],
        "volumeMounts": [
            {"name": "jwt", "mountPath": "/etc/mevaas/jwt"},
            {"name": "secrets", "mountPath": SECRETS_DIR},
        ],
    }
    with pytest.raises(AssertionError, match="JWT_PUBLIC_KEY_FILE"):
        check_service_env("tenancy", container, pod, {})
    container["env"][3] = {"name": "JWT_PUBLIC_KEYS", "value": "/etc/mevaas/jwt/public.pem"}
    with pytest.raises(AssertionError, match="JWT_PRIVATE_KEY"):
        check_service_env("tenancy", container, pod, {})
    container["env"].append({"name": "JWT_PRIVATE_KEY", "value": "/etc/mevaas/jwt/private.pem"})
    container["env"].append(
        {"name": "EXECUTION_KEK", "valueFrom": {"secretKeyRef": {"name": "k", "key": "k"}}}
    )
    with pytest.raises(AssertionError, match="EXECUTION_KEK"):
        check_service_env("tenancy", container, pod, {})
