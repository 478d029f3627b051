"""Group commit of status writes: every concurrent "mark submitted" of protected transactions goes
into one PostgreSQL transaction instead of one each.

Under load the Protect RPC's cost is round trips to PostgreSQL, not work: a transaction of its own
is BEGIN, the scope setting, the UPDATE and COMMIT, four round trips for one row. Writes queued
while a flush is running go together in the next flush (one BEGIN/COMMIT for all of them, one
UPDATE each), so a lone write waits for nothing and a busy endpoint pays ~1 round trip per row.
Each caller still gets its own row back only once its write is committed (a client is answered
"submitted" only when that is on disk), and each UPDATE keeps its own status condition
(``from_statuses``), so batching changes no outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mevaas_core.db import platform_transaction
from mevaas_execution.protection import store


@dataclass
class _Write:
    protected_id: str
    changes: Mapping[str, Any]
    from_statuses: tuple[str, ...]
    done: asyncio.Future[asyncpg.Record | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupedUpdates:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._queue: list[_Write] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None  # held: a bare task may be collected mid-flush

    async def update(
        self, protected_id: str, changes: Mapping[str, Any], *, from_statuses: tuple[str, ...]
    ) -> asyncpg.Record | None:
        """``store.update_protected`` in the next group commit; the row as it is afterwards."""
        write = _Write(protected_id, changes, from_statuses)
        self._queue.append(write)
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return await write.done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    rows = []
                    async with platform_transaction(self.pool) as conn:
                        for write in batch:
                            rows.append(
                                await store.update_protected(
                                    conn, write.protected_id, write.changes, from_statuses=write.from_statuses
                                )
                            )
                except BaseException as exc:  # an outage fails every write of the batch, each told so
                    for write in batch:
                        if not write.done.done():
                            write.done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for write, row in zip(batch, rows, strict=True):
                    if not write.done.done():
                        write.done.set_result(row)
        finally:
            self._flushing = False
