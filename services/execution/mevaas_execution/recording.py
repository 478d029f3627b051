"""The pipeline's and the tracker's writes, one transaction each: the execution row (and its
legs), its result event through the outbox, and the session's last error, together. Every
status change goes through the state machine (domain/statuses.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_core.db import tenant_transaction
from mevaas_execution import store
from mevaas_execution.domain import statuses as st
from mevaas_execution.domain.sessions import FAILED as SESSION_FAILED
from mevaas_execution.domain.unwind import open_positions
from mevaas_execution.events import actor_of, publish_open_position, publish_result, publish_session_event
from mevaas_execution.executors.base import RowLike
from mevaas_execution.owners import Owner, ownership_for


class Recorder:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def unsent(
        self,
        row: Mapping[str, Any],
        stamps: events_pb2.HopTimestamps,
        *,
        publish: bool = True,
        session_error: bool = False,
    ) -> None:
        """A decision that ends without a transaction (rejected, dropped, stale, failed)."""
        st.check(st.NEW, row["status"])
        tenant_id = row["tenant_id"]
        values = {
            **row,
            "timestamps": stamps.SerializeToString(deterministic=True),
            "finalized_at": datetime.now(UTC),
        }
        async with tenant_transaction(self.pool, tenant_id) as conn:
            inserted = await store.insert_execution(conn, values)
            if inserted is None:
                return
            if publish:
                await publish_result(conn, inserted)
            if session_error and row["session_id"]:
                await store.set_session_error(conn, tenant_id, row["session_id"], row.get("error", ""))

    async def intent(
        self,
        row: Mapping[str, Any],
        stamps: events_pb2.HopTimestamps,
        owner: Owner,
        legs: Sequence[Mapping[str, Any]] = (),
    ) -> asyncpg.Record | None:
        """Write the signed transaction(s) before sending: the row (``signed``, or ``dropped`` when
        the owner stopped taking decisions meanwhile), or None for a duplicate."""
        st.check(st.NEW, row["status"])
        tenant_id = row["tenant_id"]
        values = {**row, "timestamps": stamps.SerializeToString(deterministic=True)}
        ownership = ownership_for(row["action_kind"])
        async with tenant_transaction(self.pool, tenant_id) as conn:
            inserted = await ownership.insert_while_live(conn, owner, values)
            if inserted is not None:
                await store.insert_legs(conn, legs)
                return inserted
            refusal = await ownership.refusal(conn, tenant_id, owner)
            if refusal is not None:
                values.update(
                    status=st.check(st.NEW, st.DROPPED),
                    error=refusal,
                    raw_tx=None,
                    tx_hash="",
                    nonce=None,
                    leg_tx_hashes=[],
                    finalized_at=datetime.now(UTC),
                )
                inserted = await store.insert_execution(conn, values)
                if inserted is not None:
                    await publish_result(conn, inserted)
                return inserted
            inserted = await store.insert_execution(conn, values)
            if inserted is not None:
                await store.insert_legs(conn, legs)
            return inserted

    async def update(
        self, row: RowLike, changes: Mapping[str, Any], *, publish: bool = False
    ) -> asyncpg.Record | None:
        """An in-flight execution's changes (a submission, a resend); a final status also
        finalises it and names a failure as the session's last error."""
        tenant_id, status = row["tenant_id"], changes.get("status", row["status"])
        if "status" in changes:
            st.check(row["status"], status)
        values = dict(changes)
        if st.is_final(status):
            values["finalized_at"] = datetime.now(UTC)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            updated = await store.update_execution(conn, tenant_id, row["execution_id"], values)
            if updated is None:
                return None
            if publish or st.is_final(status):
                await publish_result(conn, updated)
            if updated["status"] == st.FAILED and updated["session_id"]:
                await store.set_session_error(conn, tenant_id, updated["session_id"], updated["error"])
            return updated

    async def submitted(
        self, row: RowLike, changes: Mapping[str, Any], leg_targets: Mapping[int, int] | None = None
    ) -> None:
        """The execution (and the legs in ``leg_targets``, leg index -> target block) went out."""
        st.check(row["status"], changes["status"])
        tenant_id, execution_id = row["tenant_id"], row["execution_id"]
        async with tenant_transaction(self.pool, tenant_id) as conn:
            for index, target in (leg_targets or {}).items():
                await store.update_leg(
                    conn, tenant_id, execution_id, index, {"status": st.SUBMITTED, "target_block": target}
                )
            updated = await store.update_execution(conn, tenant_id, execution_id, changes)
            if updated is not None:
                await publish_result(conn, updated)

    async def update_leg(self, leg: RowLike, changes: Mapping[str, Any]) -> None:
        if "status" in changes:
            st.check(leg["status"], changes["status"])
        async with tenant_transaction(self.pool, leg["tenant_id"]) as conn:
            await store.update_leg(conn, leg["tenant_id"], leg["execution_id"], leg["leg_index"], changes)

    async def add_leg(self, leg: Mapping[str, Any]) -> bool:
        """One more leg (an unwind) of an execution still in flight; False when it is final or
        the leg exists already (another tracker pass added it)."""
        tenant_id, execution_id = leg["tenant_id"], leg["execution_id"]
        async with tenant_transaction(self.pool, tenant_id) as conn:
            execution = await store.get_execution(conn, tenant_id, execution_id, lock=True)
            if execution is None or execution["status"] not in st.IN_FLIGHT:
                return False
            if any(
                other["leg_index"] == leg["leg_index"]
                for other in await store.legs_of(conn, tenant_id, execution_id)
            ):
                return False
            await store.insert_legs(conn, [leg])
            await store.update_execution(
                conn,
                tenant_id,
                execution_id,
                {"leg_tx_hashes": [*execution["leg_tx_hashes"], leg["tx_hash"]]},
            )
            return True

    async def finish_leg(
        self, leg: RowLike, changes: Mapping[str, Any], settle: Any, unwinds: Any = None
    ) -> tuple[asyncpg.Record | None, list[Any]]:
        """Book one leg; when it is the last one in flight, either return the unwinds the legs
        need (``unwinds(legs)``; the execution stays in flight) or settle the execution with
        ``settle(legs)``. The execution row is locked first, so the chains' trackers settle it
        exactly once. Returns the settled execution if this call settled it, and the unwinds."""
        st.check(leg["status"], changes["status"])
        tenant_id, execution_id = leg["tenant_id"], leg["execution_id"]
        async with tenant_transaction(self.pool, tenant_id) as conn:
            execution = await store.get_execution(conn, tenant_id, execution_id, lock=True)
            if execution is None:
                return None, []
            booked = await store.update_leg(
                conn,
                tenant_id,
                execution_id,
                leg["leg_index"],
                {**changes, "finalized_at": datetime.now(UTC)},
            )
            if booked is None:
                return None, []
            legs = await store.legs_of(conn, tenant_id, execution_id)
            if any(other["status"] in st.IN_FLIGHT for other in legs):
                return None, []
            needed = unwinds([dict(other) for other in legs]) if unwinds is not None else []
            if needed:
                return None, needed
            return await self._settle(conn, execution, legs, settle), []

    async def settle_now(self, leg: RowLike, settle: Any, extra: Sequence[Mapping[str, Any]] = ()) -> None:
        """Settle the leg's execution now, its stored legs plus ``extra`` (unwinds that could not
        even be sent), unless a leg is still in flight or it is final already."""
        tenant_id, execution_id = leg["tenant_id"], leg["execution_id"]
        async with tenant_transaction(self.pool, tenant_id) as conn:
            execution = await store.get_execution(conn, tenant_id, execution_id, lock=True)
            if execution is None or execution["status"] not in st.IN_FLIGHT:
                return
            legs = await store.legs_of(conn, tenant_id, execution_id)
            if not any(other["status"] in st.IN_FLIGHT for other in legs):
                await self._settle(conn, execution, legs, settle, extra)

    async def _settle(
        self,
        conn: asyncpg.Connection,
        execution: asyncpg.Record,
        legs: Sequence[asyncpg.Record],
        settle: Any,
        extra: Sequence[Mapping[str, Any]] = (),
    ) -> asyncpg.Record | None:
        tenant_id, execution_id = execution["tenant_id"], execution["execution_id"]
        every_leg = [dict(other) for other in legs] + [dict(other) for other in extra]
        settled: dict[str, Any] = settle(every_leg)
        st.check(execution["status"], settled["status"])
        stamps = events_pb2.HopTimestamps.FromString(bytes(execution["timestamps"]))
        if settled["status"] == st.INCLUDED:
            stamps.included_at.GetCurrentTime()
        updated = await store.update_execution(
            conn,
            tenant_id,
            execution_id,
            {
                **settled,
                "timestamps": stamps.SerializeToString(deterministic=True),
                "finalized_at": datetime.now(UTC),
            },
        )
        if updated is not None:
            await publish_result(conn, updated)
            for unwind in open_positions(every_leg):
                await publish_open_position(conn, updated, unwind)
            if updated["status"] == st.FAILED and updated["session_id"]:
                await store.set_session_error(conn, tenant_id, updated["session_id"], updated["error"])
        return updated

    async def fail_session(self, tenant_id: str, session_id: str, reason: str) -> None:
        """A live session goes FAILED with ``reason`` (something only the tenant can fix)."""
        async with tenant_transaction(self.pool, tenant_id) as conn:
            session = await store.get_session(conn, tenant_id, session_id, lock="UPDATE")
            if session is None or session["state"] in ("stopped", SESSION_FAILED):
                return
            await store.set_session_error(conn, tenant_id, session_id, reason)
            updated = await store.update_session_state(conn, tenant_id, session_id, SESSION_FAILED, reason)
            await publish_session_event(conn, updated, session["state"], actor_of(None))
