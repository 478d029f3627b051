"""The NATS JetStream bus against a real nats-server: typed publish/consume, headers, trace
propagation, deduplication, redelivery with backoff, poison messages, max deliveries, shared
durables, graceful stop and request/reply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from nats.js.api import DeliverPolicy
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from mevaas_core.bus import (
    Bus,
    BusError,
    Delivery,
    NoRespondersError,
    PublishError,
    RemoteError,
    RequestContext,
    RequestTimeoutError,
    ServiceError,
    StreamSpec,
    content_type_for,
)
from mevaas_core.telemetry import current_trace_id, setup_tracing

pytestmark = pytest.mark.integration

Received = list[tuple[wrappers_pb2.StringValue, Delivery]]


async def eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def collector(into: Received) -> Callable[[wrappers_pb2.StringValue, Delivery], Awaitable[None]]:
    async def handler(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
        into.append((message, delivery))

    return handler


async def test_roundtrip_carries_headers_and_continues_the_trace(bus: Bus, unique_id: str) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("bus-tests", exporter=exporter)
    subject = f"opp.{unique_id}.arb"
    seen: list[tuple[str, Delivery, str | None]] = []

    async def handler(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
        seen.append((message.value, delivery, current_trace_id()))

    await bus.subscribe("OPP", f"t-{unique_id}", subject, wrappers_pb2.StringValue, handler)
    with trace.get_tracer("tests").start_as_current_span("request") as parent:
        ack = await bus.publish(
            subject,
            wrappers_pb2.StringValue(value="route-1"),
            msg_id=f"opp-{unique_id}",
            tenant_id=unique_id,
            headers={"x-extra": "kept"},
        )
        trace_id = format(parent.get_span_context().trace_id, "032x")
    assert ack.stream == "OPP" and not ack.duplicate

    await eventually(lambda: len(seen) == 1)
    value, delivery, handler_trace_id = seen[0]
    assert value == "route-1"
    assert delivery.subject == subject
    assert delivery.tenant_id == unique_id
    assert delivery.msg_id == f"opp-{unique_id}"
    assert delivery.num_delivered == 1
    assert delivery.stream == "OPP" and delivery.consumer == f"t-{unique_id}"
    assert delivery.stream_sequence == ack.seq
    assert delivery.headers["x-extra"] == "kept"
    assert delivery.headers["content-type"] == "application/protobuf; proto=google.protobuf.StringValue"
    assert delivery.headers["traceparent"].split("-")[1] == trace_id
    assert handler_trace_id == trace_id  # the handler ran inside a span of the publisher's trace

    await eventually(lambda: any(s.name == "OPP process" for s in exporter.get_finished_spans()))
    spans = {s.name: s for s in exporter.get_finished_spans() if s.context.trace_id == int(trace_id, 16)}
    publish, process = spans["OPP publish"], spans["OPP process"]
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.attributes is not None and process.attributes["tenant.id"] == unique_id


async def test_duplicate_msg_id_is_stored_once(bus: Bus, unique_id: str) -> None:
    subject = f"tenant.{unique_id}.created"
    first = await bus.publish(
        subject, wrappers_pb2.StringValue(value="a"), msg_id=unique_id, tenant_id=unique_id
    )
    again = await bus.publish(
        subject, wrappers_pb2.StringValue(value="a"), msg_id=unique_id, tenant_id=unique_id
    )
    other = await bus.publish(
        subject, wrappers_pb2.StringValue(value="b"), msg_id=unique_id + "-2", tenant_id=unique_id
    )
    assert not first.duplicate and again.duplicate and not other.duplicate
    assert again.seq == first.seq and other.seq > first.seq
    assert metric("mevaas_bus_publish_duplicates_total", stream="TENANT") >= 1

    received: Received = []
    await bus.subscribe("TENANT", f"t-{unique_id}", subject, wrappers_pb2.StringValue, collector(received))
    await eventually(lambda: len(received) == 2)
    await asyncio.sleep(0.3)
    assert [m.value for m, _ in received] == ["a", "b"]


async def test_streams_have_an_explicit_duplicate_window_and_update_in_place(
    bus: Bus, unique_id: str
) -> None:
    info = await bus.js.stream_info("OPP")
    assert info.config.duplicate_window == 120
    assert info.config.subjects == ["opp.>"]

    name = f"T{unique_id.upper()}"
    spec = StreamSpec(name, (f"scratch{unique_id}.>",), timedelta(hours=1), "test stream")
    await bus.ensure_streams([spec])
    await bus.ensure_streams([spec])  # idempotent
    await bus.ensure_streams([StreamSpec(name, spec.subjects, timedelta(hours=2), "test stream")])
    assert (await bus.js.stream_info(name)).config.max_age == 7200
    await bus.js.delete_stream(name)


async def test_ensure_streams_from_many_replicas_at_once(bus: Bus, nats_server: str, unique_id: str) -> None:
    spec = StreamSpec(f"C{unique_id.upper()}", (f"race{unique_id}.>",), timedelta(hours=1), "race")
    others = [await Bus.connect(nats_server, f"replica-{i}") for i in range(3)]
    try:
        await asyncio.gather(*(b.ensure_streams([spec]) for b in [bus, *others]))
        assert (await bus.js.stream_info(spec.name)).config.subjects == list(spec.subjects)
    finally:
        await asyncio.gather(*(b.close() for b in others))
        await bus.js.delete_stream(spec.name)


async def test_a_redeployed_consumer_takes_its_new_settings(bus: Bus, unique_id: str) -> None:
    durable, subject = f"t-{unique_id}", f"opp.{unique_id}.>"
    received: Received = []
    first = await bus.subscribe("OPP", durable, subject, wrappers_pb2.StringValue, collector(received))
    await first.stop()
    await bus.subscribe(
        "OPP", durable, subject, wrappers_pb2.StringValue, collector(received), max_deliver=9, ack_wait=12
    )
    config = (await bus.js.consumer_info("OPP", durable)).config
    assert config.max_deliver == 9 and config.ack_wait == 12
    with pytest.raises(BusError, match="deliver policy"):
        await bus.subscribe(
            "OPP",
            durable,
            subject,
            wrappers_pb2.StringValue,
            collector(received),
            deliver_policy=DeliverPolicy.NEW,
        )


async def test_publish_to_a_subject_no_stream_captures_fails_clearly(bus: Bus, unique_id: str) -> None:
    with pytest.raises(PublishError, match="no stream captures"):
        await bus.publish(f"nostream{unique_id}.x", wrappers_pb2.StringValue(), msg_id="1", tenant_id="t")
    with pytest.raises(ValueError, match="msg_id"):
        await bus.publish("opp.t.x", wrappers_pb2.StringValue(), msg_id="", tenant_id="t")


async def test_failing_handler_is_redelivered_with_backoff_then_succeeds(bus: Bus, unique_id: str) -> None:
    subject = f"risk.decision.{unique_id}"
    attempts: list[tuple[int, float]] = []

    async def flaky(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
        attempts.append((delivery.num_delivered, time.monotonic()))
        if delivery.num_delivered < 3:
            raise RuntimeError("transient")

    errors_before = metric("mevaas_bus_handler_errors_total", stream="RISK", consumer=f"t-{unique_id}")
    await bus.subscribe(
        "RISK", f"t-{unique_id}", subject, wrappers_pb2.StringValue, flaky, backoff=[0.2, 0.4]
    )
    await bus.publish(subject, wrappers_pb2.StringValue(value="x"), msg_id=unique_id, tenant_id=unique_id)
    await eventually(lambda: len(attempts) == 3)
    await asyncio.sleep(0.6)
    assert [n for n, _ in attempts] == [1, 2, 3]  # acked on the third: no fourth delivery
    assert attempts[1][1] - attempts[0][1] >= 0.18  # first backoff step
    assert attempts[2][1] - attempts[1][1] >= 0.38  # second backoff step
    consumer = await bus.js.consumer_info("RISK", f"t-{unique_id}")
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
    labels = {"stream": "RISK", "consumer": f"t-{unique_id}"}
    assert metric("mevaas_bus_handler_errors_total", **labels) - errors_before == 2
    assert metric("mevaas_bus_consumed_total", outcome="ack", **labels) == 1


async def test_poison_messages_are_terminated_not_retried(bus: Bus, unique_id: str) -> None:
    subject = f"exec.result.{unique_id}"
    received: Received = []
    await bus.subscribe("EXEC", f"t-{unique_id}", subject, wrappers_pb2.StringValue, collector(received))
    content_type = content_type_for(wrappers_pb2.StringValue)
    # Not protobuf at all; another message type; no tenant-id header; then a good one.
    await bus.js.publish(subject, b"\xff\xff\xff", headers={"tenant-id": "t", "content-type": content_type})
    await bus.publish(subject, struct_pb2.Struct(), msg_id=f"{unique_id}-struct", tenant_id="t")
    await bus.js.publish(subject, wrappers_pb2.StringValue(value="?").SerializeToString())
    await bus.publish(
        subject, wrappers_pb2.StringValue(value="good"), msg_id=f"{unique_id}-ok", tenant_id="t"
    )

    await eventually(lambda: len(received) == 1)
    labels = {"stream": "EXEC", "consumer": f"t-{unique_id}"}
    await eventually(lambda: metric("mevaas_bus_consumed_total", outcome="term", **labels) == 3)
    await asyncio.sleep(0.5)
    assert [m.value for m, _ in received] == ["good"]
    consumer = await bus.js.consumer_info("EXEC", f"t-{unique_id}")
    assert consumer.num_ack_pending == 0 and consumer.num_redelivered == 0


async def test_message_is_dropped_after_max_deliver_and_the_advisory_logged(
    bus: Bus, unique_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mevaas.bus")
    subject = f"opp.{unique_id}.doomed"
    attempts: list[int] = []

    async def always_fails(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        raise RuntimeError("permanent")

    await bus.subscribe(
        "OPP",
        f"t-{unique_id}",
        subject,
        wrappers_pb2.StringValue,
        always_fails,
        max_deliver=3,
        backoff=[0.05],
    )
    await bus.publish(
        subject, wrappers_pb2.StringValue(value="x"), msg_id=f"doomed-{unique_id}", tenant_id="t"
    )
    labels = {"stream": "OPP", "consumer": f"t-{unique_id}"}
    await eventually(lambda: metric("mevaas_bus_max_deliveries_total", **labels) == 1)
    await asyncio.sleep(0.5)
    assert attempts == [1, 2, 3]
    dropped = [r.getMessage() for r in caplog.records if "dropped after" in r.getMessage()]
    assert dropped and f"doomed-{unique_id}" in dropped[0] and subject in dropped[0]


async def test_replicas_on_one_durable_share_the_work_without_duplicates(
    bus: Bus, nats_server: str, unique_id: str
) -> None:
    subject = f"chain.{unique_id}.block"
    durable = f"t-{unique_id}"
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def handler_for(replica: str) -> Callable[[wrappers_pb2.StringValue, Delivery], Awaitable[None]]:
        async def handle(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
            seen[replica].append(message.value)
            await asyncio.sleep(0.002)  # some work, so both replicas get a share

        return handle

    other = await Bus.connect(nats_server, "replica-b")
    try:
        await bus.subscribe("CHAIN", durable, subject, wrappers_pb2.StringValue, handler_for("a"), batch=8)
        await other.subscribe("CHAIN", durable, subject, wrappers_pb2.StringValue, handler_for("b"), batch=8)
        total = 300
        for i in range(total):
            await bus.publish(
                subject, wrappers_pb2.StringValue(value=str(i)), msg_id=f"{unique_id}-{i}", tenant_id="t"
            )
        await eventually(lambda: len(seen["a"]) + len(seen["b"]) >= total)
        await asyncio.sleep(0.3)
        everything = seen["a"] + seen["b"]
        assert len(everything) == total
        assert Tally(everything) == Tally(str(i) for i in range(total))  # each exactly once
        assert seen["a"] and seen["b"]
    finally:
        await other.close()


async def test_a_stopped_replica_hands_its_buffered_messages_to_the_others(
    bus: Bus, nats_server: str, unique_id: str
) -> None:
    subject = f"opp.{unique_id}.handoff"
    durable = f"t-{unique_id}"
    done: list[str] = []
    release = asyncio.Event()

    async def slow(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
        await release.wait()
        done.append(message.value)

    async def fast(message: wrappers_pb2.StringValue, delivery: Delivery) -> None:
        done.append(message.value)

    first = await bus.subscribe(
        "OPP", durable, subject, wrappers_pb2.StringValue, slow, batch=50, ack_wait=60
    )
    for i in range(20):
        await bus.publish(
            subject, wrappers_pb2.StringValue(value=str(i)), msg_id=f"{unique_id}-{i}", tenant_id="t"
        )
    await asyncio.sleep(0.3)  # the slow replica now holds most of them
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.05)
    other = await Bus.connect(nats_server, "replica-fast")
    try:
        await other.subscribe("OPP", durable, subject, wrappers_pb2.StringValue, fast)
        release.set()
        await stopping
        # Well within ack_wait (60 s): the buffered ones were handed back, not left to time out.
        await eventually(lambda: len(set(done)) == 20, within=5)
    finally:
        await other.close()


async def test_ack_sync_confirms_each_ack(bus: Bus, unique_id: str) -> None:
    subject = f"audit.{unique_id}.write"
    received: Received = []
    await bus.subscribe(
        "AUDIT", f"t-{unique_id}", subject, wrappers_pb2.StringValue, collector(received), ack_sync=True
    )
    for i in range(5):
        await bus.publish(
            subject, wrappers_pb2.StringValue(value=str(i)), msg_id=f"{unique_id}-{i}", tenant_id="t"
        )
    await eventually(lambda: len(received) == 5)
    await eventually(
        lambda: (
            metric("mevaas_bus_consumed_total", stream="AUDIT", consumer=f"t-{unique_id}", outcome="ack") == 5
        )
    )
    consumer = await bus.js.consumer_info("AUDIT", f"t-{unique_id}")
    assert consumer.num_ack_pending == 0
    assert [m.value for m, _ in received] == ["0", "1", "2", "3", "4"]  # concurrency 1 keeps order


async def test_request_reply_with_queue_group_errors_and_timeouts(
    bus: Bus, nats_server: str, unique_id: str
) -> None:
    subject = f"svc.{unique_id}.echo"

    async def echo(request: wrappers_pb2.StringValue, ctx: RequestContext) -> wrappers_pb2.StringValue:
        if request.value == "missing":
            raise ServiceError(404, "no such thing")
        if request.value == "crash":
            raise RuntimeError("boom")
        if request.value == "slow":
            await asyncio.sleep(1.0)
        return wrappers_pb2.StringValue(value=f"{request.value}:{ctx.tenant_id}")

    served_by: list[str] = []

    def tracking(
        name: str,
    ) -> Callable[[wrappers_pb2.StringValue, RequestContext], Awaitable[wrappers_pb2.StringValue]]:
        async def handle(request: wrappers_pb2.StringValue, ctx: RequestContext) -> wrappers_pb2.StringValue:
            served_by.append(name)
            return await echo(request, ctx)

        return handle

    other = await Bus.connect(nats_server, "server-b")
    try:
        await bus.serve(subject, "echo", wrappers_pb2.StringValue, tracking("a"))
        await other.serve(subject, "echo", wrappers_pb2.StringValue, tracking("b"))
        await other.nc.flush()

        reply = await bus.request(
            subject, wrappers_pb2.StringValue(value="hi"), wrappers_pb2.StringValue, tenant_id="t1"
        )
        assert reply.value == "hi:t1"
        for _ in range(30):
            await bus.request(subject, wrappers_pb2.StringValue(value="x"), wrappers_pb2.StringValue)
        assert len(served_by) == 31  # each request answered once, by one member of the group
        assert set(served_by) == {"a", "b"}

        with pytest.raises(RemoteError) as missing:
            await bus.request(subject, wrappers_pb2.StringValue(value="missing"), wrappers_pb2.StringValue)
        assert missing.value.code == 404 and missing.value.message == "no such thing"
        with pytest.raises(RemoteError) as crash:
            await bus.request(subject, wrappers_pb2.StringValue(value="crash"), wrappers_pb2.StringValue)
        assert crash.value.code == 500
        with pytest.raises(RequestTimeoutError):
            await bus.request(
                subject, wrappers_pb2.StringValue(value="slow"), wrappers_pb2.StringValue, timeout=0.2
            )
        with pytest.raises(NoRespondersError):
            await bus.request(f"svc.{unique_id}.nobody", wrappers_pb2.StringValue(), wrappers_pb2.StringValue)
    finally:
        await other.close()


async def test_a_request_is_asked_again_while_nobody_serves_it_for_a_moment(
    bus: Bus, nats_server: str, unique_id: str
) -> None:
    """NATS answers "no responders" for a moment while a subject's responder is being replaced (a
    rolling restart; and, rarely, right after a new one subscribed): nobody received the request,
    so it is asked again a few times over ~150 ms and the responder that came up answers it."""
    subject = f"svc.{unique_id}.late"

    async def echo(request: wrappers_pb2.StringValue, ctx: RequestContext) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=f"late:{request.value}")

    asked = asyncio.create_task(
        bus.request(subject, wrappers_pb2.StringValue(value="hi"), wrappers_pb2.StringValue)
    )
    await asyncio.sleep(0.02)  # the first ask has been answered "no responders"
    assert not asked.done()
    responder = await Bus.connect(nats_server, "late-responder")
    try:
        await responder.serve(subject, "late", wrappers_pb2.StringValue, echo)
        await responder.nc.flush()
        assert (await asked).value == "late:hi"
    finally:
        await responder.close()
