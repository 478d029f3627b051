"""Operator settings, from the environment (the platform chart sets them)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mevaas_core.config import read_secret
from mevaas_operator.tenant_db import TenantDatabase

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
    # PEM public keys (or paths to PEM files) of tenancy's signing key: tenant events signed by
    # none of them are never acted on (mevaas_core.bus.signing). Required with nats_url.
    event_public_keys: tuple[str, ...] = ()
    # PEM CA bundle verifying a tls:// NATS server (the platform CA).
    nats_tls_ca_file: str = ""
    # Tenants reconciled at once: each render holds helm's output (~50 MB) in memory.
    workers: int = 4
    retry_delay: float = 10.0
    # Every Tenant is re-rendered and re-applied this often: what was deleted or changed by hand
    # is restored, and a changed tenant-defaults file reaches every tenant.
    resync_interval: float = 300.0
    health_port: int = 8080
    metrics_port: int = 9090
    # Per-tenant database logins of dedicated workers (mevaas_operator.tenant_db): with it the
    # operator creates them and writes their Secrets; without, an SRE does.
    tenant_db: TenantDatabase | None = None
    # Dedicated tenants' data keys, asked of the platform's execution over NATS (sealed to the
    # operator) and written into the Secret their execution worker reads (mevaas_operator.data_keys).
    tenant_data_keys: bool = False

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
            # The URL carries the operator's NATS identity: a file (SECRETS_DIR/nats_url), not env.
            nats_url=read_secret("NATS_URL") or None,
            event_public_keys=public_keys(env.get("JWT_PUBLIC_KEYS", "")),
            nats_durable=env.get("NATS_DURABLE", "mevaas-operator"),
            nats_tls_ca_file=env.get("NATS_TLS_CA_FILE", ""),
            workers=int(env.get("MEVAAS_WORKERS", "4")),
            retry_delay=float(env.get("MEVAAS_RETRY_DELAY", "10")),
            resync_interval=float(env.get("MEVAAS_RESYNC_SECONDS", "300")),
            health_port=int(env.get("HEALTH_PORT", "8080")),
            metrics_port=int(env.get("METRICS_PORT", "9090")),
            tenant_db=tenant_database(),
            tenant_data_keys=env.get("MEVAAS_TENANT_DATA_KEYS", "").lower() in ("1", "true"),
        )


def tenant_database() -> TenantDatabase | None:
    """From the files TENANT_DB_ADMIN_URL and TENANT_DB_PASSWORD_SEED of SECRETS_DIR (and the
    workers' DSN without credentials, TENANT_DB_WORKER_URL); None when not configured."""
    admin = read_secret("TENANT_DB_ADMIN_URL")
    if not admin:
        return None
    seed = read_secret("TENANT_DB_PASSWORD_SEED")
    if len(seed) < 32:
        raise ValueError("TENANT_DB_PASSWORD_SEED must be at least 32 characters")
    return TenantDatabase(admin, seed.encode(), os.environ.get("TENANT_DB_WORKER_URL", ""))


def public_keys(value: str) -> tuple[str, ...]:
    """PEMs, or paths to PEM files, separated by ';'."""
    items = (part.strip() for part in value.split(";"))
    return tuple(item if "BEGIN" in item else Path(item).read_text() for item in items if item)


def namespace_for(tenant_name: str) -> str:
    return f"{NAMESPACE_PREFIX}{tenant_name}"
