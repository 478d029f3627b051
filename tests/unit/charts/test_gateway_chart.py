"""The gateway and execution's Protect RPC in the platform chart: the gateway renders hardened
with exactly the environment GatewaySettings reads, UPSTREAMS naming each enabled service's
Service, the platform CA when gRPC is TLS, and a network policy admitting only the ingress
namespaces; the Protect RPC's port, env and policy exist only when enabled; the fair-ordering
signing seed is always a file from a Secret, never an environment value."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mevaas_core.config import ServiceSettings
from mevaas_execution.server import ExecutionSettings
from mevaas_gateway.server import GatewaySettings
from tests.fixtures.k8s import CHARTS, ROOT, render_chart
from tests.unit.charts.netpol import Peer, allowed
from tests.unit.charts.test_service_env import (
    FILE_FIELDS,
    READ_BY_CODE,
    SECRET_FIELDS,
    env_names,
    mounted_file,
    required_env,
    secret_files,
    service_containers,
)

NS = "mevaas"
SERVICES = ("tenancy", "strategy", "risk", "execution", "analytics")
GATEWAY_POD = {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/instance": NS}
EXECUTION_POD = {"app.kubernetes.io/name": "execution", "app.kubernetes.io/instance": NS}
CASES: dict[str, tuple[list[Any], list[str]]] = {
    "defaults": ([], []),
    "minimal": ([CHARTS / "mevaas" / "ci" / "minimal-values.yaml"], []),
    "full": ([CHARTS / "mevaas" / "ci" / "full-values.yaml"], []),
    "prod": ([ROOT / "deploy" / "values" / "prod.yaml"], []),
    "tls-ca-bundle": ([], ["tls.enabled=true,tls.caBundle=-----BEGIN CERTIFICATE-----x"]),
}


def render(case: str, *extra: str) -> list[dict[str, Any]]:
    files, sets = CASES[case]
    return render_chart("mevaas", files, namespace=NS, release=NS, set_values=[*sets, *extra])


def named(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def gateway_pod(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = named(objs, "Deployment")["mevaas-gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def policies(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


def check_settings(
    settings_cls: type[ServiceSettings], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    """What test_service_env checks for the services, for a container without a database."""
    env = env_of(container)
    assert len(env) == len(container["env"]), "an env var is set twice"
    unread = set(env) - env_names(settings_cls) - READ_BY_CODE - {"SECRETS_DIR"}
    assert not unread, f"{settings_cls.__name__} does not read {sorted(unread)}"
    files = {name.upper() for name in secret_files(pod, container)}
    assert files <= env_names(settings_cls), sorted(files - env_names(settings_cls))
    assert not files & set(env)
    assert not required_env(settings_cls) - set(env) - files, "a required setting is missing"
    for entry in container["env"]:
        assert "valueFrom" not in entry and entry["name"] not in SECRET_FIELDS, entry["name"]
    for name in FILE_FIELDS & set(env):
        for path in filter(None, (p.strip() for p in env[name].split(";"))):
            mounted_file(pod, container, path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_gateway_gets_exactly_what_its_settings_read(case: str) -> None:
    objs = render(case)
    pod, container = gateway_pod(objs)
    check_settings(GatewaySettings, pod, container)
    env = env_of(container)
    assert env["HTTP_HOST"] == "0.0.0.0" and env["METRICS_HOST"] == "0.0.0.0"
    # Its gRPC server (health only) stays on loopback: nothing in the cluster calls it.
    assert "GRPC_HOST" not in env
    files = secret_files(pod, container)
    assert files["gateway_session_key"] == ("mevaas-gateway-session", "key")
    assert "database_url" not in files and "DATABASE_URL" not in env
    if case == "prod":
        assert files["nats_url"] == ("mevaas-nats-gateway", "url") and "NATS_URL" not in env
    jwt = next(v for v in pod["volumes"] if v["name"] == "jwt")
    assert jwt["secret"]["items"] == [{"key": "public.pem", "path": "public.pem"}]


@pytest.mark.parametrize("case", ["defaults", "full", "prod"])
def test_the_gateway_is_hardened_like_the_services(case: str) -> None:
    objs = render(case)
    deployments = named(objs, "Deployment")
    tenancy = deployments["mevaas-tenancy"]["spec"]["template"]["spec"]
    pod, container = gateway_pod(objs)
    assert pod["securityContext"] == tenancy["securityContext"]
    assert container["securityContext"] == tenancy["containers"][0]["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert named(objs, "ServiceAccount")["mevaas-gateway"]["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "mevaas-gateway"
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == GATEWAY_POD
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert container["resources"]["requests"] and container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env_of(container)["HTTP_PORT"]), "metrics": 9090}
    service = named(objs, "Service")["mevaas-gateway"]["spec"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
        "http": (8080, "http"),
        "metrics": (9090, "metrics"),
    }
    assert service["selector"] == GATEWAY_POD
    if case == "prod":
        assert "@sha256:7777" in container["image"]


@pytest.mark.parametrize(("case", "disabled"), [("defaults", set()), ("minimal", {"analytics"})])
def test_upstreams_are_the_enabled_services(case: str, disabled: set[str]) -> None:
    objs = render(case)
    _, container = gateway_pod(objs)
    upstreams = json.loads(env_of(container)["UPSTREAMS"])
    assert set(upstreams) == set(SERVICES) - disabled
    services = named(objs, "Service")
    for service, address in upstreams.items():
        host, port = address.rsplit(":", 1)
        assert host == f"mevaas-{service}.{NS}.svc"
        grpc_ports = [
            p["port"] for p in services[f"mevaas-{service}"]["spec"]["ports"] if p["name"] == "grpc"
        ]
        assert grpc_ports == [int(port)]


def test_upstreams_follow_a_disabled_service_and_the_grpc_port() -> None:
    objs = render("defaults", "services.risk.enabled=false,grpcPort=6000")
    _, container = gateway_pod(objs)
    upstreams = json.loads(env_of(container)["UPSTREAMS"])
    assert "risk" not in upstreams and upstreams["tenancy"] == f"mevaas-tenancy.{NS}.svc:6000"
    (policy,) = [p for p in policies(objs) if p["metadata"]["name"] == "mevaas-gateway"]
    assert not allowed(
        [policy],
        "Egress",
        NS,
        GATEWAY_POD,
        Peer.pod(NS, {**GATEWAY_POD, "app.kubernetes.io/name": "risk"}),
        port=6000,
    )
    assert allowed(
        [policy],
        "Egress",
        NS,
        GATEWAY_POD,
        Peer.pod(NS, {**GATEWAY_POD, "app.kubernetes.io/name": "tenancy"}),
        port=6000,
    )


def test_the_gateway_trusts_the_platform_ca_only_with_tls() -> None:
    _, plain = gateway_pod(render("defaults"))
    assert "GRPC_TLS_CA_FILE" not in env_of(plain)
    for case, source in (("prod", ("Secret", "mevaas-tls-gateway", "ca.crt")), ("tls-ca-bundle", None)):
        objs = render(case)
        pod, container = gateway_pod(objs)
        ca_file = env_of(container)["GRPC_TLS_CA_FILE"]
        kind, name, key = mounted_file(pod, container, ca_file)
        if source is not None:
            assert (kind, name, key) == source
        else:
            assert (kind, name, key) == ("ConfigMap", "mevaas-ca", "ca.crt")
        # It verifies, it serves no TLS: never its private key.
        tls = next((v for v in pod["volumes"] if v["name"] == "tls"), None)
        assert tls is not None and tls["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert "GRPC_TLS_KEY_FILE" not in env_of(container)
    # The services' own clients (execution's tenancy calls) get the same CA.
    for component, container, _ in service_containers(render("prod")):
        assert env_of(container)["GRPC_TLS_CA_FILE"] == "/etc/mevaas/tls/ca.crt", component


def test_cert_manager_issues_the_gateways_ca_secret() -> None:
    objs = render_chart(
        "mevaas",
        [ROOT / "deploy" / "values" / "prod.yaml"],
        namespace=NS,
        release=NS,
        api_versions=["cert-manager.io/v1"],
    )
    certificates = named(objs, "Certificate")
    assert certificates["mevaas-gateway"]["spec"]["secretName"] == "mevaas-tls-gateway"
    # Each upstream host is a name on that service's certificate: hostname verification passes.
    _, container = gateway_pod(objs)
    for service, address in json.loads(env_of(container)["UPSTREAMS"]).items():
        host = address.rsplit(":", 1)[0]
        assert host in certificates[f"mevaas-{service}"]["spec"]["dnsNames"], service


def test_the_gateways_network_policy() -> None:
    objs = render("defaults")
    rules = policies(objs)
    ingress_nginx = Peer.pod("ingress-nginx", {"app": "controller"})
    tenant = Peer.pod("tenant-acme", {"app": "x"}, **{"mevaas.io/tenant": "acme"})
    platform = Peer.pod(NS, {"app.kubernetes.io/part-of": "mevaas", "app.kubernetes.io/name": "risk"})
    monitoring = Peer.pod("monitoring", {"app": "prometheus"})
    assert allowed(rules, "Ingress", NS, GATEWAY_POD, ingress_nginx, port=8080)
    assert allowed(rules, "Ingress", NS, GATEWAY_POD, monitoring, port=9090)
    for peer in (tenant, platform, monitoring, Peer.external("203.0.113.7")):
        assert not allowed(rules, "Ingress", NS, GATEWAY_POD, peer, port=8080), peer
    assert not allowed(rules, "Ingress", NS, GATEWAY_POD, ingress_nginx, port=9090)
    assert not allowed(rules, "Ingress", NS, GATEWAY_POD, ingress_nginx, port=50051)
    for service in SERVICES:
        target = Peer.pod(NS, {"app.kubernetes.io/name": service, "app.kubernetes.io/instance": NS})
        assert allowed(rules, "Egress", NS, GATEWAY_POD, target, port=50051), service
        assert not allowed(rules, "Egress", NS, GATEWAY_POD, target, port=9090), service
        # ... and the service's own policy admits the gateway (a platform pod).
        service_pod = {"app.kubernetes.io/name": service, "app.kubernetes.io/instance": NS}
        gateway = Peer.pod(NS, {**GATEWAY_POD, "app.kubernetes.io/part-of": "mevaas"})
        assert allowed(rules, "Ingress", NS, service_pod, gateway, port=50051), service
    assert allowed(
        rules, "Egress", NS, GATEWAY_POD, Peer.pod("nats", {"app.kubernetes.io/name": "nats"}), port=4222
    )
    assert allowed(
        rules,
        "Egress",
        NS,
        GATEWAY_POD,
        Peer.pod("kube-system", {"k8s-app": "kube-dns"}),
        port=53,
        protocol="UDP",
    )
    postgres = Peer.pod("postgres", {"cnpg.io/cluster": "mevaas-db"})
    assert not allowed(rules, "Egress", NS, GATEWAY_POD, postgres, port=5432)
    assert not allowed(rules, "Egress", NS, GATEWAY_POD, Peer.external("203.0.113.7"), port=443)
    operator = Peer.pod(NS, {"app.kubernetes.io/name": "operator", "app.kubernetes.io/instance": NS})
    assert not allowed(rules, "Egress", NS, GATEWAY_POD, operator, port=50051)
    # OTLP only when traces are exported.
    collector = Peer.pod("monitoring", {"app.kubernetes.io/name": "opentelemetry-collector"})
    assert not allowed(rules, "Egress", NS, GATEWAY_POD, collector, port=4317)
    assert allowed(policies(render("full")), "Egress", NS, GATEWAY_POD, collector, port=4317)


def test_the_gateway_can_be_turned_off() -> None:
    objs = render("defaults", "gateway.enabled=false,secrets.generate.enabled=true")
    assert not [o for o in objs if "gateway" in o["metadata"]["name"]]


def protect_port(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    deployment = named(objs, "Deployment")["mevaas-execution"]["spec"]["template"]["spec"]
    return deployment, named(objs, "Service")["mevaas-execution"]["spec"], deployment["containers"][0]


def test_the_protect_rpc_only_when_enabled() -> None:
    objs = render("defaults")
    _, service, container = protect_port(objs)
    env = env_of(container)
    assert not {"HTTP_HOST", "HTTP_PORT", "TENANCY_ADDRESS"} & set(env)
    assert "protect-rpc" not in {p["name"] for p in container["ports"]}
    assert "protect-rpc" not in {p["name"] for p in service["ports"]}
    ingress_nginx = Peer.pod("ingress-nginx", {"app": "controller"})
    tenancy = Peer.pod(NS, {"app.kubernetes.io/name": "tenancy", "app.kubernetes.io/instance": NS})
    assert not allowed(policies(objs), "Ingress", NS, EXECUTION_POD, ingress_nginx, port=8545)
    assert not allowed(policies(objs), "Egress", NS, EXECUTION_POD, tenancy, port=50051)

    objs = render("defaults", "execution.protectRpc.enabled=true,execution.protectRpc.port=8600")
    pod, service, container = protect_port(objs)
    env = env_of(container)
    assert env["HTTP_HOST"] == "0.0.0.0" and env["HTTP_PORT"] == "8600"
    assert env["TENANCY_ADDRESS"] == f"mevaas-tenancy.{NS}.svc:50051"
    check_settings(ExecutionSettings, pod, container)
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["protect-rpc"] == 8600
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]}["protect-rpc"] == (
        8600,
        "protect-rpc",
    )
    rules = policies(objs)
    assert allowed(rules, "Ingress", NS, EXECUTION_POD, ingress_nginx, port=8600)
    tenant = Peer.pod("tenant-acme", {"app": "x"}, **{"mevaas.io/tenant": "acme"})
    assert not allowed(rules, "Ingress", NS, EXECUTION_POD, tenant, port=8600)
    assert not allowed(rules, "Ingress", NS, EXECUTION_POD, Peer.external("203.0.113.7"), port=8600)
    assert allowed(rules, "Egress", NS, EXECUTION_POD, tenancy, port=50051)
    risk = Peer.pod(NS, {"app.kubernetes.io/name": "risk", "app.kubernetes.io/instance": NS})
    assert not allowed(rules, "Egress", NS, EXECUTION_POD, risk, port=50051)


def test_no_protect_ingress_namespace_admits_no_one() -> None:
    objs = render(
        "defaults", "execution.protectRpc.enabled=true", "execution.protectRpc.ingressNamespaces=null"
    )
    for peer in (Peer.pod("ingress-nginx", {"app": "controller"}), Peer.pod("default", {"app": "x"})):
        assert not allowed(policies(objs), "Ingress", NS, EXECUTION_POD, peer, port=8545)


@pytest.mark.parametrize("case", ["defaults", "full", "prod", "minimal"])
def test_the_signing_seed_is_always_a_file_from_a_secret(case: str) -> None:
    objs = render(case)
    (execution,) = [(c, p) for name, c, p in service_containers(objs) if name == "execution"]
    container, pod = execution
    assert secret_files(pod, container)["fair_ordering_signing_key"] == ("mevaas-fair-ordering", "seed")
    for deployment in named(objs, "Deployment").values():
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            assert "FAIR_ORDERING_SIGNING_KEY" not in env_of(c), deployment["metadata"]["name"]
    custom = render(case, "execution.fairOrderingKeySecret=ordering,execution.fairOrderingKeyKey=hex")
    (execution,) = [(c, p) for name, c, p in service_containers(custom) if name == "execution"]
    assert secret_files(execution[1], execution[0])["fair_ordering_signing_key"] == ("ordering", "hex")


def test_dev_mode_generates_the_seed_and_the_session_key() -> None:
    assert not {"mevaas-fair-ordering", "mevaas-gateway-session"} & set(named(render("defaults"), "Secret"))
    secrets = named(render("defaults", "secrets.generate.enabled=true"), "Secret")
    seed = base64.b64decode(secrets["mevaas-fair-ordering"]["data"]["seed"]).decode()
    assert len(bytes.fromhex(seed)) == 32  # what protection.ordering.signing_key accepts
    session = base64.b64decode(secrets["mevaas-gateway-session"]["data"]["key"])
    assert len(base64.b64decode(session)) == 32
    for name in ("mevaas-fair-ordering", "mevaas-gateway-session"):
        assert secrets[name]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Two renders, two keys: nothing fixed is baked into the chart.
    again = named(render("defaults", "secrets.generate.enabled=true"), "Secret")
    assert again["mevaas-fair-ordering"]["data"]["seed"] != secrets["mevaas-fair-ordering"]["data"]["seed"]
