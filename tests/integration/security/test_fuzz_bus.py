"""Bus payloads are validated at the edge, once, in mevaas_core.bus (issue 10): a malformed message
(random bytes, another or no content type, no or an oversized tenant header, NUL characters, 1 MB
strings, uint64 beyond BIGINT, invalid timestamps) is terminated by a durable consumer and
answered 400 by a request/reply server; neither crashes nor wedges, and the well-formed messages
around the bad ones are handled in order.

The fleet part walks every request/reply subject each service serves and every durable consumer
it runs, and fuzzes them all. ``MEVAAS_FUZZ_BUS_COUNT`` sets the cases per subject (default 12)."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import nats
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mevaas.events.v1 import events_pb2
from mevaas_core.bus import (
    HEADER_CONTENT_TYPE,
    HEADER_SERVICE_ERROR,
    HEADER_SERVICE_ERROR_CODE,
    HEADER_TENANT,
    Bus,
    Delivery,
    RequestContext,
    content_type_for,
)
from mevaas_core.bus.inbound import MAX_PAYLOAD_BYTES, InvalidPayload, decode_inbound
from tests.fixtures.fleet import Fleet
from tests.integration.security.fuzzing import FORBIDDEN_TEXT, payloads

pytestmark = pytest.mark.integration

COUNT = int(os.environ.get("MEVAAS_FUZZ_BUS_COUNT", "12"))
OPP = content_type_for(events_pb2.Opportunity)


def malformed(tenant: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """(why, payload, headers) of one bad Opportunity of each kind."""
    good = {HEADER_CONTENT_TYPE: OPP, HEADER_TENANT: tenant}
    bad_time = events_pb2.Opportunity(opportunity_id="o")
    bad_time.detected_at.CopyFrom(timestamp_pb2.Timestamp(seconds=2**62))
    return [
        ("random bytes", b"\xff\x00\x13garbage", good),
        (
            "no content type",
            events_pb2.Opportunity(opportunity_id="o").SerializeToString(),
            {HEADER_TENANT: tenant},
        ),
        (
            "another type",
            b"",
            {HEADER_CONTENT_TYPE: content_type_for(events_pb2.RiskDecision), HEADER_TENANT: tenant},
        ),
        ("no tenant", b"", {HEADER_CONTENT_TYPE: OPP}),
        ("huge tenant", b"", {HEADER_CONTENT_TYPE: OPP, HEADER_TENANT: "t" * 4096}),
        ("NUL", events_pb2.Opportunity(opportunity_id="a\x00b").SerializeToString(), good),
        ("1 MB id", events_pb2.Opportunity(strategy_id="x" * 1000).SerializeToString(), good),
        ("uint64 max", events_pb2.Opportunity(chain_id=2**64 - 1).SerializeToString(), good),
        ("bad timestamp", bad_time.SerializeToString(), good),
    ]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def test_decode_inbound_refuses_each_kind_and_an_oversized_payload() -> None:
    for why, data, headers in malformed("t-1"):
        with pytest.raises(InvalidPayload):
            decode_inbound(events_pb2.Opportunity, data, headers, tenant_required=True)
            pytest.fail(why)
    headers = {HEADER_CONTENT_TYPE: OPP, HEADER_TENANT: "t-1"}
    too_big = events_pb2.Opportunity(
        opportunity_id="o", target_tx_hash="r" * MAX_PAYLOAD_BYTES
    ).SerializeToString()
    with pytest.raises(InvalidPayload, match="exceeds"):
        decode_inbound(events_pb2.Opportunity, too_big, headers, tenant_required=True)
    ok = events_pb2.Opportunity(opportunity_id="o", chain_id=1)
    assert decode_inbound(events_pb2.Opportunity, ok.SerializeToString(), headers, tenant_required=True) == ok


async def test_a_consumer_terminates_malformed_messages_and_keeps_going(bus: Bus, unique_id: str) -> None:
    subject = f"opp.{unique_id}.fuzz"
    seen: list[str] = []

    async def handler(message: events_pb2.Opportunity, delivery: Delivery) -> None:
        seen.append(message.opportunity_id)

    subscription = await bus.subscribe("OPP", f"fuzz-{unique_id}", subject, events_pb2.Opportunity, handler)
    expected: list[str] = []
    for round_ in range(3):
        for _, data, headers in malformed(unique_id):
            await bus.js.publish(subject, data, headers=headers)
        good = events_pb2.Opportunity(opportunity_id=f"good-{round_}", tenant_id=unique_id)
        await bus.publish(subject, good, msg_id=f"{unique_id}-{round_}", tenant_id=unique_id)
        expected.append(good.opportunity_id)

    async def drained() -> bool:
        info = await bus.js.consumer_info("OPP", f"fuzz-{unique_id}")
        return len(seen) == 3 and info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(drained)
    assert seen == expected
    info = await bus.js.consumer_info("OPP", f"fuzz-{unique_id}")
    assert info.num_redelivered == 0  # terminated, never retried
    assert subscription.running


async def test_a_server_answers_malformed_requests_with_400(bus: Bus, unique_id: str) -> None:
    subject = f"rpc.fuzz.{unique_id}"

    async def answer(request: events_pb2.Opportunity, context: RequestContext) -> events_pb2.Opportunity:
        return events_pb2.Opportunity(opportunity_id=request.opportunity_id + "!")

    await bus.serve(subject, f"q-{unique_id}", events_pb2.Opportunity, answer)
    for why, data, headers in malformed(unique_id):
        if why == "no tenant":
            continue  # a request may come without a tenant; its handler decides
        reply = await bus.nc.request(subject, data, timeout=5, headers=headers)
        assert (reply.headers or {}).get(HEADER_SERVICE_ERROR_CODE) == "400", why
    answered = await bus.request(subject, events_pb2.Opportunity(opportunity_id="ok"), events_pb2.Opportunity)
    assert answered.opportunity_id == "ok!"


def descriptor_of(message_type: type[Message]) -> Descriptor:
    descriptor: Descriptor = message_type.DESCRIPTOR  # type: ignore[assignment]
    return descriptor


def concrete(filter_subject: str, tenant: str) -> str:
    """A subject the filter matches, with a fresh tenant (or chain) token for the wildcards."""
    tokens = [tenant if t == "*" else ("fuzz" if t == ">" else t) for t in filter_subject.split(".")]
    return ".".join(tokens)


async def test_every_bus_handler_of_the_fleet_survives_fuzzed_payloads(
    fleet: Fleet, nats_server: str
) -> None:
    rng = random.Random(int(os.environ.get("MEVAAS_FUZZ_SEED", "10")))
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    answers: Counter[str] = Counter()
    failures: list[str] = []
    consumers: list[tuple[str, str, str]] = []  # (service, stream, durable)
    try:
        for name, runtime in fleet.runtimes.items():
            bus = runtime.bus
            for served in bus.served:
                content_type = content_type_for(served.request_type)
                subject = concrete(served.subject, str(uuid.uuid4()))
                for data in payloads(descriptor_of(served.request_type), rng, COUNT):
                    if len(data) > nc.max_payload:  # NATS itself refuses it, client-side
                        answers["beyond max_payload"] += 1
                        continue
                    headers = {HEADER_CONTENT_TYPE: content_type, HEADER_TENANT: str(uuid.uuid4())}
                    try:
                        reply = await nc.request(subject, data, timeout=10, headers=headers)
                    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                        failures.append(f"{name} {served.subject}: {type(exc).__name__}")
                        continue
                    code = (reply.headers or {}).get(HEADER_SERVICE_ERROR_CODE, "ok")
                    text = (reply.headers or {}).get(HEADER_SERVICE_ERROR, "")
                    answers[code] += 1
                    if code.startswith("5"):
                        failures.append(f"{name} {served.subject}: {code} {text[:160]}")
                    elif any(t in text.lower() for t in FORBIDDEN_TEXT):
                        failures.append(f"{name} {served.subject}: shows {text[:160]!r}")
            for subscription in bus.subscriptions:
                if subscription.stream == "CHAIN":
                    # Market data is shared by every test of the session (followers replay it);
                    # the consumer path itself is fuzzed above and in the mechanism tests.
                    continue
                consumers.append((name, subscription.stream, subscription.durable))
                content_type = content_type_for(subscription.message_type)
                for data in payloads(descriptor_of(subscription.message_type), rng, COUNT):
                    if len(data) > nc.max_payload:
                        continue
                    tenant = str(uuid.uuid4())
                    subject = concrete(subscription.filter_subject, tenant)
                    headers = {
                        HEADER_CONTENT_TYPE: content_type,
                        HEADER_TENANT: tenant,
                        "Nats-Msg-Id": f"fuzz-{uuid.uuid4().hex}",
                    }
                    await js.publish(subject, data, headers=headers)
        assert consumers and sum(answers.values()) > 0
        print("bus request answers:", dict(answers), "consumers fuzzed:", len(consumers))

        # Nothing wedged: every consumer has been handed all it was sent (the failing ones are
        # in their backoff, not blocking the rest), and every service still runs and serves.
        async def delivered() -> bool:
            for _, stream, durable in consumers:
                if (await js.consumer_info(stream, durable)).num_pending:
                    return False
            return True

        await eventually(delivered, timeout=60)
        for name, runtime in fleet.runtimes.items():
            assert all(s.running for s in runtime.bus.subscriptions), name
            async with fleet.channel(name) as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                assert health.status == health_pb2.HealthCheckResponse.SERVING, name
    finally:
        await nc.close()
    assert failures == [], "\n".join(failures[:40])
