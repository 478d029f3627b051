"""Reconcile one Tenant: namespace first, then quota and limits, policies, RBAC, workloads, in that
order; then prune what the tenant owns but the new render no longer contains."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mevaas_operator.config import MANAGED_BY, TENANT_LABEL, OperatorConfig, namespace_for
from mevaas_operator.kube import KINDS, KubeClient, KubeError
from mevaas_operator.render import namespace_object, render

log = logging.getLogger(__name__)

STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("namespace", ("Namespace",)),
    ("quota", ("ResourceQuota", "LimitRange")),
    ("policies", ("NetworkPolicy",)),
    ("rbac", ("ServiceAccount", "RoleBinding")),
    ("workloads", ("ConfigMap", "Deployment")),
]
NAMESPACED_KINDS = [kind for _, kinds in STEPS for kind in kinds if kind != "Namespace"]


class ReconcileError(Exception):
    """Some objects could not be applied; `temporary` if every failure may pass on a retry."""

    def __init__(self, step: str, errors: list[str], *, temporary: bool) -> None:
        super().__init__(f"step {step}: " + "; ".join(errors))
        self.step = step
        self.errors = errors
        self.temporary = temporary


@dataclass
class Result:
    applied: int = 0
    pruned: list[str] = field(default_factory=list)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _owned(obj: dict[str, Any], tenant: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(TENANT_LABEL) == tenant and labels.get("app.kubernetes.io/managed-by") == MANAGED_BY


async def _run_step(kube: KubeClient, step: str, objects: list[dict[str, Any]]) -> int:
    errors: list[str] = []
    temporary = True
    for obj in objects:
        try:
            await kube.apply(obj)
        except KubeError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
            temporary = temporary and exc.temporary
    if errors:
        raise ReconcileError(step, errors, temporary=temporary)
    return len(objects)


async def reconcile(config: OperatorConfig, kube: KubeClient, name: str, spec: dict[str, Any]) -> Result:
    objects = [namespace_object(name, spec), *await render(config, name, spec)]
    unknown = sorted({o["kind"] for o in objects} - set(KINDS))
    if unknown:
        raise ReconcileError(
            "render", [f"the tenant chart rendered unsupported kinds {unknown}"], temporary=False
        )
    result = Result()
    for step, kinds in STEPS:
        batch = [o for o in objects if o["kind"] in kinds]
        batch.sort(key=lambda o: kinds.index(o["kind"]))
        result.applied += await _run_step(kube, step, batch)
    result.pruned = await prune(kube, name, {_key(o) for o in objects})
    return result


async def prune(kube: KubeClient, name: str, keep: set[tuple[str, str]]) -> list[str]:
    """Delete the tenant's objects not in `keep`, workloads first (reverse step order).

    Label selectors are filtered here rather than by the API server, so the same code works on
    servers that ignore them."""
    namespace = namespace_for(name)
    errors: list[str] = []
    temporary = True
    pruned: list[str] = []
    for kind_name in reversed(NAMESPACED_KINDS):
        kind = KINDS[kind_name]
        try:
            live = await kube.list(kind, namespace)
        except KubeError as exc:
            errors.append(f"list {kind.plural}: {exc}")
            temporary = temporary and exc.temporary
            continue
        for obj in live:
            meta = obj.get("metadata") or {}
            if meta.get("namespace", namespace) != namespace or not _owned(obj, name):
                continue
            if (kind_name, meta["name"]) in keep:
                continue
            try:
                if await kube.delete(kind, meta["name"], namespace):
                    pruned.append(f"{kind_name}/{meta['name']}")
            except KubeError as exc:
                errors.append(f"delete {kind_name}/{meta['name']}: {exc}")
                temporary = temporary and exc.temporary
    if errors:
        raise ReconcileError("prune", errors, temporary=temporary)
    if pruned:
        log.info("pruned %s for tenant %s", ", ".join(pruned), name)
    return pruned


async def teardown(kube: KubeClient, name: str) -> list[str]:
    """Remove everything the tenant owns, then its namespace."""
    removed = await prune(kube, name, keep=set())
    namespace = KINDS["Namespace"]
    try:
        live = await kube.get(namespace, namespace_for(name))
    except KubeError as exc:
        if exc.status == 404:
            return removed
        raise ReconcileError("teardown", [str(exc)], temporary=exc.temporary) from exc
    if _owned(live, name):
        try:
            if await kube.delete(namespace, namespace_for(name)):
                removed.append(f"Namespace/{namespace_for(name)}")
        except KubeError as exc:
            raise ReconcileError("teardown", [str(exc)], temporary=exc.temporary) from exc
    return removed
