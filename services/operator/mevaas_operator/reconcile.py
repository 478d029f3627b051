"""Reconcile one Tenant: namespace first, then quota and limits, policies, RBAC, workloads, in that
order; then prune what the tenant owns but the new render no longer contains."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mevaas_operator import credentials
from mevaas_operator.config import OperatorConfig, namespace_for
from mevaas_operator.data_keys import DataKeyCourier
from mevaas_operator.kube import KINDS, KubeClient, KubeError
from mevaas_operator.render import namespace_object, owned, render

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    # Of the render (chart, platform values and spec): when it is the one applied last time, any
    # object found missing, changed or extra was changed by someone else (drift).
    digest: str = ""
    # "Kind/name" -> created | patched | restored, for every object that was written.
    changes: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)

    def drift(self, previous_digest: str | None) -> list[str]:
        """What was changed by hand: objects edited since this operator wrote them (restored)
        always; with the same render as last time, also objects recreated or pruned."""
        if previous_digest == self.digest:
            return [*self.changes, *self.pruned]
        return [key for key, outcome in self.changes.items() if outcome == "restored"]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


async def _run_step(kube: KubeClient, step: str, objects: list[dict[str, Any]], result: Result) -> None:
    errors: list[str] = []
    temporary = True
    for obj in objects:
        try:
            outcome = await kube.apply(obj)
        except KubeError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
            temporary = temporary and exc.temporary
            continue
        result.applied += 1
        if outcome != "unchanged":
            result.changes[f"{obj['kind']}/{obj['metadata']['name']}"] = outcome
    if errors:
        raise ReconcileError(step, errors, temporary=temporary)


async def refuse_foreign_namespace(kube: KubeClient, name: str) -> dict[str, Any] | None:
    """A `tenant-<name>` namespace the operator did not create is never adopted (it would apply
    into it, prune in it and finally delete it): the Tenant fails until the namespace is gone.
    Returns the live namespace (None if there is none yet)."""
    try:
        live = await kube.get(KINDS["Namespace"], namespace_for(name))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise ReconcileError("namespace", [str(exc)], temporary=exc.temporary) from exc
    if not owned(live, name):
        raise ReconcileError(
            "namespace",
            [f"namespace {namespace_for(name)} exists and was not created for this Tenant; not adopting it"],
            temporary=False,
        )
    return live


async def reconcile(
    config: OperatorConfig,
    kube: KubeClient,
    name: str,
    spec: dict[str, Any],
    courier: DataKeyCourier | None = None,
) -> Result:
    live_namespace = await refuse_foreign_namespace(kube, name)
    namespace = namespace_object(name, spec)
    objects = [namespace, *await render(config, name, spec)]
    unknown = sorted({o["kind"] for o in objects} - set(KINDS))
    if unknown:
        raise ReconcileError(
            "render", [f"the tenant chart rendered unsupported kinds {unknown}"], temporary=False
        )
    # Dedicated workers get the tenant's own database logins and data key, made by the operator.
    made = credentials.marks(config, courier) if any(o["kind"] == "Deployment" for o in objects) else {}
    if made:
        namespace["metadata"].setdefault("annotations", {}).update(made)
    result = Result()
    for step, kinds in STEPS:
        if step == "workloads" and made:
            written = await _run_credentials(credentials.ensure(config, kube, name, spec, courier))
            if written.data_key_id is not None:
                credentials.stamp_data_key_version(config, objects, written.data_key_id)
        batch = [o for o in objects if o["kind"] in kinds]
        batch.sort(key=lambda o: kinds.index(o["kind"]))
        await _run_step(kube, step, batch, result)
    # Of what was applied (a rotated data key's version included: it is no drift).
    result.digest = hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()
    result.pruned = await prune(kube, name, {_key(o) for o in objects})
    if not made and credentials.marked(live_namespace):
        result.pruned += await _run_credentials(credentials.remove(config, kube, name, spec))
    return result


async def _run_credentials(work: Awaitable[T]) -> T:
    try:
        return await work
    except (credentials.CredentialsError, KubeError) as exc:
        raise ReconcileError("credentials", [str(exc)], temporary=True) from exc


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
            if meta.get("namespace", namespace) != namespace or not owned(obj, name):
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


async def teardown(
    kube: KubeClient, name: str, config: OperatorConfig | None = None, spec: dict[str, Any] | None = None
) -> list[str]:
    """Remove everything the tenant owns (its database logins too), then its namespace."""
    removed = await prune(kube, name, keep=set())
    namespace = KINDS["Namespace"]
    try:
        live = await kube.get(namespace, namespace_for(name))
    except KubeError as exc:
        if exc.status == 404:
            return removed
        raise ReconcileError("teardown", [str(exc)], temporary=exc.temporary) from exc
    if config is not None and credentials.marked(live):
        removed += await _run_credentials(credentials.remove(config, kube, name, spec or {}))
    if owned(live, name):
        try:
            if await kube.delete(namespace, namespace_for(name)):
                removed.append(f"Namespace/{namespace_for(name)}")
        except KubeError as exc:
            raise ReconcileError("teardown", [str(exc)], temporary=exc.temporary) from exc
    return removed
