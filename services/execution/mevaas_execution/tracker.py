"""Inclusion tracking (track -> book): each chain's head is polled; on every new block the
in-flight executions and legs on that chain are looked up by receipt and booked by their kind's
executor, missed bundles are resent while their window lasts, the rest are dropped; then every
``ReceiptHook`` (the treasury) hears what was booked.

A row still ``signed`` was recorded but its send never confirmed (a crash, a lost reply): unless
this process is sending it right now, it gets its send here. Resending is safe either way: one
signed transaction, one nonce, at most one inclusion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_chain.client import RpcError
from mevaas_core.db import platform_transaction
from mevaas_execution import store
from mevaas_execution.chains import ChainGateway
from mevaas_execution.domain import planning
from mevaas_execution.domain import statuses as st
from mevaas_execution.executors import executor_for, multi_leg_executor_for
from mevaas_execution.executors.base import MultiLegExecutor
from mevaas_execution.hooks import BookedReceipt, ReceiptHooks
from mevaas_execution.recording import Recorder
from mevaas_execution.submission import BUNDLE, Submitter
from mevaas_execution.unwinding import Unwinder

log = logging.getLogger("mevaas.execution.tracker")

HeadWatcher = Callable[[int, int], Awaitable[None]]


class Tracker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        recorder: Recorder,
        submitter: Submitter,
        hooks: ReceiptHooks,
        unwinder: Unwinder,
        sending: set[str],
        *,
        poll_seconds: float = 0.05,
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.recorder = recorder
        self.submitter = submitter
        self.hooks = hooks
        self.unwinder = unwinder
        self.sending = sending
        self.poll_seconds = poll_seconds
        self.watchers: list[HeadWatcher] = [self.check_chain, self.check_legs]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for chain_id in self.gateway.chain_ids:
            self._tasks.append(asyncio.create_task(self._track(chain_id), name=f"exec-track-{chain_id}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _track(self, chain_id: int) -> None:
        last_head = -1
        while True:
            try:
                head = await self.gateway.chain(chain_id).rpc.block_number()
                if head != last_head:
                    for watch in self.watchers:
                        await watch(chain_id, head)
                    last_head = head
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("tracking chain %d failed; retrying", chain_id, exc_info=True)
            await asyncio.sleep(self.poll_seconds)

    # executions that carry their one transaction -----------------------------------------------

    async def check_chain(self, chain_id: int, head: int) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.in_flight_executions(conn, chain_id)
        if not rows:
            return
        receipts = await self.gateway.receipts(chain_id, [row["tx_hash"] for row in rows])
        depth = self.gateway.confirmations(chain_id)
        for row, receipt in zip(rows, receipts, strict=True):
            if receipt is None:
                if head >= row["target_block"]:
                    await self._missed(row, head)
            elif planning.settled(receipt, head, depth):
                await self._book(row, receipt)

    async def _book(self, row: asyncpg.Record, receipt: Mapping[str, Any]) -> None:
        changes = executor_for(row["action_kind"]).book(row, [receipt])
        stamps = events_pb2.HopTimestamps.FromString(bytes(row["timestamps"]))
        stamps.included_at.GetCurrentTime()
        booked = await self.recorder.update(
            row, {**changes, "timestamps": stamps.SerializeToString(deterministic=True)}
        )
        if booked is not None:
            await self._notify(
                row, row["chain_id"], [receipt], booked["status"], row["executor_address"] or ""
            )

    async def _missed(self, row: asyncpg.Record, head: int) -> None:
        """The target block was mined without the transaction: resend it while attempts and the
        deadline allow (a public one only if its send never confirmed), otherwise drop it."""
        chain_id, wallet = row["chain_id"], row["wallet_address"]
        unsent = row["status"] == st.SIGNED
        if unsent and row["execution_id"] in self.sending:
            return
        if not planning.is_stale(row["deadline_block"], head):
            bundle = row["submission_mode"] == BUNDLE
            if not bundle and not unsent and row["deadline_block"]:
                return  # public: it may still be mined before the deadline
            if unsent or (bundle and row["attempts"] < row["max_attempts"]):
                last = row["deadline_block"] or head + 1
                try:
                    sent = await self.submitter.send(
                        chain_id, [bytes(row["raw_tx"])], row["submission_mode"], head + 1, last
                    )
                except RpcError as exc:
                    log.info("resubmission refused: %s", exc.message, extra={"tenant_id": row["tenant_id"]})
                else:
                    changes: dict[str, Any] = {
                        "status": st.SUBMITTED,
                        "target_block": sent.target_block,
                        "attempts": row["attempts"] + 1,
                    }
                    if unsent:
                        changes["submitted_at"] = datetime.now(UTC)
                    await self.recorder.update(row, changes)
                    return
        if not planning.settled_without(row["target_block"], head):
            return
        await self.recorder.update(
            row,
            {"status": st.DROPPED, "error": f"not included by block {head} (target {row['target_block']})"},
        )
        # The nonce was not used: let the chain tell the next reservation where the account is.
        await self.gateway.nonces.resync(chain_id, wallet)

    # executions settled from their legs --------------------------------------------------------

    async def check_legs(self, chain_id: int, head: int) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.in_flight_legs(conn, chain_id)
        if not rows:
            return
        approvals = [row["approve_tx_hash"] for row in rows if row["approve_tx_hash"]]
        receipts = await self.gateway.receipts(chain_id, [row["tx_hash"] for row in rows] + approvals)
        approved = dict(zip(approvals, receipts[len(rows) :], strict=True))
        depth = self.gateway.confirmations(chain_id)
        for row, receipt in zip(rows, receipts[: len(rows)], strict=True):
            approval = approved.get(row["approve_tx_hash"])
            if receipt is None:
                if head >= row["target_block"]:
                    await self._missed_leg(row, head, approval is not None)
            elif planning.settled(receipt, head, depth):
                await self._book_leg(row, [r for r in (approval, receipt) if r is not None])

    async def _book_leg(self, row: asyncpg.Record, receipts: Sequence[Mapping[str, Any]]) -> None:
        executor = multi_leg_executor_for(row["action_kind"])
        changes = executor.book(row, receipts)
        await self._finish_leg(executor, row, changes)
        await self._notify(row, row["chain_id"], receipts, changes["status"], "")

    async def _missed_leg(self, row: asyncpg.Record, head: int, approved: bool) -> None:
        """The leg's target block passed without it: resend while its window lasts (a bundle
        every block; a public transaction only if its send never confirmed), then drop it."""
        unsent = row["status"] == st.SIGNED
        if unsent and row["execution_id"] in self.sending:
            return
        if head < row["last_block"]:
            if row["submission_mode"] != BUNDLE and not unsent:
                return  # public: it may still be mined within the window
            raws = [bytes(row["raw_tx"])]
            if row["approve_raw_tx"] is not None and not approved:
                raws.insert(0, bytes(row["approve_raw_tx"]))
            try:
                sent = await self.submitter.send(
                    row["chain_id"], raws, row["submission_mode"], head + 1, row["last_block"]
                )
            except Exception as exc:
                log.info("leg resubmission refused: %s", exc, extra={"tenant_id": row["tenant_id"]})
                return
            await self.recorder.update_leg(
                row,
                {"status": st.SUBMITTED, "target_block": sent.target_block, "attempts": row["attempts"] + 1},
            )
            return
        if not planning.settled_without(row["last_block"], head):
            return
        executor = multi_leg_executor_for(row["action_kind"])
        await self._finish_leg(
            executor,
            row,
            {"status": st.DROPPED, "error": f"not included by block {head} (last {row['last_block']})"},
        )
        await self.gateway.nonces.resync(row["chain_id"], row["wallet_address"])

    async def _finish_leg(
        self, executor: MultiLegExecutor, row: asyncpg.Record, changes: dict[str, Any]
    ) -> None:
        """Book the leg; when it was the last in flight and legs landed alone, unwind them."""
        max_loss = self.unwinder.max_loss_bps
        _settled, unwinds = await self.recorder.finish_leg(
            row, changes, executor.settle, lambda legs: executor.unwinds(legs, max_loss)
        )
        if unwinds:
            unsent = await self.unwinder.unwind(unwinds)
            if unsent:
                await self.recorder.settle_now(row, executor.settle, unsent)

    async def _notify(
        self,
        row: asyncpg.Record,
        chain_id: int,
        receipts: Sequence[Mapping[str, Any]],
        status: str,
        executor_address: str,
    ) -> None:
        await self.hooks.notify(
            BookedReceipt(
                tenant_id=row["tenant_id"],
                execution_id=row["execution_id"],
                action_kind=row["action_kind"],
                chain_id=chain_id,
                wallet_address=row["wallet_address"],
                executor_address=executor_address,
                tx_hashes=tuple(str(r["transactionHash"]) for r in receipts),
                block_number=max(int(r["blockNumber"], 16) for r in receipts),
                status=status,
                gas_cost_wei=sum(
                    int(r["gasUsed"], 16) * int(r.get("effectiveGasPrice") or "0x0", 16) for r in receipts
                ),
            )
        )
