"""A rebalance owns its trades (``rebalance_trade`` decisions): the pipeline executes a trade from
the rebalance's wallet while the rebalance is EXECUTING that very trade (its current trade, whose
opportunity id the rebalance derived), with no strategy settings (every block up to the trade's
deadline is an attempt) and the trade's own submission mode. A decision for a trade that is not
the rebalance's current one (a stale or foreign decision) is dropped, never executed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_execution.owners import Owner, register_ownership
from mevaas_execution.rebalancing import store
from mevaas_execution.rebalancing.domain import states
from mevaas_execution.rebalancing.domain.trades import trade_opportunity_id


class RebalanceOwnership:
    missing = "the rebalance is unknown"

    async def find(
        self, conn: asyncpg.Connection, tenant_id: str, opportunity_id: str, decision: events_pb2.RiskDecision
    ) -> tuple[bool, Owner | None]:
        action = decision.opportunity.rebalance_trade
        found = await store.trade_context(conn, tenant_id, opportunity_id, action.rebalance_id)
        if found["rebalance_id"] is None:
            return bool(found["seen"]), None
        current = found["current_trade"]
        state = found["state"]
        is_current = action.trade_index == current and opportunity_id == trade_opportunity_id(
            found["rebalance_id"], current
        )
        refusal = (
            f"rebalance is {state}"
            if state != states.EXECUTING
            else f"trade {action.trade_index} is not the rebalance's current trade ({current})"
        )
        return bool(found["seen"]), Owner(
            session_id="",
            rebalance_id=found["rebalance_id"],
            state=state,
            live=state == states.EXECUTING and is_current,
            refusal=refusal,
            wallet_address=found["wallet_address"],
            settings=None,
            submission_mode=decision.opportunity.submission_mode or common_pb2.SUBMISSION_MODE_PUBLIC_MEMPOOL,
            detail=current,
        )

    async def insert_while_live(
        self, conn: asyncpg.Connection, owner: Owner, values: Mapping[str, Any]
    ) -> asyncpg.Record | None:
        return await store.insert_execution_while_executing(conn, owner.rebalance_id, owner.detail, values)

    async def refusal(self, conn: asyncpg.Connection, tenant_id: str, owner: Owner) -> str | None:
        row = await store.get_rebalance(conn, tenant_id, owner.rebalance_id, lock="SHARE")
        if row is None:
            return self.missing
        if row["state"] != states.EXECUTING:
            return f"rebalance is {row['state']}"
        if row["current_trade"] != owner.detail:
            return f"the rebalance moved on to trade {row['current_trade']}"
        return None


register_ownership("rebalance_trade", RebalanceOwnership())
