"""Token buckets: burst then rate, per key; public callers are keyed by host, not connection."""

from __future__ import annotations

import pytest

from mevaas_core.grpckit import ratelimit
from mevaas_core.grpckit.ratelimit import TenantRateLimiter, peer_host


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(clock)
    assert [limiter.try_acquire("t", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire("t", 2.0, 3) == 0.5
    assert limiter.try_acquire("other", 2.0, 3) == 0.0
    clock.now = 0.5
    assert limiter.try_acquire("t", 2.0, 3) == 0.0


def test_a_new_connection_from_the_same_host_shares_the_bucket() -> None:
    assert peer_host("ipv4:10.0.0.7:51234") == peer_host("ipv4:10.0.0.7:40000") == "ipv4:10.0.0.7"
    assert peer_host("ipv6:[::1]:5000") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/socket") == "unix:/tmp/socket"


def test_idle_buckets_are_dropped_when_there_are_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 3)
    clock = Clock()
    limiter = TenantRateLimiter(clock)
    for key in ("a", "b", "c"):
        limiter.try_acquire(key, 1.0, 1)
    clock.now = ratelimit.IDLE_SECONDS + 1
    limiter.try_acquire("d", 1.0, 1)
    assert set(limiter._buckets) == {"d"}
