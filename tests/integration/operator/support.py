"""What the operator tests share: running the operator (kopf, standalone) with the emulated
deployment controller against kmock, and polling the emulator until it converges."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf

from mevaas_operator.config import OperatorConfig
from mevaas_operator.handlers import build_registry
from mevaas_operator.kube import KINDS, TENANT_KIND, KubeClient, NotFoundError
from tests.fixtures.k8s import K8sEmulator
from tests.integration.operator.cluster import DeploymentController

DEADLINE = 60.0


@contextlib.asynccontextmanager
async def running_operator(config: OperatorConfig, k8s_emulator: K8sEmulator) -> AsyncIterator[None]:
    """The operator and a deployment controller (the emulator has none) until the block ends."""
    controller = DeploymentController(KubeClient.connect(k8s_emulator.url))
    await controller.start()
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(registry=build_registry(config), clusterwide=True, standalone=True, stop_flag=stop)
    )
    try:
        # Objects created while kmock is still replaying a new watch stream's initial state arrive
        # twice (replay and live), and kopf then waits for a change that never comes; start the
        # tests once the Tenant watch is streaming.
        await eventually(lambda: watching_tenants(k8s_emulator), "the operator watches Tenants")
        await asyncio.sleep(0.5)
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
        await controller.stop()


async def watching_tenants(k8s_emulator: K8sEmulator) -> bool:
    return any(
        r.params.get("watch") == "true" and r.url.path.endswith("/tenants")
        for r in list(k8s_emulator.handler)
    )


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll until `check` returns a truthy value (convergence, not speed, is under test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    last: Any = None
    while loop.time() < deadline:
        with contextlib.suppress(NotFoundError):
            last = await check()
            if last:
                return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"never converged: {what} (last: {last!r})")


async def get(kube: KubeClient, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    try:
        return await kube.get(KINDS.get(kind, TENANT_KIND), name, namespace)
    except NotFoundError:
        return None


async def names(kube: KubeClient, kind: str, namespace: str) -> set[str]:
    return {o["metadata"]["name"] for o in await kube.list(KINDS[kind], namespace)}


async def ready_at(kube: KubeClient, name: str, generation: int | None) -> dict[str, Any] | None:
    tenant = await get(kube, "Tenant", name)
    status = (tenant or {}).get("status") or {}
    if status.get("state") == "Ready" and status.get("observedGeneration") == generation:
        return tenant
    return None


def tenant_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mevaas.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "generation": 1},
        "spec": spec,
    }
