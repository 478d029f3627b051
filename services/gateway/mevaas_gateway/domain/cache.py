"""Per-tenant response cache for read RPCs.

A reply is stored under (tenant, upstream, caller's roles, method, request bytes): one tenant
never sees another's replies, and a role never sees a reply another role may read but it may
not. Entries die after a short TTL (a safety net: some reads, like positions, change with the
chain), and at once when an event says the upstream's data of that tenant changed, or when a
mutation of the tenant goes through the gateway. A read that began before an invalidation does
not store its reply (the generation check), so a stale answer is never written back."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CacheKey = tuple[str, str, str, str, bytes]

# Which upstreams' reads an event domain (the first token of its subject) can change.
UPSTREAMS_CHANGED_BY: dict[str, frozenset[str]] = {
    "tenant": frozenset({"tenancy", "strategy", "risk", "execution", "analytics"}),
    "audit": frozenset({"tenancy"}),
    "opp": frozenset({"analytics", "strategy"}),
    "risk": frozenset({"risk", "analytics"}),
    "exec": frozenset({"execution", "analytics", "risk"}),
    "portfolio": frozenset({"analytics", "execution"}),
    "report": frozenset({"analytics"}),
}


@dataclass(slots=True)
class _Entry:
    body: bytes
    stored_at: float


class ResponseCache:
    def __init__(
        self, ttl_seconds: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._generations: dict[tuple[str, str], int] = {}
        self._global_generation = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tenant: str, upstream: str, roles: Iterable[str], method: str, request: bytes) -> CacheKey:
        return (tenant, upstream, ",".join(sorted(roles)), method, request)

    def generation(self, key: CacheKey) -> int:
        # Both counters only grow, so their sum changes whenever either does.
        return self._global_generation + self._generations.get((key[0], key[1]), 0)

    def get(self, key: CacheKey) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry.stored_at >= self.ttl_seconds:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.body

    def put(self, key: CacheKey, body: bytes, generation: int) -> None:
        """Store a reply read at `generation`; dropped if an invalidation happened since."""
        if self.ttl_seconds <= 0 or generation != self.generation(key):
            return
        self._entries[key] = _Entry(body, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, tenant: str, upstreams: Iterable[str]) -> None:
        targets = set(upstreams)
        for upstream in targets:
            self._generations[(tenant, upstream)] = self._generations.get((tenant, upstream), 0) + 1
        for key in [k for k in self._entries if k[0] == tenant and k[1] in targets]:
            del self._entries[key]

    def invalidate_all(self) -> None:
        self._global_generation += 1
        self._entries.clear()

    def on_event(self, subject: str, platform_tenant: str) -> None:
        """An event on `<domain>.<tenant>.<...>` was published: drop what it can change."""
        domain, _, rest = subject.partition(".")
        tenant = rest.split(".", 1)[0]
        upstreams = UPSTREAMS_CHANGED_BY.get(domain)
        if not upstreams or not tenant:
            return
        if tenant == platform_tenant:
            self.invalidate_all()
        else:
            self.invalidate(tenant, upstreams)
