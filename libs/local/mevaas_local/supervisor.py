"""`mevaas up`'s supervisor: a crashed service or embedded server is started again, with
exponential backoff while it keeps failing, and the live view says what happened.

Each supervised thing is a name, a liveness check and a restart coroutine; they are checked in the
order they were added (NATS and PostgreSQL before the services that need them). A restart that
fails doubles the wait (1 s up to 30 s); one that stays up for a minute resets it. Embedded servers
restart on the same port and data directory (a stale pid/lock file of a killed server is cleared
by their `start`), so the services reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("mevaas.supervisor")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0


@dataclass
class Supervised:
    name: str
    alive: Callable[[], bool]
    restart: Callable[[], Awaitable[None]]
    restarts: int = 0
    backoff: float = FIRST_BACKOFF
    down_since: float | None = None
    next_try: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, on_restart: Callable[[], None] | None = None
    ) -> None:
        self._items: list[Supervised] = []
        self._clock = clock
        self._on_restart = on_restart  # e.g. rewrite the fleet's pid file
        self.events: deque[str] = deque(maxlen=5)
        self._task: asyncio.Task[None] | None = None

    def add(self, name: str, alive: Callable[[], bool], restart: Callable[[], Awaitable[None]]) -> None:
        self._items.append(Supervised(name, alive, restart, started_at=self._clock()))

    def _note(self, text: str) -> None:
        log.warning(text)
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")

    async def tick(self) -> None:
        """Check everything once and restart what is down and due."""
        for item in self._items:
            now = self._clock()
            if item.alive():
                if item.down_since is None and now - item.started_at >= STABLE_SECONDS:
                    item.backoff = FIRST_BACKOFF
                continue
            if item.down_since is None:
                item.down_since = now
                item.next_try = now + item.backoff
                self._note(f"{item.name} is down; restarting in {item.backoff:.0f} s")
            if now < item.next_try:
                continue
            try:
                await item.restart()
            except Exception as exc:
                item.backoff = min(item.backoff * 2, MAX_BACKOFF)
                item.next_try = self._clock() + item.backoff
                self._note(
                    f"{item.name} restart failed ({exc.__class__.__name__}); next try in {item.backoff:.0f} s"
                )
                continue
            item.restarts += 1
            item.down_since = None
            item.started_at = self._clock()
            self._note(f"{item.name} restarted (restart {item.restarts})")
            if self._on_restart is not None:
                self._on_restart()

    def status(self) -> str:
        """One line for the live view."""
        down = [i.name for i in self._items if i.down_since is not None]
        restarted = [f"{i.name} x{i.restarts}" for i in self._items if i.restarts]
        parts = [f"down: {', '.join(down)}" if down else "all up"]
        if restarted:
            parts.append(f"restarted: {', '.join(restarted)}")
        return "supervisor: " + "; ".join(parts)

    async def start(self, interval: float = 0.5) -> None:
        async def run() -> None:
            while True:
                with contextlib.suppress(Exception):
                    await self.tick()
                await asyncio.sleep(interval)

        self._task = asyncio.create_task(run(), name="fleet-supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
