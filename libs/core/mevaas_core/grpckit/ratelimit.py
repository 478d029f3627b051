"""Per-tenant token buckets; the rate and burst come from the plan claims in the caller's token.
`SharedRateLimiter` keeps one bucket per tenant for the whole fleet (NATS KV); `TenantRateLimiter`
is a process's own (anonymous callers by host, and the fallback when the KV is unreachable)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig


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


# ------------------------------------------------------------------------------------ shared state

RATE_LIMIT_BUCKET = "RATE_LIMITS"
# Each process takes this share of a second's rate from the shared bucket at a time: unused leases
# are at most (processes x lease) calls beyond the plan, one shared-state round trip per lease.
LEASE_SECONDS = 0.02
CAS_ATTEMPTS = 8
# A lease that takes longer than this (NATS slow or gone) is not waited for: the process limits on
# its own instead, so an outage of the bus never holds a call up.
LEASE_TIMEOUT_SECONDS = 0.25


@dataclass(slots=True)
class _Lease:
    tokens: float = 0.0


class SharedRateLimiter:
    """One token bucket per tenant for all services and replicas, kept in NATS KV.

    The bucket's state (tokens, last refill in ms) is one KV entry per tenant, updated by
    compare-and-set. A process takes tokens in small leases (LEASE_SECONDS of the plan's rate) and
    spends them locally, so the plan holds across the fleet to within processes x lease calls.
    If the KV cannot be reached the process limits on its own (`fallback`): callers are throttled
    per process rather than not at all, and never refused because the limiter is down.
    """

    def __init__(
        self, kv: Any, fallback: TenantRateLimiter | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._kv = kv
        self._fallback = fallback or TenantRateLimiter()
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fallbacks = 0  # calls limited by the process alone because the KV was unreachable
        # The bucket state this process wrote last, by KV key: (tokens, updated ms, revision).
        self._known: dict[str, tuple[float, float, int | None]] = {}

    @classmethod
    async def open(cls, js: Any, *, idle_seconds: float = IDLE_SECONDS) -> SharedRateLimiter:
        config = KeyValueConfig(bucket=RATE_LIMIT_BUCKET, history=1, ttl=idle_seconds)
        try:
            kv = await js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            kv = await js.key_value(RATE_LIMIT_BUCKET)  # made by another process, maybe with other limits
        return cls(kv)

    async def try_acquire(self, key: str, rate_per_second: float, burst: int) -> float:
        """Take one token; 0.0 on success, else the seconds until one is available."""
        if rate_per_second <= 0:
            return 0.0
        if key not in self._leases and len(self._leases) >= MAX_BUCKETS:
            self._forget_idle()
        lease = self._leases.setdefault(key, _Lease())
        if lease.tokens >= 1.0:
            lease.tokens -= 1.0
            return 0.0
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one lease request per key at a time in this process
            if lease.tokens >= 1.0:
                lease.tokens -= 1.0
                return 0.0
            want = max(1.0, rate_per_second * LEASE_SECONDS)
            try:
                granted, wait = await asyncio.wait_for(
                    self._take(key, want, rate_per_second, float(max(burst, 1))), LEASE_TIMEOUT_SECONDS
                )
            except (nats.errors.Error, TimeoutError):
                self.fallbacks += 1
                return self._fallback.try_acquire(key, rate_per_second, burst)
            lease.tokens += granted
            if lease.tokens >= 1.0:
                lease.tokens -= 1.0
                return 0.0
            return wait

    def _forget_idle(self) -> None:
        """Drop spent leases nobody is renewing (a spent lease and no lease are the same)."""
        for key in [k for k, lease in self._leases.items() if lease.tokens < 1.0]:
            lock = self._locks.get(key)
            if lock is None or not lock.locked():
                self._leases.pop(key, None)
                self._locks.pop(key, None)

    async def _take(self, key: str, want: float, rate: float, capacity: float) -> tuple[float, float]:
        """Take up to `want` tokens from the shared bucket: (granted, seconds to wait if < 1).

        The state this process last wrote is tried first (one round trip when no other process
        wrote since); a conflict means another one did, so the entry is read and the update retried.
        """
        name = "t" + hashlib.sha256(key.encode()).hexdigest()[:40]
        known = self._known.get(name)
        for _ in range(CAS_ATTEMPTS):
            now_ms = int(self._clock() * 1000)
            if known is None:
                try:
                    entry = await self._kv.get(name)
                    parts = entry.value.decode().split(":")
                    known = (float(parts[0]), float(parts[1]), entry.revision)
                except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                    known = (capacity, float(now_ms), None)
            tokens, updated_ms, revision = known
            tokens = min(capacity, tokens + max(0.0, now_ms - updated_ms) / 1000 * rate)
            granted = min(want, float(int(tokens))) if tokens >= 1.0 else 0.0
            left = tokens - granted
            value = f"{left:.6f}:{now_ms}".encode()
            try:
                if revision is None:
                    written = await self._kv.create(name, value)
                else:
                    written = await self._kv.update(name, value, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                known = None
                await asyncio.sleep(random.uniform(0, 0.002))  # another process won the race
                continue
            if len(self._known) >= MAX_BUCKETS:
                self._known.clear()
            self._known[name] = (left, float(now_ms), written)
            return granted, 0.0 if granted else (1.0 - tokens) / rate
        return 0.0, 1.0 / rate  # contended: refuse this one call rather than overspend
