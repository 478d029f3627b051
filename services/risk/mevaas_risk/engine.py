"""The pre-trade check and the release, each one Postgres transaction per event.

Decide: in one round trip (risk.decision_context), lock the tenant's risk-state row (every
replica's decisions for that tenant queue on it) and read the stored decision if this opportunity
was decided before, else limits, kill switches and open exposure; decide (domain.checks, pure);
write the decision with its reservation in one statement (and any breach) before committing. Because the exposure read and the reservation written happen under the
same lock, concurrent opportunities can never together exceed a limit.

Release: on a final ExecutionResult, release the reservation (once: only an unreleased row is
updated) and book the realised PnL (once: unique per execution), in one transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.db import tenant_transaction
from mevaas_core.sanctions import SanctionsList
from mevaas_risk import store
from mevaas_risk.domain.checks import (
    NO_SANCTIONS,
    Breach,
    Exposure,
    OpportunityFacts,
    RiskContext,
    Verdict,
    decide,
)
from mevaas_risk.domain.limits import Limits, TokenKey
from mevaas_risk.events import breach_event, enqueue_breach

FINAL_STATUSES = frozenset(
    {
        common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
        common_pb2.EXECUTION_RESULT_STATUS_REVERTED,
        common_pb2.EXECUTION_RESULT_STATUS_DROPPED,
        common_pb2.EXECUTION_RESULT_STATUS_STALE,
        common_pb2.EXECUTION_RESULT_STATUS_FAILED,
    }
)
_NO_LIMITS = Limits()


def timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    decision: events_pb2.RiskDecision
    # True when the opportunity had been decided before (a redelivery): nothing was written.
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    released: bool
    booked: bool


def _limits(raw: bytes | None) -> Limits:
    if not raw:
        return _NO_LIMITS
    return Limits.from_proto(common_pb2.RiskLimits.FromString(bytes(raw)))


def _context(inputs: asyncpg.Record, aggregates: list[dict[str, Any]], strategy_id: str) -> RiskContext:
    tenant_limits = _limits(inputs["tenant_limits"])
    strategy_limits = _limits(inputs["strategy_limits"])
    plan_cap = (
        common_pb2.Plan.FromString(bytes(inputs["plan"])).max_concurrent_executions if inputs["plan"] else 0
    )
    tenant_reserved: dict[TokenKey, int] = {}
    strategy_reserved: dict[TokenKey, int] = {}
    tenant_open = strategy_open = 0
    tenant_pnl = strategy_pnl = 0
    for row in aggregates:
        token = TokenKey(row["chain_id"], row["token"])
        amount = int(row["amount"])
        mine = row["strategy_id"] == strategy_id
        if row["kind"] == "reserved":
            tenant_reserved[token] = tenant_reserved.get(token, 0) + amount
            tenant_open += row["n"]
            if mine:
                strategy_reserved[token] = strategy_reserved.get(token, 0) + amount
                strategy_open += row["n"]
        else:
            if token == tenant_limits.denomination:
                tenant_pnl += amount
            if mine and token == (strategy_limits.denomination or tenant_limits.denomination):
                strategy_pnl += amount
    return RiskContext(
        tenant_limits=tenant_limits,
        strategy_limits=strategy_limits,
        plan_max_concurrent=plan_cap,
        tenant_exposure=Exposure(tenant_open, tenant_reserved),
        strategy_exposure=Exposure(strategy_open, strategy_reserved),
        tenant_pnl_today=tenant_pnl,
        strategy_pnl_today=strategy_pnl,
        tenant_kill_switch=inputs["tenant_kill"],
        strategy_kill_switch=inputs["strategy_kill"],
        platform_kill_switch=inputs["platform_kill"],
        tenant_suspended=inputs["tenant_status"] in ("suspended", "deleted"),
    )


def breach_dedupe_key(kind: events_pb2.BreachKind.ValueType, strategy_id: str, day: date) -> str:
    return f"{events_pb2.BreachKind.Name(kind)}:{strategy_id}:{day.isoformat()}"


class RiskEngine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        reservation_ttl: timedelta = timedelta(minutes=10),
        sanctions: SanctionsList = NO_SANCTIONS,
    ) -> None:
        self.pool = pool
        self.reservation_ttl = reservation_ttl
        self.sanctions = sanctions

    async def serialise(self, conn: asyncpg.Connection, tenant_id: str) -> None:
        """Queue this transaction behind the tenant's other decisions, releases and limit changes
        (bench/bench_risk.py replaces it to measure what the lock costs and what it prevents).
        Unless replaced, `decide` takes the same lock inside its one context read instead."""
        await store.lock_risk_state(conn, tenant_id)

    async def decide(self, opp: events_pb2.Opportunity) -> DecisionOutcome:
        tenant_id = opp.tenant_id
        # Round trips: BEGIN and tenant scope, the context read (lock included), one write, COMMIT.
        own_lock = type(self).serialise is RiskEngine.serialise
        async with tenant_transaction(self.pool, tenant_id) as conn:
            if not own_lock:
                await self.serialise(conn, tenant_id)
            today = utc_today()
            inputs = await store.decision_context(
                conn, tenant_id, opp.strategy_id, opp.opportunity_id, today, lock=own_lock
            )
            if inputs["previous"] is not None:
                return DecisionOutcome(
                    events_pb2.RiskDecision.FromString(bytes(inputs["previous"])), duplicate=True
                )
            facts = OpportunityFacts.from_proto(opp)
            context = _context(inputs, json.loads(inputs["aggregates"]), opp.strategy_id)
            verdict = decide(facts, context, self.sanctions)
            now = datetime.now(UTC)
            decision = self._decision(opp, verdict, context, now, facts.exposure_amount)
            await store.insert_decision(
                conn,
                decision_id=decision.event_id,
                tenant_id=tenant_id,
                opportunity_id=opp.opportunity_id,
                strategy_id=opp.strategy_id,
                approved=verdict.approved,
                reason_code=events_pb2.RiskReasonCode.Name(verdict.reason_code),
                reason=verdict.reason,
                payload=decision.SerializeToString(deterministic=True),
                decided_at=now,
                reservation=store.Reservation(
                    reservation_id=decision.reservation_id,
                    chain_id=facts.exposure_token.chain_id,
                    token=facts.exposure_token.address,
                    amount=facts.exposure_amount,
                    expires_at=now + self.reservation_ttl,
                )
                if verdict.approved
                else None,
            )
            if verdict.breach is not None:
                await self._record_breach(
                    conn, tenant_id, verdict.breach, verdict.reason, now, opportunity_id=opp.opportunity_id
                )
            return DecisionOutcome(decision, duplicate=False)

    @staticmethod
    def _decision(
        opp: events_pb2.Opportunity, verdict: Verdict, context: RiskContext, now: datetime, reserved: int
    ) -> events_pb2.RiskDecision:
        decision = events_pb2.RiskDecision(
            event_id=str(uuid.uuid4()),
            tenant_id=opp.tenant_id,
            occurred_at=timestamp(now),
            opportunity_id=opp.opportunity_id,
            strategy_id=opp.strategy_id,
            outcome=(
                events_pb2.RISK_DECISION_OUTCOME_APPROVED
                if verdict.approved
                else events_pb2.RISK_DECISION_OUTCOME_REJECTED
            ),
            reason_code=verdict.reason_code,
            reason=verdict.reason,
            limits=context.effective.to_proto(),
            opportunity=opp,
        )
        if verdict.approved:
            decision.reservation_id = str(uuid.uuid4())
            decision.reserved_amount = str(reserved)
        return decision

    async def _record_breach(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        breach: Breach,
        message: str,
        now: datetime,
        *,
        opportunity_id: str = "",
        execution_id: str = "",
    ) -> None:
        event = breach_event(
            tenant_id,
            breach,
            message,
            now,
            action=events_pb2.BREACH_ACTION_REJECTING_NEW,
            opportunity_id=opportunity_id,
            execution_id=execution_id,
        )
        recorded = await store.insert_breach(
            conn,
            breach_id=event.breach_id,
            tenant_id=tenant_id,
            strategy_id=breach.strategy_id,
            kind=events_pb2.BreachKind.Name(breach.kind),
            dedupe_key=breach_dedupe_key(breach.kind, breach.strategy_id, now.date()),
            limit_value=breach.limit_value,
            observed_value=breach.observed_value,
            denomination=event.denomination.SerializeToString(deterministic=True)
            if event.HasField("denomination")
            else b"",
            action=events_pb2.BreachAction.Name(event.action),
            message=message,
            execution_id=execution_id,
            opportunity_id=opportunity_id,
            occurred_at=now,
        )
        if recorded:
            await enqueue_breach(conn, event)

    async def apply_result(self, result: events_pb2.ExecutionResult) -> ReleaseOutcome:
        """Release the reservation and book realised PnL for a final result; others change nothing."""
        if result.status not in FINAL_STATUSES:
            return ReleaseOutcome(released=False, booked=False)
        tenant_id = result.tenant_id
        status = common_pb2.ExecutionResultStatus.Name(result.status)
        execution_id = result.execution_id or result.opportunity_id
        async with tenant_transaction(self.pool, tenant_id) as conn:
            # Same lock as decisions: a release and a concurrent decision see each other whole.
            await store.lock_risk_state(conn, tenant_id)
            released = await store.release_reservation(
                conn,
                tenant_id=tenant_id,
                reservation_id=result.reservation_id,
                opportunity_id=result.opportunity_id,
                status=status,
                execution_id=execution_id,
            )
            booked = False
            # A rebalance trade is not a trade for profit: its reservation is released, its gas
            # is not booked as the strategies' PnL.
            if (
                result.realized_profit
                and result.HasField("profit_token")
                and execution_id
                and not result.rebalance_id
            ):
                occurred = result.occurred_at.ToDatetime(UTC) if result.HasField("occurred_at") else None
                day = (occurred or datetime.now(UTC)).date()
                token = TokenKey.from_proto(result.profit_token)
                booked = await store.insert_pnl_entry(
                    conn,
                    tenant_id=tenant_id,
                    execution_id=execution_id,
                    opportunity_id=result.opportunity_id,
                    strategy_id=result.strategy_id,
                    chain_id=token.chain_id,
                    token=token.address,
                    amount=int(result.realized_profit),
                    status=status,
                    day=day,
                )
                if booked and int(result.realized_profit) < 0:
                    await self._check_daily_loss(conn, result, token, day)
            return ReleaseOutcome(released=released is not None, booked=booked)

    async def _check_daily_loss(
        self, conn: asyncpg.Connection, result: events_pb2.ExecutionResult, token: TokenKey, day: date
    ) -> None:
        """Record a breach when this loss took the day's realised loss to a daily_loss_limit."""
        tenant_id = result.tenant_id
        for strategy_id in ("", result.strategy_id):
            row = await store.get_limits(conn, tenant_id, strategy_id)
            limits = _limits(row["limits"] if row else None)
            if limits.daily_loss_limit is None or limits.denomination != token:
                continue
            pnl = await store.pnl_on_day(conn, tenant_id, day, token.chain_id, token.address, strategy_id)
            if -pnl >= limits.daily_loss_limit:
                breach = Breach(
                    events_pb2.BREACH_KIND_DAILY_LOSS_LIMIT,
                    str(limits.daily_loss_limit),
                    str(-pnl),
                    token,
                    strategy_id,
                )
                await self._record_breach(
                    conn,
                    tenant_id,
                    breach,
                    f"realised loss today {-pnl} reached daily_loss_limit {limits.daily_loss_limit}",
                    datetime.now(UTC),
                    execution_id=result.execution_id,
                )
