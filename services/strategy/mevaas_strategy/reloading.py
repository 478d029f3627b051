"""The reload loop of what the strategy service keeps in memory from its tables (the running
strategies, the protections): reloaded when PostgreSQL notifies a change, and at the latest every
interval (a notification is lost with the listening connection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def reload_when_notified(
    notified: asyncio.Event,
    interval_s: float,
    reload: Callable[[], Awaitable[None]],
    log: logging.Logger,
    what: str,
) -> None:
    """Runs until cancelled; a failed reload is logged and tried again at the next turn."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(notified.wait(), interval_s)
        notified.clear()
        try:
            await reload()
        except Exception:
            log.exception("reloading %s failed; retrying", what)
