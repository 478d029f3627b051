"""What a real cluster does with a Deployment that the API emulator (kmock) does not: the deployment
controller and the kubelet. A Deployment's pods start only when every Secret its pod template
needs exists in its namespace; until then its status says 0 available (Available=False,
MinimumReplicasUnavailable) and the kubelet posts the Warning event a real one posts (FailedMount
for a Secret volume, CreateContainerConfigError's `Error: secret ... not found` for env)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mevaas_operator.kube import EVENT_KIND, KINDS, Kind, KubeClient, KubeError

SECRET_KIND = Kind("v1", "Secret", "secrets", namespaced=True)
NAMESPACE_PREFIX = "tenant-"


def missing_secrets(template: dict[str, Any], present: set[str]) -> list[tuple[str, str]]:
    """(reason, message) of the kubelet's warning for every volume or container of the pod template
    that needs a Secret absent from `present` (optional ones never stop a pod). A projected volume
    reports all its missing sources in one aggregated message, as the kubelet does."""
    spec = template.get("spec") or {}
    warnings: list[tuple[str, str]] = []
    for volume in spec.get("volumes") or []:
        sources = []
        if "secret" in volume:
            sources.append((volume["secret"].get("secretName"), volume["secret"].get("optional", False)))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                sources.append((source["secret"].get("name"), source["secret"].get("optional", False)))
        errors = [
            f'secret "{name}" not found' for name, optional in sources if not optional and name not in present
        ]
        if errors:
            detail = errors[0] if "secret" in volume else f"[{', '.join(errors)}]"
            warnings.append(
                ("FailedMount", f'MountVolume.SetUp failed for volume "{volume["name"]}" : {detail}')
            )
    for container in spec.get("containers") or []:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and not ref.get("optional", False) and ref["name"] not in present:
                warnings.append(("Failed", f'Error: secret "{ref["name"]}" not found'))
    return warnings


def _status(deployment: dict[str, Any], available: bool) -> dict[str, Any]:
    replicas = int((deployment.get("spec") or {}).get("replicas", 1))
    status: dict[str, Any] = {
        "observedGeneration": (deployment.get("metadata") or {}).get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas if available else 0,
        "availableReplicas": replicas if available else 0,
        "unavailableReplicas": 0 if available else replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            }
        ],
    }
    return status


class DeploymentController:
    """Keeps the status of every Deployment in `tenant-*` namespaces as a cluster would."""

    def __init__(self, kube: KubeClient, interval: float = 0.5) -> None:
        self._kube = kube
        self._interval = interval
        self._posted: set[tuple[str, str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(KubeError):
                await self.sync()
            await asyncio.sleep(self._interval)

    async def sync(self) -> None:
        # One cluster-wide list per pass (kmock serves every namespace's objects for it), and the
        # Secrets only of namespaces that have Deployments: the operator shares this event loop.
        listed = await self._kube.request("GET", "/apis/apps/v1/deployments")
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for deployment in (listed or {}).get("items") or []:
            namespace = (deployment.get("metadata") or {}).get("namespace", "")
            if namespace.startswith(NAMESPACE_PREFIX):
                by_namespace.setdefault(namespace, []).append(deployment)
        for namespace, deployments in by_namespace.items():
            await self._sync_namespace(namespace, deployments)

    async def _sync_namespace(self, namespace: str, deployments: list[dict[str, Any]]) -> None:
        present = {s["metadata"]["name"] for s in await self._kube.list(SECRET_KIND, namespace)}
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            missing = missing_secrets((deployment.get("spec") or {}).get("template") or {}, present)
            status = _status(deployment, available=not missing)
            if deployment.get("status") != status:
                await self._kube.patch(KINDS["Deployment"], name, {"status": status}, namespace, "status")
            for reason, message in missing:
                await self._warn(namespace, name, reason, message)

    async def _warn(self, namespace: str, deployment: str, reason: str, message: str) -> None:
        key = (namespace, deployment, message)
        if key in self._posted:
            return
        self._posted.add(key)
        pod = f"{deployment}-5d8f7c9b4-x7k2p"  # <deployment>-<replicaset hash>-<pod hash>
        await self._kube.create(
            EVENT_KIND,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{pod}.{len(self._posted):x}", "namespace": namespace},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                "type": "Warning",
                "reason": reason,
                "message": message,
                "source": {"component": "kubelet"},
                "count": 1,
            },
        )


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }
