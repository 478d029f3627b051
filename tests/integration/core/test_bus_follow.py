"""`follow` on the session's real NATS: every process following a subject sees every message in
order (two followers both get all of them, where two replicas of a durable split them), from a
start time, skipping foreign payloads without stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import wrappers_pb2
from nats.js.api import DeliverPolicy

from mevaas_core.bus import Bus, Delivery
from mevaas_core.bus.follow import follow

pytestmark = pytest.mark.integration


async def settled(probe: Callable[[], bool], state: object, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not probe():
        assert asyncio.get_running_loop().time() < deadline, f"not settled in time: {state}"
        await asyncio.sleep(0.02)


async def test_each_follower_sees_every_message_in_order_where_a_durable_splits_them(
    bus: Bus, unique_id: str
) -> None:
    subject = f"chain.{unique_id}.block"
    before = [str(i) for i in range(5)]
    for value in before:
        await bus.publish(
            subject,
            wrappers_pb2.StringValue(value=value),
            msg_id=f"{unique_id}-{value}",
            tenant_id="_platform",
        )
    await asyncio.sleep(0.05)
    start = datetime.now(UTC)
    await asyncio.sleep(0.05)

    followed: dict[str, list[str]] = {"a": [], "b": [], "late": []}

    def into(name: str):  # type: ignore[no-untyped-def]
        async def handler(message: wrappers_pb2.StringValue) -> None:
            if message.value == "boom" and name == "a":
                raise RuntimeError("a handler that fails once")
            followed[name].append(message.value)

        return handler

    shared: dict[str, list[str]] = {"r1": [], "r2": []}

    def replica(name: str):  # type: ignore[no-untyped-def]
        async def handler(message: wrappers_pb2.StringValue, _delivery: Delivery) -> None:
            shared[name].append(message.value)
            await asyncio.sleep(0.01)

        return handler

    a = await follow(bus, "CHAIN", subject, wrappers_pb2.StringValue, into("a"), since=start)
    b = await follow(bus, "CHAIN", subject, wrappers_pb2.StringValue, into("b"), since=start)
    replicas = [
        await bus.subscribe(
            "CHAIN",
            f"split-{unique_id}",
            subject,
            wrappers_pb2.StringValue,
            replica(name),
            batch=1,
            deliver_policy=DeliverPolicy.NEW,
        )
        for name in ("r1", "r2")
    ]
    try:
        after = [str(i) for i in range(5, 45)]
        for value in after[:20]:
            await bus.publish(
                subject,
                wrappers_pb2.StringValue(value=value),
                msg_id=f"{unique_id}-{value}",
                tenant_id="_platform",
            )
        # A foreign payload and a failing handler: logged, the feed goes on.
        await bus.publish(
            subject, wrappers_pb2.Int64Value(value=7), msg_id=f"{unique_id}-int", tenant_id="_platform"
        )
        await bus.publish(
            subject, wrappers_pb2.StringValue(value="boom"), msg_id=f"{unique_id}-boom", tenant_id="_platform"
        )
        for value in after[20:]:
            await bus.publish(
                subject,
                wrappers_pb2.StringValue(value=value),
                msg_id=f"{unique_id}-{value}",
                tenant_id="_platform",
            )
        await settled(
            lambda: len(followed["b"]) == len(after) + 1 and len(followed["a"]) == len(after), followed
        )
        await settled(lambda: len(shared["r1"]) + len(shared["r2"]) == len(after) + 1, shared)
        # Followers: everything from the start time on, in order; nothing from before it.
        assert followed["a"] == after
        assert followed["b"] == [*after[:20], "boom", *after[20:]]
        # The durable's replicas share the messages: neither sees them all.
        assert shared["r1"] and shared["r2"]
        assert sorted(shared["r1"] + shared["r2"]) == sorted([*after, "boom"])
        # Without a start time only new messages come.
        late = await follow(bus, "CHAIN", subject, wrappers_pb2.StringValue, into("late"))
        await bus.publish(
            subject, wrappers_pb2.StringValue(value="new"), msg_id=f"{unique_id}-new", tenant_id="_platform"
        )
        await settled(lambda: followed["late"] == ["new"], followed)
        await late.stop()
    finally:
        await a.stop()
        await b.stop()
        for subscription in replicas:
            await subscription.stop()
    assert start - timedelta(seconds=1) < datetime.now(UTC)
