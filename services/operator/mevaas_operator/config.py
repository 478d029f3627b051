"""Operator settings, from the environment (the platform chart sets them)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

GROUP = "mevaas.io"
VERSION = "v1alpha1"
PLURAL = "tenants"
FINALIZER = "mevaas.io/tenant-cleanup"
MANAGED_BY = "mevaas-operator"
TENANT_LABEL = "mevaas.io/tenant"
NAMESPACE_PREFIX = "tenant-"


def _default_chart() -> Path:
    # In the image the chart is at /app/charts/tenant; in a checkout it is the repository's.
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "charts" / "tenant"
        if (candidate / "Chart.yaml").is_file():
            return candidate
    return Path("/app/charts/tenant")


def _default_helm() -> str:
    return os.environ.get("MEVAAS_HELM") or shutil.which("helm") or "helm"


@dataclass(frozen=True)
class OperatorConfig:
    helm: str = field(default_factory=_default_helm)
    tenant_chart: Path = field(default_factory=_default_chart)
    # Platform-wide tenant chart values (the platform chart's tenant-defaults ConfigMap).
    tenant_values: Path | None = None
    platform_namespace: str = "mevaas"
    # Talk to this API server URL without auth (tests, `kubectl proxy`); else in-cluster/kubeconfig.
    kube_url: str | None = None
    nats_url: str | None = None
    nats_durable: str = "mevaas-operator"
    retry_delay: float = 10.0
    health_port: int = 8080
    metrics_port: int = 9090

    @classmethod
    def from_env(cls) -> OperatorConfig:
        env = os.environ
        values = env.get("MEVAAS_TENANT_VALUES")
        return cls(
            helm=_default_helm(),
            tenant_chart=Path(env["MEVAAS_TENANT_CHART"])
            if env.get("MEVAAS_TENANT_CHART")
            else _default_chart(),
            tenant_values=Path(values) if values else None,
            platform_namespace=env.get("PLATFORM_NAMESPACE", "mevaas"),
            kube_url=env.get("MEVAAS_KUBE_URL") or None,
            nats_url=env.get("NATS_URL") or None,
            nats_durable=env.get("NATS_DURABLE", "mevaas-operator"),
            retry_delay=float(env.get("MEVAAS_RETRY_DELAY", "10")),
            health_port=int(env.get("HEALTH_PORT", "8080")),
            metrics_port=int(env.get("METRICS_PORT", "9090")),
        )


def namespace_for(tenant_name: str) -> str:
    return f"{NAMESPACE_PREFIX}{tenant_name}"
