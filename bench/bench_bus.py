"""Bus benchmark: our JetStream layer against bare nats-py in the same run, on the same server.

Payload: a two-hop `mevaas.events.v1.Opportunity` (the hot path's message, ~400 bytes).

* ours: `Bus.publish` (protobuf encode, Nats-Msg-Id / tenant-id / content-type headers, a
  producer span with traceparent injected, metrics, await JetStream's ack) and `Bus.subscribe`
  (continuous pull, decode, consumer span continuing the trace, handler, explicit ack, metrics),
  with tracing on (SDK tracer provider, no exporter);
* bare: `js.publish(subject, payload_bytes)` awaiting the ack, and a pull subscription looping
  `fetch(batch)` + `msg.ack()` without decoding: the least any JetStream consumer does.

Figures: publish throughput (one publisher awaiting each ack, and 32 concurrent publishers),
consume throughput (draining a backlog with a durable pull consumer), and end-to-end latency
(publish -> handler start, one message in flight at a time) p50/p99. Ratios are ours / bare
(throughput: higher is better; latency: lower is better).

    .venv/bin/python bench/bench_bus.py [--messages 5000] [--latency-samples 1000]

Set NATS_URL to measure against an external server instead of an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import nats
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.bus import Bus, Delivery
from mevaas_core.telemetry import setup_tracing
from mevaas_local.embedded import EmbeddedNats

STREAM = "OPP"
PUBLISH_CONCURRENCY = 32
CONSUME_BATCH = 64


def opportunity(i: int) -> events_pb2.Opportunity:
    now = Timestamp()
    now.GetCurrentTime()
    weth, usdc = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    return events_pb2.Opportunity(
        event_id=f"evt-{i}",
        tenant_id="tenant-bench",
        occurred_at=now,
        opportunity_id=f"opp-{i:012d}",
        strategy_id="strategy-1",
        strategy_version=3,
        chain_id=1,
        chain_ids=[1],
        swap_cycle=events_pb2.SwapCycleAction(
            hops=[
                events_pb2.RouteHop(
                    chain_id=1,
                    pool="0xB4e16d0168e52d35CaCD2c6185b44281Ec28C9Dc",
                    token_in=weth,
                    token_out=usdc,
                    dex="uniswap_v2",
                    amount_in="1000000000000000000",
                    amount_out="3012345678",
                    fee_bps=30,
                ),
                events_pb2.RouteHop(
                    chain_id=1,
                    pool="0x397FF1542f962076d0BFE58eA045FfA2d347ACa0",
                    token_in=usdc,
                    token_out=weth,
                    dex="sushiswap",
                    amount_in="3012345678",
                    amount_out="1004000000000000000",
                    fee_bps=30,
                ),
            ],
            amount_in="1000000000000000000",
            financing=events_pb2.FINANCING_INVENTORY,
        ),
        expected_profit="4000000000000000",
        profit_token=common_pb2.Token(chain_id=1, address=weth, symbol="WETH", decimals=18),
        gas_estimate=180_000,
        gas_price="20000000000",
        expected_profit_net_of_gas="400000000000000",
        detected_block=19_000_000 + i,
        deadline_block=19_000_002 + i,
        detected_at=now,
        block_seen_at=now,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def until(predicate: Callable[[], bool], within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark stalled")
        await asyncio.sleep(0.0005)


async def in_windows(n: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> None:
    for start in range(0, n, concurrency):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + concurrency))))


# ----------------------------------------------------------------------------------------- ours


async def ours_publish(bus: Bus, n: int, concurrency: int) -> float:
    run = uuid.uuid4().hex[:8]
    messages = [opportunity(i) for i in range(n)]

    async def one(i: int) -> None:
        await bus.publish(f"opp.bench-{run}.s1", messages[i], msg_id=f"{run}-{i}", tenant_id="tenant-bench")

    started = time.perf_counter()
    if concurrency == 1:
        for i in range(n):
            await one(i)
    else:
        await in_windows(n, concurrency, one)
    return n / (time.perf_counter() - started)


async def ours_consume(bus: Bus, n: int) -> float:
    run = uuid.uuid4().hex[:8]
    subject = f"opp.bench-{run}.s1"
    await in_windows(
        n,
        PUBLISH_CONCURRENCY,
        lambda i: bus.publish(subject, opportunity(i), msg_id=f"{run}-{i}", tenant_id="tenant-bench"),
    )
    count = 0

    async def handler(message: events_pb2.Opportunity, delivery: Delivery) -> None:
        nonlocal count
        count += 1

    started = time.perf_counter()
    subscription = await bus.subscribe(
        STREAM, f"bench-{run}", subject, events_pb2.Opportunity, handler, batch=CONSUME_BATCH
    )
    await until(lambda: count >= n)
    elapsed = time.perf_counter() - started
    await subscription.stop()
    return n / elapsed


async def ours_latency(bus: Bus, samples: int) -> list[float]:
    run = uuid.uuid4().hex[:8]
    subject = f"opp.bench-{run}.s1"
    received: list[float] = []

    async def handler(message: events_pb2.Opportunity, delivery: Delivery) -> None:
        received.append(time.perf_counter())

    subscription = await bus.subscribe(STREAM, f"bench-{run}", subject, events_pb2.Opportunity, handler)
    latencies = []
    for i in range(samples):
        message = opportunity(i)
        sent = time.perf_counter()
        await bus.publish(subject, message, msg_id=f"{run}-{i}", tenant_id="tenant-bench")
        await until(lambda i=i: len(received) > i)  # type: ignore[misc]
        latencies.append(received[i] - sent)
    await subscription.stop()
    return latencies


# ----------------------------------------------------------------------------------------- bare


async def bare_publish(js: JetStreamContext, n: int, concurrency: int, *, our_headers: bool = False) -> float:
    """Bare publish; with ``our_headers`` it sends the same four headers as ours (fixed values), to
    tell the cost of the headers on the wire and of msg-id dedupe in the server from our code's."""
    run = uuid.uuid4().hex[:8]
    payloads = [opportunity(i).SerializeToString() for i in range(n)]
    content_type = "application/protobuf; proto=" + events_pb2.Opportunity.DESCRIPTOR.full_name
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def one(i: int) -> None:
        headers = None
        if our_headers:
            headers = {
                "Nats-Msg-Id": f"{run}-{i}",
                "tenant-id": "tenant-bench",
                "content-type": content_type,
                "traceparent": traceparent,
            }
        await js.publish(f"opp.bare-{run}.s1", payloads[i], headers=headers)

    started = time.perf_counter()
    if concurrency == 1:
        for i in range(n):
            await one(i)
    else:
        await in_windows(n, concurrency, one)
    return n / (time.perf_counter() - started)


