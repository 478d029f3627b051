"""An authenticated bus (issue 10, item 2), on a real nats-server running the platform's
permission model (mevaas_core.bus.identities): no anonymous client, every service able to do what
it does and nothing of another service's, a hostile tenant identity confined to its own subjects,
and the charts shipping exactly this model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig

from mevaas.events.v1 import events_pb2
from mevaas_core.bus import STREAMS, Bus, Delivery, RequestContext
from mevaas_core.bus.identities import SERVICE_NEEDS, tenant_identity, users_document
from mevaas_core.grpckit.ratelimit import SharedRateLimiter
from mevaas_core.revocation import AUTH_STREAM, RevocationFeed, RevocationSet
from mevaas_local.embedded import EmbeddedNats
from tests.fixtures.k8s import CHARTS, render_chart
from tests.fixtures.servers import HARNESS_USER, NatsAccess, platform_nats_users

pytestmark = pytest.mark.integration

TENANTS = ("acme", "initech")
_STREAM_OF = {s.subjects[0].split(".", 1)[0]: s.name for s in (*STREAMS, AUTH_STREAM)}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    nats_server = EmbeddedNats(tmp_path_factory.mktemp("bus-identities"), users=platform_nats_users(*TENANTS))
    await nats_server.start()
    harness = await Bus.connect(nats_server.url_for(HARNESS_USER), "harness")
    await harness.ensure_streams([*STREAMS, AUTH_STREAM])
    await harness.close()
    yield nats_server
    await nats_server.stop()


class Refusals:
    """A raw client as one identity, collecting the server's permission violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def connect(self, url: str, inbox: str) -> NatsClient:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        return await nats.connect(url, inbox_prefix=inbox, error_cb=on_error, max_reconnect_attempts=0)

    async def refused(self, nc: NatsClient, what: str, subject: str) -> bool:
        await nc.flush()
        for _ in range(50):
            quoted = f'"{subject.lower()}"'
            if any(f"permissions violation for {what}" in e and quoted in e for e in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False


def concrete(pattern: str, tenant: str = "t1") -> str:
    """A subject a pattern allows (``*`` -> a tenant, ``>`` -> one token)."""
    return ".".join(tenant if t == "*" else ("x" if t == ">" else t) for t in pattern.split("."))


async def test_an_unauthenticated_or_wrongly_authenticated_client_is_refused(server: EmbeddedNats) -> None:
    for url in (server.url, server.url_for("risk").replace("@", "x@", 1)):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(ValueError, match="unrestricted"):
        EmbeddedNats(server.data_dir, users=[u for u in platform_nats_users() if u.identity.user == "risk"])


@pytest.mark.parametrize("service", sorted(SERVICE_NEEDS))
async def test_each_service_identity_can_do_what_the_service_does(server: EmbeddedNats, service: str) -> None:
    needs = SERVICE_NEEDS[service]
    bus = await Bus.connect(server.url_for(service), service, request_timeout=3.0)
    try:
        # What ServiceRuntime does in every service: streams, revocation feed, audit, rate limits.
        await bus.ensure_streams()
        feed = RevocationFeed(bus, RevocationSet(), max_lifetime_seconds=60)
        await feed.start()
        await feed.stop()
        await bus.publish("audit.t1.record", events_pb2.AuditRecord(), msg_id=f"{service}-a", tenant_id="t1")
        limiter = await SharedRateLimiter.open(bus.js)
        assert await limiter.try_acquire(f"probe-{service}", 10.0, 5) == 0.0
        for pattern in needs.publishes:
            ack = await bus.publish(
                concrete(pattern), events_pb2.TenantEvent(), msg_id=f"{service}-{pattern}", tenant_id="t1"
            )
            assert ack.stream == _STREAM_OF[pattern.split(".", 1)[0]]
        seen: asyncio.Queue[str] = asyncio.Queue()

        async def handler(message: Any, delivery: Delivery) -> None:
            await seen.put(delivery.subject)

        for stream in (*needs.consumes, "TENANT"):
            prefix = next(s.subjects[0].split(".", 1)[0] for s in (*STREAMS, AUTH_STREAM) if s.name == stream)
            subscription = await bus.subscribe(
                stream, f"{service}-probe", f"{prefix}.>", events_pb2.TenantEvent, handler, max_deliver=1
            )
            await subscription.stop()
            await bus.js.delete_consumer(stream, f"{service}-probe")
        for subject in needs.observes:
            await bus.nc.subscribe(subject)
        await bus.nc.flush()
    finally:
        await bus.close()


async def test_request_reply_between_the_services_that_use_it(server: EmbeddedNats) -> None:
    for caller, needs in SERVICE_NEEDS.items():
        for pattern in needs.requests:
            (served_by,) = [s for s, n in SERVICE_NEEDS.items() if pattern in n.serves]
            callee = await Bus.connect(server.url_for(served_by), served_by, request_timeout=3.0)
            asker = await Bus.connect(server.url_for(caller), caller, request_timeout=3.0)
            try:

                async def answer(
                    request: events_pb2.TenantEvent, ctx: RequestContext, by: str = served_by
                ) -> events_pb2.TenantEvent:
                    return events_pb2.TenantEvent(tenant_id=f"{by}:{request.tenant_id}")

                service = await callee.serve(
                    concrete(pattern), f"{served_by}-q", events_pb2.TenantEvent, answer
                )
                await callee.nc.flush()
                reply = await asker.request(
                    concrete(pattern), events_pb2.TenantEvent(tenant_id=caller), events_pb2.TenantEvent
                )
                assert reply.tenant_id == f"{served_by}:{caller}"
                await service.stop()
            finally:
                await asker.close()
                await callee.close()


# What each service must not do: publish the platform events others own, read what it does not consume.
FORBIDDEN_PUBLISH = {
    "strategy": ("tenant.t1.deleted", "auth.t1.revoked", "risk.t1.decision", "exec.t1.result"),
    "risk": ("tenant.t1.deleted", "auth.t1.revoked", "opp.t1.s1", "exec.t1.result"),
    "execution": ("tenant.t1.deleted", "auth.t1.revoked", "risk.t1.decision", "opp.t1.s1"),
    "analytics": ("tenant.t1.deleted", "auth.t1.revoked", "risk.t1.decision", "exec.t1.result"),
    "tenancy": ("risk.t1.decision", "opp.t1.s1", "exec.t1.result", "chain.1.block"),
    "gateway": ("tenant.t1.deleted", "risk.t1.decision", "opp.t1.s1", "$JS.API.STREAM.DELETE.TENANT"),
}


@pytest.mark.parametrize("service", sorted(FORBIDDEN_PUBLISH))
async def test_a_service_identity_is_refused_outside_its_permissions(
    server: EmbeddedNats, service: str
) -> None:
    refusals = Refusals()
    nc = await refusals.connect(server.url_for(service), f"_INBOX_{service}")
    try:
        for subject in FORBIDDEN_PUBLISH[service]:
            await nc.publish(subject, b"forged")
            assert await refusals.refused(nc, "publish", subject), (service, subject, refusals.errors)
        other = "risk" if service != "risk" else "tenancy"
        for subject in ("opp.>", "tenant.>", f"_INBOX_{other}.>", "_INBOX.>"):
            if subject in SERVICE_NEEDS[service].observes:
                continue
            await nc.subscribe(subject)
            assert await refusals.refused(nc, "subscription", subject), (service, subject)
        # Stream administration beyond creating/updating the platform streams: refused.
        await nc.publish("$JS.API.STREAM.PURGE.TENANT", b"")
        assert await refusals.refused(nc, "publish", "$JS.API.STREAM.PURGE.TENANT")
    finally:
        await nc.close()
    # A consumer on a stream the service does not consume cannot be created (the API is refused).
    bus = await Bus.connect(server.url_for(service), service, request_timeout=1.0)
    try:
        foreign = next(
            s for s in ("AUDIT", "OPP", "RISK", "PORTFOLIO") if s not in SERVICE_NEEDS[service].consumes
        )
        with pytest.raises(nats.errors.TimeoutError):
            await bus.js.add_consumer(
                foreign, ConsumerConfig(durable_name=f"{service}-steal", filter_subject=">")
            )
    finally:
        await bus.close()


async def test_a_hostile_tenant_identity_sees_and_speaks_only_for_itself(server: EmbeddedNats) -> None:
    harness = await Bus.connect(server.url_for(HARNESS_USER), "harness")
    refusals = Refusals()
    acme_identity = tenant_identity("acme")
    acme = await refusals.connect(server.url_for(acme_identity.user), acme_identity.inbox_prefix)
    try:
        own = await acme.subscribe("opp.acme.>")
        for subject in ("opp.initech.>", "risk.initech.>", "tenant.>", "audit.>", "_INBOX_initech.>"):
            await acme.subscribe(subject)
            assert await refusals.refused(acme, "subscription", subject), subject
        await harness.nc.publish("opp.acme.s1", b"mine")
        await harness.nc.publish("opp.initech.s1", b"theirs")
        assert (await own.next_msg(timeout=5)).data == b"mine"
        # Platform events and another tenant's subjects: refused at the server.
        for subject in (
            "tenant.acme.deleted",
            "tenant.initech.deleted",
            "auth.initech.revoked",
            "chain.1.block",
            "risk._platform.killswitch",
            "opp.initech.s1",
            "$JS.API.STREAM.DELETE.OPP",
        ):
            await acme.publish(subject, b"forged")
            assert await refusals.refused(acme, "publish", subject), subject
        # JetStream only through its own durables, filtered on its own subjects.
        js = acme.jetstream(timeout=1)
        with pytest.raises(nats.errors.TimeoutError):
            await js.pull_subscribe("tenant.>", durable="execution-acme", stream="TENANT")
        mine = await js.pull_subscribe("opp.acme.>", durable="execution-acme", stream="OPP")
        (msg,) = await mine.fetch(1, timeout=5)
        assert msg.data == b"mine"
        await msg.ack_sync()
    finally:
        await acme.close()
        await harness.close()


def test_the_tenant_chart_renders_the_same_tenant_identity() -> None:
    objs = render_chart(
        "tenant", [CHARTS / "tenant" / "ci" / "enterprise-dedicated-values.yaml"], namespace="tenant-initech"
    )
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-permissions"]
    identity = tenant_identity("initech")
    assert identity.permissions is not None
    assert cm["data"]["user"] == identity.user
    assert cm["data"]["inboxPrefix"] == identity.inbox_prefix
    assert json.loads(cm["data"]["permissions.json"]) == identity.permissions.as_nats()


def test_the_platform_chart_ships_the_service_identities() -> None:
    shipped = json.loads((CHARTS / "mevaas" / "files" / "nats-users.json").read_text())
    assert shipped == users_document(), (
        "regenerate: .venv/bin/python -m mevaas_core.bus.identities > charts/mevaas/files/nats-users.json"
    )
    objs = render_chart(
        "mevaas",
        [CHARTS / "mevaas" / "ci" / "minimal-values.yaml"],
        namespace="mevaas",
        set_values=["nats.credentials.enabled=true", "operator.natsEvents=true"],
    )
    (users,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-nats-users")]
    assert json.loads(users["data"]["users.json"]) == users_document()
    # The operator connects as `operator` from a file and checks tenancy's signature.
    (operator,) = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator")
    ]
    pod = operator["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert "NATS_URL" not in env and env["SECRETS_DIR"] == "/etc/mevaas/secrets"
    assert env["JWT_PUBLIC_KEYS"] == "/etc/mevaas/jwt/public.pem"
    (secrets,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    # A projected volume: the same directory also holds the tenant database admin when enabled.
    assert secrets["projected"]["sources"] == [
        {"secret": {"name": "mevaas-nats-operator", "items": [{"key": "url", "path": "nats_url"}]}}
    ]
    (jwt,) = [v for v in pod["volumes"] if v["name"] == "jwt"]
    assert [i["path"] for i in jwt["secret"]["items"]] == ["public.pem"]  # never the private key


async def test_the_services_ran_within_their_permissions(fleet: Any, nats_access: NatsAccess) -> None:
    """Every service started by the fixtures (all five here, and whatever ran before in the
    session) connected as its own identity and was never refused by the server."""
    assert set(fleet.runtimes) == {"tenancy", "strategy", "risk", "execution", "analytics"}
    for service, runtime in fleet.runtimes.items():
        assert runtime.settings.nats_url == nats_access.url_for(service)
        assert nats_access.violations(service) == [], service
