"""Dependency outages: which failures mean "PostgreSQL or NATS is gone" (answered UNAVAILABLE with
a safe message, never the driver's text), and the watcher that turns gRPC health NOT_SERVING while
one is gone so load balancers and `mevaas up` see it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg
import nats.errors

from mevaas_core.bus.errors import NoRespondersError, PublishError, RequestTimeoutError

log = logging.getLogger("mevaas.outages")

SAFE_MESSAGE = "a dependency of this service (database or message bus) is unavailable; retry later"

_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # connection closed or the pool is closing
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionError,
    TimeoutError,  # pool acquire, JetStream ack, request/reply
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    PublishError,
    RequestTimeoutError,
    NoRespondersError,
)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a database or bus outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _OUTAGES):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


Probe = Callable[[], Awaitable[bool]]


class DependencyWatch:
    """Probes the service's dependencies every ``interval`` seconds and reports a change of their
    joint state through ``on_change(serving)``."""

    def __init__(
        self, probes: dict[str, Probe], on_change: Callable[[bool], Awaitable[None]], *, interval: float = 1.0
    ) -> None:
        self._probes = probes
        self._on_change = on_change
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.serving = True
        self.down: list[str] = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dependency-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> bool:
        down = []
        for name, probe in self._probes.items():
            try:
                async with asyncio.timeout(self._interval):
                    ok = await probe()
            except Exception:
                ok = False
            if not ok:
                down.append(name)
        self.down = down
        serving = not down
        if serving != self.serving:
            self.serving = serving
            if serving:
                log.warning("dependencies are back: serving again")
            else:
                log.error("dependencies unavailable (%s): health NOT_SERVING", ", ".join(down))
            await self._on_change(serving)
        return serving

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.check()
            await asyncio.sleep(self._interval)


def postgres_probe(pool: asyncpg.Pool) -> Probe:
    async def probe() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1") == 1)

    return probe


def nats_probe(is_connected: Callable[[], bool]) -> Probe:
    async def probe() -> bool:
        return is_connected()

    return probe
