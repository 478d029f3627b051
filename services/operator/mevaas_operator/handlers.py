"""kopf handlers: Tenant create/update/resume -> reconcile; delete -> teardown behind a finalizer;
status conditions and observedGeneration on every outcome."""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

import kopf
from prometheus_client import Counter, Histogram

from mevaas_operator.config import FINALIZER, GROUP, PLURAL, VERSION, OperatorConfig, namespace_for
from mevaas_operator.events import TenantEventConsumer
from mevaas_operator.kube import KubeClient, KubeError
from mevaas_operator.reconcile import ReconcileError, reconcile, teardown
from mevaas_operator.render import RenderError

log = logging.getLogger(__name__)

RECONCILES = Counter("mevaas_operator_reconciles_total", "Tenant reconciliations by outcome.", ["outcome"])
RECONCILE_SECONDS = Histogram("mevaas_operator_reconcile_seconds", "Time to reconcile one Tenant.")
PRUNED = Counter(
    "mevaas_operator_pruned_objects_total", "Objects deleted because a Tenant no longer renders them."
)


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

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.level = logging.WARNING
        settings.networking.request_timeout = 30
        settings.watching.server_timeout = 300
        kube = KubeClient.connect(config.kube_url)
        state["kube"] = kube
        if config.nats_url:
            consumer = TenantEventConsumer(config.nats_url, kube, durable=config.nats_durable)
            await consumer.start()
            state["consumer"] = consumer

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

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def reconcile_tenant(
        name: str, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any
    ) -> None:
        kube: KubeClient = state["kube"]
        tier = spec.get("tier", "starter")
        started = time.monotonic()
        try:
            result = await reconcile(config, kube, name, dict(spec))
        except RenderError as exc:
            RECONCILES.labels("failed").inc()
            set_status(patch, name, body, state="Failed", ready="False", reason="Failed", message=str(exc))
            raise kopf.PermanentError(f"render failed: {exc}") from exc
        except ReconcileError as exc:
            if exc.temporary:
                RECONCILES.labels("retried").inc()
                set_status(
                    patch,
                    name,
                    body,
                    state="Provisioning",
                    ready="False",
                    reason="Reconciling",
                    message=str(exc),
                )
                raise kopf.TemporaryError(str(exc), delay=config.retry_delay) from exc
            RECONCILES.labels("failed").inc()
            set_status(patch, name, body, state="Failed", ready="False", reason="Failed", message=str(exc))
            raise kopf.PermanentError(str(exc)) from exc
        finally:
            RECONCILE_SECONDS.observe(time.monotonic() - started)
        RECONCILES.labels("succeeded").inc()
        PRUNED.inc(len(result.pruned))
        set_status(
            patch,
            name,
            body,
            state="Ready",
            ready="True",
            reason="Succeeded",
            message=f"{result.applied} objects applied, {len(result.pruned)} pruned",
            extra={"tier": tier, "appliedObjects": result.applied},
        )

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def delete_tenant(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        kube: KubeClient = state["kube"]
        set_status(
            patch, name, body, state="Terminating", ready="False", reason="Reconciling", message="deleting"
        )
        try:
            removed = await teardown(kube, name)
        except (ReconcileError, KubeError) as exc:
            if getattr(exc, "temporary", False):
                raise kopf.TemporaryError(str(exc), delay=config.retry_delay) from exc
            raise kopf.PermanentError(str(exc)) from exc
        log.info("tenant %s removed: %s", name, ", ".join(removed) or "nothing left")

    return registry