async def bare_pull(js: JetStreamContext, subject: str, durable: str) -> JetStreamContext.PullSubscription:
    config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30)
    return await js.pull_subscribe(subject, durable=durable, stream=STREAM, config=config)


async def bare_consume(js: JetStreamContext, n: int) -> float:
    run = uuid.uuid4().hex[:8]
    subject = f"opp.bare-{run}.s1"
    payload = opportunity(0).SerializeToString()
    await in_windows(n, PUBLISH_CONCURRENCY, lambda i: js.publish(subject, payload))
    started = time.perf_counter()
    sub = await bare_pull(js, subject, f"bare-{run}")
    count = 0
    while count < n:
        try:
            msgs = await sub.fetch(CONSUME_BATCH, timeout=1)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in msgs:
            await msg.ack()
            count += 1
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return n / elapsed


async def bare_latency(js: JetStreamContext, samples: int) -> list[float]:
    run = uuid.uuid4().hex[:8]
    subject = f"opp.bare-{run}.s1"
    sub = await bare_pull(js, subject, f"bare-{run}")
    received: list[float] = []
    stop = False

    async def consume() -> None:
        while not stop:
            try:
                msgs = await sub.fetch(1, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in msgs:
                received.append(time.perf_counter())
                await msg.ack()

    consumer = asyncio.create_task(consume())
    latencies = []
    payload = opportunity(0).SerializeToString()
    for i in range(samples):
        sent = time.perf_counter()
        await js.publish(subject, payload)
        await until(lambda i=i: len(received) > i)  # type: ignore[misc]
        latencies.append(received[i] - sent)
    stop = True
    await consumer
    await sub.unsubscribe()
    return latencies


# ----------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    setup_tracing("bench-bus")
    async with AsyncExitStack() as stack:
        url = os.environ.get("NATS_URL")
        if not url:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-bus-"))
            url = (await stack.enter_async_context(EmbeddedNats(data_dir))).url
        bus = await Bus.connect(url, "bench-bus")
        stack.push_async_callback(bus.close)
        await bus.ensure_streams()
        bare_nc = await nats.connect(url, name="bench-bare")
        stack.push_async_callback(bare_nc.close)
        js = bare_nc.jetstream()

        n, samples = args.messages, args.latency_samples
        # Warm up both paths (connections, consumers, JIT-free but caches and allocators).
        await ours_publish(bus, 200, 1)
        await bare_publish(js, 200, 1)

        rows: list[tuple[str, float, float, str]] = []
        rows.append(
            ("publish, 1 publisher (msg/s)", await ours_publish(bus, n, 1), await bare_publish(js, n, 1), "x")
        )
        rows.append(
            (
                f"publish, {PUBLISH_CONCURRENCY} concurrent (msg/s)",
                await ours_publish(bus, n, PUBLISH_CONCURRENCY),
                await bare_publish(js, n, PUBLISH_CONCURRENCY),
                "x",
            )
        )
        rows.append(("consume backlog (msg/s)", await ours_consume(bus, n), await bare_consume(js, n), "x"))
        ours_lat, bare_lat = await ours_latency(bus, samples), await bare_latency(js, samples)
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            rows.append(
                (
                    f"end-to-end latency {label} (ms)",
                    percentile(ours_lat, q) * 1e3,
                    percentile(bare_lat, q) * 1e3,
                    "x",
                )
            )
        rows.append(
            (
                "end-to-end latency mean (ms)",
                statistics.fmean(ours_lat) * 1e3,
                statistics.fmean(bare_lat) * 1e3,
                "x",
            )
        )

        with_headers = (
            await bare_publish(js, n, 1, our_headers=True),
            await bare_publish(js, n, PUBLISH_CONCURRENCY, our_headers=True),
        )

    payload_size = len(opportunity(0).SerializeToString())
    print(f"bus benchmark: {n} messages, {samples} latency samples, Opportunity payload {payload_size} bytes")
    print(f"{'':40} {'ours':>12} {'bare nats-py':>14} {'ours/bare':>10}")
    for label, ours, bare, _ in rows:
        print(f"{label:40} {ours:12.2f} {bare:14.2f} {ours / bare:10.2f}")
    print(
        "bare nats-py sending our four headers (msg-id dedupe, tenant-id, content-type, traceparent): "
        f"{with_headers[0]:.0f} msg/s with 1 publisher, {with_headers[1]:.0f} msg/s with {PUBLISH_CONCURRENCY}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
