"""Tenant isolation by policy, evaluated on the rendered charts/tenant manifests: no ingress from
another tenant's namespace, and egress only to what is listed (DNS, NATS, the platform, chain RPC,
the tenant's own allowances, PostgreSQL for dedicated workers)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.fixtures.k8s import CHARTS, render_chart
from tests.unit.charts.netpol import Peer, allowed

NS = "tenant-initech"
VALUES = CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml"
WORKER = {"app.kubernetes.io/component": "execution", "mevaas.io/tenant": "initech"}
ANY_POD: dict[str, str] = {}


@pytest.fixture(scope="module")
def policies() -> list[dict[str, Any]]:
    objs = render_chart("tenant", [VALUES], namespace=NS, release="initech")
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("pod", [ANY_POD, WORKER], ids=["any-pod", "worker"])
@pytest.mark.parametrize("port", [50051, 9090, 8080, 5432])
def test_no_ingress_from_another_tenant(
    policies: list[dict[str, Any]], pod: dict[str, str], port: int
) -> None:
    other = Peer.pod(
        "tenant-acme", {"app.kubernetes.io/component": "execution"}, **{"mevaas.io/tenant": "acme"}
    )
    assert not allowed(policies, "Ingress", NS, pod, other, port=port)
    assert not allowed(policies, "Ingress", NS, pod, Peer.external("203.0.113.10"), port=port)


def test_ingress_that_is_allowed(policies: list[dict[str, Any]]) -> None:
    assert allowed(
        policies, "Ingress", NS, WORKER, Peer.pod(NS, {"app.kubernetes.io/component": "strategy"}), port=50051
    )
    assert allowed(
        policies, "Ingress", NS, WORKER, Peer.pod("mevaas", {"app.kubernetes.io/name": "risk"}), port=50051
    )
    assert allowed(policies, "Ingress", NS, WORKER, Peer.pod("monitoring", {"app": "prometheus"}), port=9090)
    assert not allowed(
        policies, "Ingress", NS, WORKER, Peer.pod("monitoring", {"app": "prometheus"}), port=50051
    )


def test_every_pod_is_default_denied(policies: list[dict[str, Any]]) -> None:
    deny = next(p for p in policies if p["metadata"]["name"] == "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_egress_is_only_what_is_listed(policies: list[dict[str, Any]]) -> None:
    values = yaml.safe_load(VALUES.read_text())
    listed = {
        (rule["cidr"], port["port"], port.get("protocol", "TCP"))
        for rule in values["platform"]["chainRpcEgress"] + values["network"]["egress"]
        for port in rule["ports"]
    } | {(values["platform"]["postgres"]["cidr"], 5432, "TCP")}
    ip_rules = set()
    cluster_peers = []
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), (
                f"{policy['metadata']['name']}: an egress rule without peers allows everything"
            )
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert rule.get("ports"), f"{policy['metadata']['name']}: ipBlock without ports"
                    for port in rule["ports"]:
                        ip_rules.add((peer["ipBlock"]["cidr"], port["port"], port["protocol"]))
                else:
                    cluster_peers.append((policy["metadata"]["name"], peer))
    assert ip_rules == listed
    for name, peer in cluster_peers:
        ns_sel = peer.get("namespaceSelector")
        if ns_sel is None:
            assert name == "allow-same-namespace"
        else:
            assert ns_sel["matchLabels"]["kubernetes.io/metadata.name"] in {"kube-system", "nats", "mevaas"}


@pytest.mark.parametrize(
    ("peer", "port", "protocol", "expected"),
    [
        (Peer.pod("kube-system", {"k8s-app": "kube-dns"}), 53, "UDP", True),
        (Peer.pod("kube-system", {"k8s-app": "kube-dns"}), 53, "TCP", True),
        (Peer.pod("kube-system", {"component": "etcd"}), 2379, "TCP", False),
        (Peer.pod("nats", {"app.kubernetes.io/name": "nats"}), 4222, "TCP", True),
        (Peer.pod("nats", {"app.kubernetes.io/name": "nats"}), 8222, "TCP", False),
        (Peer.pod("mevaas", {"app.kubernetes.io/name": "tenancy"}), 50051, "TCP", True),
        (Peer.pod("mevaas", {"app.kubernetes.io/name": "tenancy"}), 9090, "TCP", False),
        (Peer.pod("tenant-acme", {}, **{"mevaas.io/tenant": "acme"}), 50051, "TCP", False),
        (Peer.external("198.51.100.7"), 443, "TCP", True),
        (Peer.external("198.51.100.7"), 22, "TCP", False),
        (Peer.external("192.0.2.3"), 8545, "TCP", True),
        (Peer.external("192.0.2.9"), 8545, "TCP", False),
        (Peer.external("192.0.2.3"), 30303, "UDP", True),
        (Peer.external("192.0.2.3"), 30303, "TCP", False),
        (Peer.external("10.20.0.5"), 5432, "TCP", True),
        (Peer.external("8.8.8.8"), 443, "TCP", False),
        (Peer.external("169.254.169.254"), 80, "TCP", False),
    ],
)
def test_worker_egress(
    policies: list[dict[str, Any]], peer: Peer, port: int, protocol: str, expected: bool
) -> None:
    assert allowed(policies, "Egress", NS, WORKER, peer, port=port, protocol=protocol) is expected


def test_only_workers_reach_postgres(policies: list[dict[str, Any]]) -> None:
    other_pod = {"app": "sidecar"}
    assert not allowed(policies, "Egress", NS, other_pod, Peer.external("10.20.0.5"), port=5432)
    assert allowed(policies, "Egress", NS, other_pod, Peer.external("198.51.100.7"), port=443)
