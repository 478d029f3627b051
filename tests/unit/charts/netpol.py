"""A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics) for isolation tests on rendered
manifests: which traffic to or from a pod the policies of its namespace allow."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Peer:
    """The other end of a connection: a pod (namespace + labels) or an external IP."""

    namespace: str | None = None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None

    @classmethod
    def pod(cls, namespace: str, labels: dict[str, str] | None = None, **ns_labels: str) -> Peer:
        return cls(
            namespace=namespace,
            namespace_labels={"kubernetes.io/metadata.name": namespace, **ns_labels},
            pod_labels=labels or {},
        )

    @classmethod
    def external(cls, ip: str) -> Peer:
        return cls(ip=ip)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer_rule: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in peer_rule:
        if peer.ip is None:
            return False
        ip = ipaddress.ip_address(peer.ip)
        block = peer_rule["ipBlock"]
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if peer.namespace is None:
        return False
    ns_sel = peer_rule.get("namespaceSelector")
    pod_sel = peer_rule.get("podSelector")
    if ns_sel is not None:
        if not selector_matches(ns_sel, peer.namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return pod_sel is None or selector_matches(pod_sel, peer.pod_labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports)


def allowed(
    policies: list[dict[str, Any]],
    direction: str,
    pod_namespace: str,
    pod_labels: dict[str, str],
    peer: Peer,
    *,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether the namespace's policies allow `direction` ("Ingress"/"Egress") traffic for the pod."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == pod_namespace
        and selector_matches(p["spec"]["podSelector"], pod_labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(r, peer, pod_namespace) for r in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False
