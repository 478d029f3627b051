"""Per-tenant token buckets; the rate and burst come from the plan claims in the caller's token."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


# Buckets idle this long are dropped once there are many: a full bucket and a new one are the same.
IDLE_SECONDS = 300.0
MAX_BUCKETS = 50_000


def peer_host(peer: str) -> str:
    """The caller's address without its port (`ipv4:1.2.3.4:5678` -> `ipv4:1.2.3.4`), so a client
    cannot get a fresh bucket by opening a new connection."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in address:
        return f"{kind}:{address.rsplit(':', 1)[0]}"
    return peer


class TenantRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock

    def _prune(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < IDLE_SECONDS}

    def try_acquire(self, key: str, rate_per_second: float, burst: int) -> float:
        """Take one token; returns 0.0 on success, else the seconds until a token is available."""
        if rate_per_second <= 0:
            return 0.0
        capacity = float(max(burst, 1))
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(tokens=capacity, updated=now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate_per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate_per_second
