"""Whether a tenant's workloads run: a Tenant is Ready only when every Deployment it owns is
available, and when one is not, its status says why in the words the cluster used."""

from __future__ import annotations

from typing import Any

from mevaas_operator.config import namespace_for
from mevaas_operator.kube import EVENT_KIND, KINDS, KubeClient, KubeError
from mevaas_operator.render import owned

# At most this many distinct warnings per Deployment go into the Tenant's status message.
MAX_WARNINGS = 3


def unavailable(deployment: dict[str, Any]) -> str | None:
    """Why a Deployment is not available yet, or None: its controller has seen the current
    generation and every desired replica is updated and available (what `kubectl rollout status`
    waits for)."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name")
    desired = int(spec.get("replicas", 1))
    generation = meta.get("generation")
    if generation is not None and int(status.get("observedGeneration", 0)) < int(generation):
        return f"Deployment/{name}: generation {generation} not observed yet"
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < desired or available < desired:
        return f"Deployment/{name}: {available}/{desired} available, {updated} updated"
    return None


def _timestamp(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def warnings_for(deployment: str, events: list[dict[str, Any]]) -> list[str]:
    """The latest distinct Warning messages about the Deployment's ReplicaSets and Pods (named
    `<deployment>-<hash>[-<hash>]`): a missing Secret shows as `FailedMount ... secret "x" not
    found`, an exhausted quota as `FailedCreate ... exceeded quota`."""
    prefix = f"{deployment}-"
    relevant = [
        e
        for e in events
        if e.get("type") == "Warning"
        and (e.get("involvedObject") or {}).get("kind") in ("Pod", "ReplicaSet")
        and str((e.get("involvedObject") or {}).get("name", "")).startswith(prefix)
    ]
    relevant.sort(key=_timestamp, reverse=True)
    messages: list[str] = []
    for event in relevant:
        message = f"{event.get('reason', 'Warning')}: {event.get('message', '')}".strip()
        if message not in messages:
            messages.append(message)
        if len(messages) == MAX_WARNINGS:
            break
    return messages


async def unavailable_workloads(kube: KubeClient, name: str) -> list[str]:
    """The tenant's Deployments that do not run yet, each with the cluster's warnings about its
    pods (the Tenant is Ready only when this is empty)."""
    namespace = namespace_for(name)
    deployments = await kube.list(KINDS["Deployment"], namespace)
    reasons = [(d["metadata"]["name"], unavailable(d)) for d in deployments if owned(d, name)]
    waiting = [(deployment, reason) for deployment, reason in reasons if reason]
    if not waiting:
        return []
    try:
        events = await kube.list(EVENT_KIND, namespace)
    except KubeError:
        events = []  # the reason without the cluster's words is still the reason
    out: list[str] = []
    for deployment, reason in waiting:
        warnings = warnings_for(deployment, events)
        out.append(f"{reason} ({'; '.join(warnings)})" if warnings else reason)
    return out
