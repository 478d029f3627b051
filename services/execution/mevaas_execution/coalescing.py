"""JSON-RPC calls of concurrent pipeline runs, sent together: every batch asked for during one
turn of the event loop goes out as one JSON-RPC batch, and each caller gets its own replies.

A block with a hundred tenants' decisions had each decision read the head block (the full block,
a hundred transaction hashes) and simulate in its own HTTP request, and send its bundle in
another: two hundred requests through one node and relay per block, each parsed on both sides.
Coalesced, what arrives together costs one request, and the same read in it (the head block, an
executor's code) is asked once. Nothing waits for company: the batch goes out on the next turn
of the loop, so a lone decision pays nothing, and a busy loop naturally gathers more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mevaas_chain.client import ChainClient

RpcCall = tuple[str, Sequence[Any]]


@dataclass
class _Waiting:
    calls: Sequence[RpcCall]
    reply: asyncio.Future[list[Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CoalescingRpc:
    """``batch(calls)`` as ``ChainClient.batch`` (each entry a result or an ``RpcError``, in order),
    sent with whatever else was asked for in the same turn of the loop. ``dedupe``: identical
    calls in one flush are sent once (reads only: a write sent twice must reach the node twice)."""

    def __init__(self, client: ChainClient, *, dedupe: bool) -> None:
        self.client = client
        self.dedupe = dedupe
        self._waiting: list[_Waiting] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def batch(self, calls: Sequence[RpcCall]) -> list[Any]:
        waiting = _Waiting(calls)
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._start_flush)
        self._waiting.append(waiting)
        return await waiting.reply

    async def request(self, method: str, params: Sequence[Any]) -> Any:
        """One call; its ``RpcError`` is raised, as ``ChainClient.request`` does."""
        (reply,) = await self.batch([(method, params)])
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def _start_flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.create_task(self._flush(waiting), name="rpc-coalesced-batch")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, waiting: list[_Waiting]) -> None:
        sent: list[RpcCall] = []
        slots: dict[str, int] = {}
        placement: list[list[int]] = []
        for item in waiting:
            indices = []
            for method, params in item.calls:
                key = json.dumps([method, list(params)], sort_keys=True) if self.dedupe else ""
                slot = slots.get(key) if self.dedupe else None
                if slot is None:
                    slot = len(sent)
                    sent.append((method, params))
                    if self.dedupe:
                        slots[key] = slot
                indices.append(slot)
            placement.append(indices)
        try:
            replies = await self.client.batch(sent) if sent else []
        except BaseException as exc:
            for item in waiting:
                if not item.reply.done():
                    item.reply.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for item, indices in zip(waiting, placement, strict=True):
            if not item.reply.done():
                item.reply.set_result([replies[i] for i in indices])

    async def close(self) -> None:
        for task in list(self._flushes):
            task.cancel()
        for task in list(self._flushes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
