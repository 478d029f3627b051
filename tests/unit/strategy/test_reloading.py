"""The strategy service's reload loop: each notification reloads, and a failed reload is logged
and does not end the loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mevaas_strategy.reloading import reload_when_notified


async def test_a_notification_reloads_and_a_failed_reload_is_retried_at_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notified = asyncio.Event()
    calls: list[int] = []
    second = asyncio.get_running_loop().create_future()

    async def reload() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            notified.set()  # a change notified while the failing reload ran
            raise RuntimeError("database away")
        second.set_result(None)

    log = logging.getLogger("test.reloading")
    # An interval no test run reaches: only notifications drive the loop here.
    loop = asyncio.create_task(reload_when_notified(notified, 3600, reload, log, "protections"))
    notified.set()
    await second
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert calls == [0, 1] and not notified.is_set()
    assert [r.getMessage() for r in caplog.records if r.name == "test.reloading"] == [
        "reloading protections failed; retrying"
    ]
