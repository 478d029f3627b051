"""Render charts/tenant for one Tenant with the real helm binary (`helm template`)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mevaas_operator.config import MANAGED_BY, TENANT_LABEL, OperatorConfig, namespace_for


class RenderError(Exception):
    """helm rejected the values (schema) or the chart: retrying the same spec cannot help."""


def tenant_values(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The tenant chart's values for a Tenant spec (platform values come from the defaults file)."""
    values: dict[str, Any] = {
        "tenant": {
            "name": name,
            "id": spec.get("tenantId") or name,
            "displayName": spec.get("displayName", ""),
        },
        "tier": spec.get("tier", "starter"),
        "isolation": spec.get("isolation", "shared"),
        "owners": [
            {"kind": o.get("kind", "User"), "name": o["name"], "role": o["role"]}
            for o in spec.get("owners") or []
        ],
        "quota": {"hard": dict((spec.get("quota") or {}).get("hard") or {})},
        "limitRange": dict(spec.get("limitRange") or {}),
        "network": {"egress": list((spec.get("network") or {}).get("egress") or [])},
        "branding": dict(spec.get("branding") or {}),
        "scheduling": {
            "nodeSelector": dict((spec.get("scheduling") or {}).get("nodeSelector") or {}),
            "tolerations": list((spec.get("scheduling") or {}).get("tolerations") or []),
        },
    }
    return values


async def render(config: OperatorConfig, name: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects the Tenant should have, each labelled as owned by the operator for this tenant."""
    namespace = namespace_for(name)
    with tempfile.TemporaryDirectory(prefix="mevaas-render-") as tmp:
        values_file = Path(tmp) / "tenant.yaml"
        values_file.write_text(yaml.safe_dump(tenant_values(name, spec)))
        args = [config.helm, "template", name, str(config.tenant_chart), "--namespace", namespace]
        if config.tenant_values is not None:
            args += ["-f", str(config.tenant_values)]
        args += ["-f", str(values_file)]
        env = {
            **os.environ,
            "HELM_CACHE_HOME": f"{tmp}/cache",
            "HELM_CONFIG_HOME": f"{tmp}/config",
            "HELM_DATA_HOME": f"{tmp}/data",
        }
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RenderError(stderr.decode(errors="replace").strip() or f"helm exited with {proc.returncode}")
    objects = [doc for doc in yaml.safe_load_all(stdout) if doc]
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        labels = meta.setdefault("labels", {})
        labels[TENANT_LABEL] = name
        labels["app.kubernetes.io/managed-by"] = MANAGED_BY
    return objects


def owned(obj: dict[str, Any], tenant: str) -> bool:
    """Whether the operator made this object for this tenant (the labels `render` puts on)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(TENANT_LABEL) == tenant and labels.get("app.kubernetes.io/managed-by") == MANAGED_BY


def namespace_object(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace_for(name),
            "labels": {
                TENANT_LABEL: name,
                "mevaas.io/tier": spec.get("tier", "starter"),
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/part-of": "mevaas",
                # Pod Security admission: tenant workloads run restricted.
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }
