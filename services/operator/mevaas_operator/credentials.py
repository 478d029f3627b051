"""The Secrets a dedicated tenant's workers read that the operator writes itself, never through
the helm render (so no credential is in a render, the tenant-defaults file, a helm release or a
log): the tenant's own database logins (mevaas_operator.tenant_db) and its data key
(mevaas_operator.data_keys). The operator writes them blind (create, else replace their data) and
never reads a Secret back."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from mevaas_operator.config import MANAGED_BY, TENANT_LABEL, OperatorConfig, namespace_for
from mevaas_operator.data_keys import DataKeyCourier, DataKeyError
from mevaas_operator.kube import KubeClient, KubeError

log = logging.getLogger(__name__)

# The namespace records what the operator made for it, so that the tenant's move to a shared tier
# (or its deletion) removes it.
LOGINS_ANNOTATION = "mevaas.io/tenant-db-logins"
DATA_KEY_ANNOTATION = "mevaas.io/tenant-data-key"
# On the pod template of every workload that mounts the data key: the version it was given, so a
# rotated data key (a new version) rolls those pods onto it.
DATA_KEY_VERSION_ANNOTATION = "mevaas.io/data-key-version"


class CredentialsError(Exception):
    """The database could not be reached or refused; retried."""


def tenant_id_of(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("tenantId") or name)  # as render.tenant_values names it


def _worker_secrets(config: OperatorConfig) -> dict[str, Any]:
    """The tenant chart's `workers.secrets`, as the platform's tenant-defaults file sets them."""
    chart_defaults = yaml.safe_load((config.tenant_chart / "values.yaml").read_text())
    entries: dict[str, Any] = json.loads(json.dumps(chart_defaults["workers"]["secrets"]))
    if config.tenant_values is not None and Path(config.tenant_values).is_file():
        platform = yaml.safe_load(Path(config.tenant_values).read_text()) or {}
        for group, value in (((platform.get("workers") or {}).get("secrets")) or {}).items():
            if group == "database":
                entries["database"] = {**entries.get("database", {}), **value}
            else:
                entries[group] = value
    return entries


def database_secrets(config: OperatorConfig) -> dict[str, tuple[str, str]]:
    """service -> (Secret name, key) the workers mount their login from."""
    entries = _worker_secrets(config)["database"]
    return {service: (entry["name"], entry["key"]) for service, entry in entries.items()}


def data_key_secret(config: OperatorConfig) -> tuple[str, str]:
    """(Secret name, key) the execution worker mounts its ring from."""
    entry = _worker_secrets(config)["dataKey"]
    return entry["name"], entry["key"]


def marks(config: OperatorConfig, courier: DataKeyCourier | None) -> dict[str, str]:
    """The namespace annotations of what the operator writes for a dedicated tenant."""
    made = {LOGINS_ANNOTATION: "true"} if config.tenant_db is not None else {}
    return made | ({DATA_KEY_ANNOTATION: "true"} if courier is not None else {})


def marked(namespace: dict[str, Any] | None) -> bool:
    annotations = ((namespace or {}).get("metadata") or {}).get("annotations") or {}
    return LOGINS_ANNOTATION in annotations or DATA_KEY_ANNOTATION in annotations


def secret_object(tenant: str, name: str, key: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace_for(tenant),
            "labels": {TENANT_LABEL: tenant, "app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


@dataclass
class Written:
    secrets: list[str] = field(default_factory=list)
    # The version of the tenant's data key delivered (None without a courier).
    data_key_id: str | None = None


def _mounts_secret(template: dict[str, Any], secret: str) -> bool:
    for volume in (template.get("spec") or {}).get("volumes") or []:
        sources = [volume.get("secret") or {}]
        sources += [s.get("secret") or {} for s in (volume.get("projected") or {}).get("sources") or []]
        if any(source.get("secretName", source.get("name")) == secret for source in sources):
            return True
    return False


def stamp_data_key_version(config: OperatorConfig, objects: list[dict[str, Any]], key_id: str) -> None:
    """Annotate the pod template of each Deployment that mounts the data key Secret with the version
    delivered: the pods restart when it changes (they read the key once, at start)."""
    secret, _ = data_key_secret(config)
    for obj in objects:
        template = (obj.get("spec") or {}).get("template")
        if obj.get("kind") == "Deployment" and template is not None and _mounts_secret(template, secret):
            metadata = template.setdefault("metadata", {})
            metadata.setdefault("annotations", {})[DATA_KEY_VERSION_ANNOTATION] = key_id


async def ensure(
    config: OperatorConfig, kube: KubeClient, name: str, spec: dict[str, Any], courier: DataKeyCourier | None
) -> Written:
    """Create (or bring up to date) the tenant's database logins and data key, and write their
    Secrets."""
    written = Written()
    if config.tenant_db is not None:
        try:
            dsns = await config.tenant_db.ensure(tenant_id_of(name, spec))
        except (asyncpg.PostgresError, OSError) as exc:
            raise CredentialsError(f"tenant database logins: {exc.__class__.__name__}") from exc
        for service, (secret, key) in database_secrets(config).items():
            if service in dsns:
                await kube.write_secret(secret_object(name, secret, key, dsns[service]))
                written.secrets.append(f"Secret/{secret}")
    if courier is not None:
        try:
            key_id, ring = await courier.ring(tenant_id_of(name, spec))
        except DataKeyError as exc:
            raise CredentialsError(str(exc)) from exc
        secret, key = data_key_secret(config)
        await kube.write_secret(secret_object(name, secret, key, ring))
        log.info("tenant %s: data key %s written to Secret %s", name, key_id, secret)
        written.secrets.append(f"Secret/{secret}")
        written.data_key_id = key_id
    return written


async def remove(config: OperatorConfig, kube: KubeClient, name: str, spec: dict[str, Any]) -> list[str]:
    """Drop the tenant's logins and delete every Secret the operator wrote (idempotent). The data
    key itself stays in the platform: the tenant's wallets are wrapped under it."""
    removed = []
    if config.tenant_db is not None:
        try:
            dropped = await config.tenant_db.drop(tenant_id_of(name, spec))
        except (asyncpg.PostgresError, OSError) as exc:
            raise CredentialsError(f"tenant database logins: {exc.__class__.__name__}") from exc
        removed += [f"role/{role}" for role in dropped]
    secrets = [secret for secret, _ in database_secrets(config).values()]
    for secret in [*secrets, data_key_secret(config)[0]]:
        try:
            if await kube.delete_secret(secret, namespace_for(name)):
                removed.append(f"Secret/{secret}")
        except KubeError as exc:
            raise CredentialsError(str(exc)) from exc
    return removed
