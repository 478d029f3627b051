"""The fleet-wide limiter against a real NATS KV: two processes' limiters share one bucket, and
with NATS gone a process limits on its own instead of holding calls up or refusing them all."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import nats.errors
import pytest

from mevaas_core.bus import Bus
from mevaas_core.grpckit.ratelimit import SharedRateLimiter
from mevaas_local.embedded import EmbeddedNats

pytestmark = pytest.mark.integration


async def test_two_limiters_share_one_bucket(nats_server: str, unique_id: str) -> None:
    buses = [await Bus.connect(nats_server, f"rl-{i}") for i in range(2)]
    try:
        first, second = [await SharedRateLimiter.open(bus.js) for bus in buses]
        key = f"tenant:{unique_id}"
        # A slow plan (1 every 100 s) with a burst of 10: nothing refills during the test.
        granted = 0
        for limiter in (first, second) * 10:
            granted += await limiter.try_acquire(key, 0.01, 10) == 0
        assert granted == 10  # not 10 per process
        assert await first.try_acquire(key, 0.01, 10) > 0
        assert first.fallbacks == second.fallbacks == 0
    finally:
        for bus in buses:
            await bus.close()


async def test_without_nats_a_process_limits_on_its_own(tmp_path: Path, unique_id: str) -> None:
    server = EmbeddedNats(tmp_path / "nats", server_name=f"rl-{unique_id}")
    await server.start()
    bus = await Bus.connect(server.url, "rl-outage", max_reconnect_attempts=1)
    try:
        limiter = await SharedRateLimiter.open(bus.js)
        key = f"tenant:{unique_id}"
        assert await limiter.try_acquire(key, 0.01, 3) == 0
        await server.stop()
        results = [await limiter.try_acquire(key, 0.01, 3) for _ in range(5)]
        assert limiter.fallbacks == 5
        assert results[:3] == [0.0, 0.0, 0.0] and all(wait > 0 for wait in results[3:])
    finally:
        # The server is gone on purpose: closing a connection that is reconnecting may fail.
        with contextlib.suppress(nats.errors.Error, ConnectionError):
            await bus.close()
        shutil.rmtree(tmp_path / "nats", ignore_errors=True)
