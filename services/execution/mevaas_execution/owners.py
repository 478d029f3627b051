"""Who an approved decision executes for: its owner. A strategy's opportunity is owned by the
strategy's execution session (its wallet, settings and RUNNING state); a rebalance trade by its
rebalance (rebalancing/ownership.py); a deleverage by the wallet it protects (``WalletOwnership``:
no session, stopped while any of that wallet's sessions is paused unless it is an emergency).
The pipeline asks the action kind's `Ownership` for the
owner and records the execution while that owner is live, so a pause (or a failed rebalance)
committed first wins. Registered per action kind like the executors; the session is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_execution import store
from mevaas_execution.domain.sessions import accepts_decisions


@dataclass(frozen=True, slots=True)
class Owner:
    # At most one of the two ids is set (neither for a wallet-owned action).
    session_id: str
    rebalance_id: str
    state: str
    # Whether the owner takes decisions now (else they are recorded DROPPED with `refusal`).
    live: bool
    refusal: str
    wallet_address: str
    # strategy.v1.ExecutionSettings, serialized; None for an owner without strategy settings.
    settings: bytes | None
    submission_mode: int
    # Opaque to the pipeline: what the ownership needs to insert while live.
    detail: Any = None


class Ownership(Protocol):
    # Why a decision whose owner is not found is dropped.
    missing: str

    async def find(
        self, conn: asyncpg.Connection, tenant_id: str, opportunity_id: str, decision: events_pb2.RiskDecision
    ) -> tuple[bool, Owner | None]:
        """(``seen``: the opportunity already has an execution, the owner or None)."""
        ...

    async def insert_while_live(
        self, conn: asyncpg.Connection, owner: Owner, values: Mapping[str, Any]
    ) -> asyncpg.Record | None:
        """Insert the signed execution while the owner (locked FOR SHARE) is live; None when it is
        not, or when the opportunity already has an execution."""
        ...

    async def refusal(self, conn: asyncpg.Connection, tenant_id: str, owner: Owner) -> str | None:
        """Why the owner (locked FOR SHARE) takes no decision now; None when it does."""
        ...


class SessionOwnership:
    """The strategy's live execution session owns its opportunities."""

    missing = "the strategy has no running session"

    async def find(
        self, conn: asyncpg.Connection, tenant_id: str, opportunity_id: str, decision: events_pb2.RiskDecision
    ) -> tuple[bool, Owner | None]:
        strategy_id = decision.strategy_id or decision.opportunity.strategy_id
        found = await store.decision_context(conn, tenant_id, opportunity_id, strategy_id)
        if found["session_id"] is None:
            return bool(found["seen"]), None
        state = found["state"]
        return bool(found["seen"]), Owner(
            session_id=found["session_id"],
            rebalance_id="",
            state=state,
            live=accepts_decisions(state),
            refusal=f"session is {state}",
            wallet_address=found["wallet_address"],
            settings=bytes(found["settings"]) if found["settings"] else None,
            submission_mode=found["submission_mode"],
        )

    async def insert_while_live(
        self, conn: asyncpg.Connection, owner: Owner, values: Mapping[str, Any]
    ) -> asyncpg.Record | None:
        return await store.insert_execution_while_running(conn, owner.session_id, values)

    async def refusal(self, conn: asyncpg.Connection, tenant_id: str, owner: Owner) -> str | None:
        session = await store.get_session(conn, tenant_id, owner.session_id, lock="SHARE")
        if session is None:
            return "session is gone"
        return None if accepts_decisions(session["state"]) else f"session is {session['state']}"


class WalletOwnership:
    """The wallet an action names owns it (leverage protection's deleverage of the wallet's own
    position): no session and no strategy settings (every block up to the deadline is an
    attempt). The tenant pausing a session of that wallet stops it, unless ``urgent`` says the
    action is an emergency (the emergency level acts even while the tenant's strategies are
    paused)."""

    missing = "the action names no wallet"

    def __init__(
        self,
        wallet: Callable[[events_pb2.Opportunity], str],
        urgent: Callable[[events_pb2.Opportunity], bool],
    ) -> None:
        self._wallet = wallet
        self._urgent = urgent

    def _refusal(self, states: list[str], urgent: bool) -> str | None:
        if urgent or "paused" not in states:
            return None
        return "the wallet's sessions are paused (not an emergency)"

    async def find(
        self, conn: asyncpg.Connection, tenant_id: str, opportunity_id: str, decision: events_pb2.RiskDecision
    ) -> tuple[bool, Owner | None]:
        seen = await store.execution_seen(conn, tenant_id, opportunity_id)
        opportunity = decision.opportunity
        wallet = self._wallet(opportunity)
        if not wallet:
            return seen, None
        urgent = self._urgent(opportunity)
        refusal = self._refusal(await store.wallet_session_states(conn, tenant_id, wallet), urgent)
        return seen, Owner(
            session_id="",
            rebalance_id="",
            state="emergency" if urgent else "standing",
            live=refusal is None,
            refusal=refusal or "",
            wallet_address=wallet,
            settings=None,
            submission_mode=opportunity.submission_mode or common_pb2.SUBMISSION_MODE_PUBLIC_MEMPOOL,
            detail=urgent,
        )

    async def insert_while_live(
        self, conn: asyncpg.Connection, owner: Owner, values: Mapping[str, Any]
    ) -> asyncpg.Record | None:
        if await self.refusal(conn, str(values["tenant_id"]), owner) is not None:
            return None
        return await store.insert_execution(conn, values)

    async def refusal(self, conn: asyncpg.Connection, tenant_id: str, owner: Owner) -> str | None:
        states = await store.wallet_session_states(conn, tenant_id, owner.wallet_address, lock=True)
        return self._refusal(states, bool(owner.detail))


_SESSIONS = SessionOwnership()
_registered: dict[str, Ownership] = {}


def register_ownership(kind: str, ownership: Ownership) -> None:
    """``ownership`` owns every action of ``kind`` (an ``Opportunity.action`` oneof field name)."""
    existing = _registered.get(kind)
    if existing is not None and type(existing) is not type(ownership):
        raise ValueError(f"action kind {kind!r} already has ownership {type(existing)!r}")
    _registered[kind] = ownership


def ownership_for(kind: str) -> Ownership:
    return _registered.get(kind, _SESSIONS)
