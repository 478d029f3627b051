"""kopf handlers: Tenant create/update/resume -> reconcile; delete -> teardown behind a finalizer;
status conditions and observedGeneration on every outcome."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any

import kopf

from mevaas_core.bus.signing import EventVerifier
from mevaas_operator.availability import unavailable_workloads
from mevaas_operator.config import FINALIZER, GROUP, PLURAL, VERSION, OperatorConfig, namespace_for
from mevaas_operator.data_keys import DataKeyCourier
from mevaas_operator.events import TenantEventConsumer
from mevaas_operator.kube import KubeClient, KubeError
from mevaas_operator.metrics import (
    DRIFT_REPAIRED,
    PRUNED,
    RECONCILE_SECONDS,
    RECONCILES,
    TenantStates,
)
from mevaas_operator.reconcile import ReconcileError, reconcile, teardown
from mevaas_operator.render import RenderError

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(
    status: dict[str, Any], value: str, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    """The Ready condition; lastTransitionTime moves only when its status changes."""
    previous = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    changed = previous is None or previous.get("status") != value
    condition: dict[str, Any] = {
        "type": "Ready",
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": _now()
        if changed or previous is None
        else previous.get("lastTransitionTime", _now()),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def set_status(
    patch: kopf.Patch,
    name: str,
    body: kopf.Body,
    *,
    state: str,
    ready: str,
    reason: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Put the status into kopf's patch: kopf writes it (through the status subresource) in the
    same round as its own bookkeeping, so the operator never reacts to its own status writes."""
    generation = body.get("metadata", {}).get("generation")
    patch.status["state"] = state
    patch.status["namespace"] = namespace_for(name)
    patch.status["conditions"] = [
        ready_condition(dict(body.get("status") or {}), ready, reason, message, generation)
    ]
    if generation is not None:
        patch.status["observedGeneration"] = generation
    for key, value in (extra or {}).items():
        patch.status[key] = value


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers on a fresh registry (so tests and the process each get their own)."""
    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {}
    locks: dict[str, asyncio.Lock] = {}
    # The digest of the render last applied to each Tenant (drift is a change under the same one).
    renders: dict[str, str] = {}
    tenants = TenantStates()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.level = logging.WARNING
        settings.networking.request_timeout = 30
        settings.watching.server_timeout = 300
        # At most this many Tenants render at once (a restart resumes every Tenant together).
        settings.batching.worker_limit = config.workers
        kube = KubeClient.connect(config.kube_url)
        state["kube"] = kube
        if config.nats_url:
            if not config.event_public_keys:
                raise RuntimeError(
                    "NATS_URL is set but JWT_PUBLIC_KEYS is not: the operator acts only on tenant events "
                    "signed by tenancy and needs its public key to check them"
                )
            consumer = TenantEventConsumer(
                config.nats_url,
                kube,
                EventVerifier(config.event_public_keys),
                durable=config.nats_durable,
                tls_ca_file=config.nats_tls_ca_file,
            )
            await consumer.start()
            state["consumer"] = consumer
        if config.tenant_data_keys:
            if "consumer" not in state:
                raise RuntimeError(
                    "MEVAAS_TENANT_DATA_KEYS needs NATS (the operator's identity asks for the keys)"
                )
            state["courier"] = DataKeyCourier(state["consumer"].connection)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        consumer: TenantEventConsumer | None = state.pop("consumer", None)
        if consumer is not None:
            await consumer.stop()
        kube: KubeClient | None = state.pop("kube", None)
        if kube is not None:
            kube.close()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if config.kube_url:
            return kopf.ConnectionInfo(server=config.kube_url, insecure=True)
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    async def run(name: str, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, trigger: str) -> None:
        """Reconcile one Tenant and put the outcome in its status. Ready means the objects match the
        render and every Deployment of the tenant is available; until then the Tenant is
        Provisioning and the handler is retried. One reconcile per Tenant at a time (the resync
        timer and the change handlers share a lock)."""
        kube: KubeClient = state["kube"]
        lock = locks.setdefault(name, asyncio.Lock())
        async with lock:
            started = time.monotonic()
            try:
                result = await reconcile(config, kube, name, dict(spec), state.get("courier"))
                waiting = await unavailable_workloads(kube, name)
            except RenderError as exc:
                failed(patch, name, body, str(exc), trigger)
                raise kopf.PermanentError(f"render failed: {exc}") from exc
            except ReconcileError as exc:
                if not exc.temporary:
                    failed(patch, name, body, str(exc), trigger)
                    raise kopf.PermanentError(str(exc)) from exc
                RECONCILES.labels("retried", trigger).inc()
                provisioning(patch, name, body, "Reconciling", str(exc))
                raise kopf.TemporaryError(str(exc), delay=config.retry_delay) from exc
            except KubeError as exc:
                RECONCILES.labels("retried", trigger).inc()
                provisioning(patch, name, body, "Reconciling", str(exc))
                raise kopf.TemporaryError(str(exc), delay=config.retry_delay) from exc
            finally:
                RECONCILE_SECONDS.observe(time.monotonic() - started)
            drift = result.drift(renders.get(name))
            renders[name] = result.digest
        PRUNED.inc(len(result.pruned))
        for item in drift:
            DRIFT_REPAIRED.labels(item.split("/", 1)[0]).inc()
        if drift:
            log.warning("tenant %s drifted from its render; restored %s", name, ", ".join(drift))
        extra = {"tier": spec.get("tier", "starter"), "appliedObjects": result.applied}
        if waiting:
            RECONCILES.labels("waiting", trigger).inc()
            provisioning(patch, name, body, "WorkloadsUnavailable", "; ".join(waiting), extra)
            if trigger == "resync":
                return  # the next resync looks again; a change handler retries sooner
            raise kopf.TemporaryError("workloads not available yet", delay=config.retry_delay)
        RECONCILES.labels("succeeded", trigger).inc()
        tenants.set(name, "Ready")
        set_status(
            patch,
            name,
            body,
            state="Ready",
            ready="True",
            reason="Succeeded",
            message=f"{result.applied} objects applied ({len(result.changes)} written), "
            f"{len(result.pruned)} pruned; workloads available",
            extra=extra,
        )

    def failed(patch: kopf.Patch, name: str, body: kopf.Body, message: str, trigger: str) -> None:
        RECONCILES.labels("failed", trigger).inc()
        tenants.set(name, "Failed")
        set_status(patch, name, body, state="Failed", ready="False", reason="Failed", message=message)

    def provisioning(
        patch: kopf.Patch,
        name: str,
        body: kopf.Body,
        reason: str,
        message: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        tenants.set(name, "Provisioning")
        set_status(
            patch,
            name,
            body,
            state="Provisioning",
            ready="False",
            reason=reason,
            message=message,
            extra=extra,
        )

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def reconcile_tenant(
        name: str, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any
    ) -> None:
        await run(name, spec, body, patch, "change")

    # Drift repair: kopf reacts to changes of the Tenant only, not of the objects it owns (a
    # deleted NetworkPolicy or a hand-edited RoleBinding would stay), nor to a changed
    # tenant-defaults file. The timer re-renders and re-applies every Tenant; an unchanged object
    # costs one GET and no write.
    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        interval=config.resync_interval,
        initial_delay=config.resync_interval,
        when=lambda body, **_: not body.get("metadata", {}).get("deletionTimestamp"),
    )
    async def resync_tenant(name: str, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        if ((body.get("status") or {}).get("state")) not in ("Ready", "Provisioning", None):
            return  # a Failed Tenant waits for a change of its spec
        try:
            await run(name, spec, body, patch, "resync")
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.warning("resync of tenant %s: %s", name, exc)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def delete_tenant(name: str, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        kube: KubeClient = state["kube"]
        set_status(
            patch, name, body, state="Terminating", ready="False", reason="Reconciling", message="deleting"
        )
        tenants.set(name, "Terminating")
        try:
            async with locks.setdefault(name, asyncio.Lock()):
                removed = await teardown(kube, name, config, dict(spec))
        except (ReconcileError, KubeError) as exc:
            if getattr(exc, "temporary", False):
                raise kopf.TemporaryError(str(exc), delay=config.retry_delay) from exc
            raise kopf.PermanentError(str(exc)) from exc
        tenants.forget(name)
        locks.pop(name, None)
        renders.pop(name, None)
        log.info("tenant %s removed: %s", name, ", ".join(removed) or "nothing left")

    return registry
