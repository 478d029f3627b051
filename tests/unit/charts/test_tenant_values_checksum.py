"""A change of any platform value that reaches tenant namespaces restarts the operator (which then
re-renders every Tenant): the operator reads tenant values only from the tenant-defaults
ConfigMap, and its pod's `checksum/tenant-values` changes exactly when that ConfigMap does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.k8s import render_chart

# Values that reach tenant namespaces (policies, workers, role names), one change each.
TENANT_AFFECTING = [
    "database.cidr=10.20.0.0/16",
    "database.port=6432",
    "nats.url=nats://nats.other.svc:4222",
    "nats.namespace=other-nats",
    "nats.streamReplicas=3",
    "tls.caBundle=-----BEGIN CERTIFICATE-----",
    "image.tag=9.9.9",
    "image.registry=registry.example.org/mevaas",
    "image.digests.execution=sha256:" + "a" * 64,
    "imagePullSecrets[0].name=pull",
    "otlp.endpoint=http://collector.monitoring:4317",
    "otlp.cidr=10.30.0.0/16",
    "grpcPort=50061",
    "operator.tenantDefaults.dnsNamespace=dns-system",
    "operator.tenantDefaults.monitoringNamespace=observability",
    "operator.tenantDefaults.workerSecrets.nats.name=tenant-bus",
]
# Values that do not: the operator must not restart (and re-render every Tenant) for them.
PLATFORM_ONLY = [
    "services.risk.replicas=3",
    "logLevel=DEBUG",
    "monitoring.prometheusRule.consumerLagSeconds=60",
]


# Lists are replaced whole: as values files.
LIST_CHANGES: dict[str, dict[str, Any]] = {
    "chains": {"chains": [{"chainId": 1, "name": "ethereum", "rpcUrl": "https://rpc.example.org"}]},
    "chainRpcEgress": {"chainRpcEgress": [{"cidr": "198.51.100.0/24", "ports": [{"port": 8545}]}]},
}


def operator_state(set_values: list[str], values_files: list[Path] | None = None) -> tuple[str, str]:
    objs = render_chart(
        "mevaas", values_files or [], namespace="mevaas", release="mevaas", set_values=set_values
    )
    by_key: dict[tuple[str, str], dict[str, Any]] = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    deployment = by_key[("Deployment", "mevaas-operator")]
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/tenant-values"]
    values = by_key[("ConfigMap", "mevaas-operator-tenant-defaults")]["data"]["values.yaml"]
    return str(checksum), str(values)


@pytest.fixture(scope="module")
def baseline() -> tuple[str, str]:
    return operator_state([])


@pytest.mark.parametrize("change", TENANT_AFFECTING)
def test_a_tenant_affecting_value_restarts_the_operator(baseline: tuple[str, str], change: str) -> None:
    checksum, values = operator_state([change])
    assert values != baseline[1], f"{change} does not reach the tenant-defaults ConfigMap"
    assert checksum != baseline[0], f"{change} changes tenant values but not the operator's checksum"


@pytest.mark.parametrize("name", sorted(LIST_CHANGES))
def test_a_changed_list_restarts_the_operator(baseline: tuple[str, str], name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(LIST_CHANGES[name]))
    checksum, rendered = operator_state([], [values])
    assert rendered != baseline[1] and checksum != baseline[0], name


@pytest.mark.parametrize("change", PLATFORM_ONLY)
def test_a_platform_only_value_leaves_tenants_alone(baseline: tuple[str, str], change: str) -> None:
    assert operator_state([change]) == baseline
