"""Turn tenancy's `tenant.<tenant_id>.<kind>` events (JetStream stream TENANT, protobuf
mevaas.events.v1.TenantEvent) into Tenant objects: created/updated/tier_changed/suspended/resumed
create or patch the Tenant named by the tenant's slug; deleted deletes it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError as StreamNotFoundError

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.bus.identities import inbox_prefix
from mevaas_core.bus.signing import EventVerifier
from mevaas_operator.kube import TENANT_KIND, KubeClient, KubeError, NotFoundError
from mevaas_operator.metrics import REJECTED_EVENTS

log = logging.getLogger(__name__)

STREAM = "TENANT"
SUBJECTS = ["tenant.>"]
DURABLE = "mevaas-operator"
VERSION_ANNOTATION = "mevaas.io/tenant-version"


TIERS = {
    common_pb2.TIER_STARTER: "starter",
    common_pb2.TIER_PROFESSIONAL: "professional",
    common_pb2.TIER_ENTERPRISE: "enterprise",
}
ISOLATIONS = {common_pb2.ISOLATION_SHARED: "shared", common_pb2.ISOLATION_DEDICATED: "dedicated"}


def tenant_spec(snapshot: events_pb2.TenantSnapshot, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The Tenant spec for a snapshot; owners and branding other than what tenancy owns are kept."""
    spec: dict[str, Any] = {
        "tenantId": snapshot.tenant_id,
        "displayName": snapshot.display_name,
        "tier": TIERS.get(snapshot.tier, "starter"),
        "isolation": ISOLATIONS.get(snapshot.isolation, "shared"),
    }
    kept = [
        o
        for o in (existing or {}).get("owners") or []
        if o.get("role") != "owner" or o.get("kind") == "Group"
    ]
    spec["owners"] = [
        {"kind": "User", "name": uid, "role": "owner"} for uid in snapshot.owner_user_ids
    ] + kept
    if snapshot.custom_domain:
        spec["branding"] = {**((existing or {}).get("branding") or {}), "domain": snapshot.custom_domain}
    return spec


async def apply_event(kube: KubeClient, event: events_pb2.TenantEvent) -> str:
    """Apply one event to the Tenant objects; returns what was done (for logs and tests)."""
    snapshot = event.tenant
    name = snapshot.slug
    if not name:
        return "ignored: no slug"
    if event.kind == events_pb2.TENANT_EVENT_KIND_DELETED:
        return "deleted" if await kube.delete(TENANT_KIND, name) else "already deleted"
    try:
        live: dict[str, Any] | None = await kube.get(TENANT_KIND, name)
    except NotFoundError:
        live = None
    annotations = {VERSION_ANNOTATION: str(snapshot.version)}
    if live is None:
        body = {
            "apiVersion": TENANT_KIND.api_version,
            "kind": TENANT_KIND.kind,
            "metadata": {"name": name, "annotations": annotations},
            "spec": tenant_spec(snapshot, None),
        }
        await kube.create(TENANT_KIND, body)
        return "created"
    held = int(((live.get("metadata") or {}).get("annotations") or {}).get(VERSION_ANNOTATION, "0") or 0)
    if snapshot.version and snapshot.version <= held:
        return "stale"
    patch = {"metadata": {"annotations": annotations}, "spec": tenant_spec(snapshot, live.get("spec"))}
    await kube.patch(TENANT_KIND, name, patch)
    return "patched"


class TenantEventConsumer:
    """A durable JetStream pull consumer on TENANT; temporary Kubernetes errors are redelivered."""

    def __init__(
        self,
        url: str,
        kube: KubeClient,
        verifier: EventVerifier,
        *,
        durable: str = DURABLE,
        batch: int = 16,
        tls_ca_file: str = "",
    ) -> None:
        self._url = url
        self._verifier = verifier
        self._tls_ca_file = tls_ca_file
        self._kube = kube
        self._durable = durable
        self._batch = batch
        self._nc: NatsClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        tls = ssl.create_default_context(cafile=self._tls_ca_file) if self._tls_ca_file else None
        user = urlsplit(self._url.split(",")[0].strip()).username
        self._nc = await nats.connect(
            self._url,
            name="mevaas-operator",
            max_reconnect_attempts=-1,
            tls=tls,
            # Replies come on the operator identity's own inbox (mevaas_core.bus.identities).
            inbox_prefix=inbox_prefix(unquote(user)) if user else "_INBOX",
        )
        js = self._nc.jetstream()
        try:
            await js.stream_info(STREAM)
        except StreamNotFoundError:
            # tenancy normally creates it; creating it here only lets the operator start first.
            await js.add_stream(StreamConfig(name=STREAM, subjects=SUBJECTS, duplicate_window=120))
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=20, ack_wait=30)
        subscription = await js.pull_subscribe(
            "tenant.>", durable=self._durable, stream=STREAM, config=config
        )
        self._task = asyncio.create_task(self._run(subscription), name="tenant-events")

    def connection(self) -> NatsClient | None:
        """The operator's NATS connection (also used to ask for tenant data keys), once started."""
        return self._nc

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    async def _run(self, subscription: Any) -> None:
        while True:
            try:
                messages = await subscription.fetch(self._batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("tenant events: fetch failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for msg in messages:
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        # Being allowed on the bus is not enough: only tenancy's signature makes an event true.
        if not self._verifier.verify(msg.subject, msg.data, msg.headers):
            log.error("tenant events: %s is not signed by tenancy; dropped, nothing done", msg.subject)
            REJECTED_EVENTS.inc()
            await msg.term()
            return
        try:
            event = events_pb2.TenantEvent.FromString(msg.data)
        except Exception:
            log.exception("tenant events: undecodable message on %s dropped", msg.subject)
            await msg.term()
            return
        try:
            outcome = await apply_event(self._kube, event)
        except KubeError as exc:
            if exc.temporary:
                log.warning("tenant events: %s for %s, redelivering: %s", event.kind, event.tenant.slug, exc)
                await msg.nak(delay=2)
                return
            log.error("tenant events: %s for %s rejected: %s", event.kind, event.tenant.slug, exc)
            await msg.term()
            return
        log.info("tenant events: %s %s -> %s", msg.subject, event.tenant.slug, outcome)
        await msg.ack_sync()
