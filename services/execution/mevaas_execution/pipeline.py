"""The execution pipeline, the same for every action kind:

plan -> simulate -> checks -> sign -> record -> send  (here), then track -> book (tracker.py).

Per approved decision: find its owner (owners.py: the strategy's RUNNING session, or the
rebalance executing the trade) and merge the owner's execution settings with the risk limits; the kind's executor (executors/) plans the transactions; one round trip per
chain reads the head block, the executor contract's code when the action calls it, and whatever
the executor's simulation needs; the checks refuse stale decisions, base fees above the gas cap
and a missing or foreign executor contract; the executor turns what was seen into legs of
transactions, which are signed with the tenant's key, recorded, and sent.

Exactly-once effect: the signed transactions are written in one transaction with a row keyed by
(tenant, opportunity) under a unique constraint *before* anything is sent, while the owner's
row is locked FOR SHARE (so a pause committed first wins). A redelivered decision finds the row
and sends nothing. After a crash, rows left ``signed``/``submitted`` are settled by the tracker
from the chain, never re-signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.client import RpcError
from mevaas_chain.registry import ChainConfig
from mevaas_core.bus import Delivery
from mevaas_core.db import tenant_transaction
from mevaas_execution.chains import ChainGateway, ChainUnavailable, sign_call
from mevaas_execution.contracts import ExecutorContracts
from mevaas_execution.convert import now_timestamp
from mevaas_execution.domain import planning
from mevaas_execution.domain import statuses as st
from mevaas_execution.executors import NoExecutor, executor_for, multi_leg_executor_for
from mevaas_execution.executors.base import ActionExecutor, Job, LegIntent, Plan, Refusal, Seen, SignedLeg
from mevaas_execution.owners import Owner, ownership_for
from mevaas_execution.recording import Recorder
from mevaas_execution.submission import Sent, Submitter
from mevaas_execution.wallets import WalletKeys

log = logging.getLogger("mevaas.execution.pipeline")


def ms_between(start: Timestamp, end: Timestamp) -> float:
    if not start.seconds and not start.nanos:
        return 0.0
    return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e6


class Pipeline:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        keys: WalletKeys,
        contracts: ExecutorContracts,
        recorder: Recorder,
        submitter: Submitter,
        sending: set[str],
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.keys = keys
        self.contracts = contracts
        self.recorder = recorder
        self.submitter = submitter
        # Executions this process is signing or sending: the tracker leaves their rows alone.
        self.sending = sending

    def config(self, chain_id: int) -> ChainConfig:
        return self.gateway.chain(chain_id).config

    # decision -> row ------------------------------------------------------------------------------

    async def on_decision(self, decision: events_pb2.RiskDecision, delivery: Delivery) -> None:
        received = now_timestamp()
        tenant_id = decision.tenant_id or delivery.tenant_id
        opportunity = decision.opportunity
        opportunity_id = decision.opportunity_id or opportunity.opportunity_id
        if not opportunity_id or not tenant_id:
            log.warning(
                "decision without opportunity or tenant id ignored", extra={"msg_id": delivery.msg_id}
            )
            return
        kind = opportunity.WhichOneof("action") or ""
        ownership = ownership_for(kind)
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            seen, owner = await ownership.find(conn, tenant_id, opportunity_id, decision)
        if seen:
            return
        stamps = events_pb2.HopTimestamps(decision_received_at=received)
        if opportunity.HasField("block_seen_at"):
            stamps.block_seen_at.CopyFrom(opportunity.block_seen_at)
        if opportunity.HasField("detected_at"):
            stamps.opportunity_detected_at.CopyFrom(opportunity.detected_at)
        if decision.HasField("occurred_at"):
            stamps.risk_decided_at.CopyFrom(decision.occurred_at)
        row: dict[str, Any] = {
            "execution_id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "opportunity_id": opportunity_id,
            "session_id": owner.session_id if owner else "",
            "rebalance_id": owner.rebalance_id if owner else "",
            "strategy_id": decision.strategy_id or opportunity.strategy_id,
            "strategy_version": opportunity.strategy_version,
            "reservation_id": decision.reservation_id,
            "chain_id": opportunity.chain_id,
            "action_kind": kind,
            "submission_mode": opportunity.submission_mode,
            "deadline_block": opportunity.deadline_block,
            "expected_profit": int(opportunity.expected_profit_net_of_gas or 0),
            "expected_gross_profit": int(opportunity.expected_profit or 0),
            "profit_token": opportunity.profit_token.SerializeToString(deterministic=True),
            "wallet_address": owner.wallet_address if owner else "",
        }
        if decision.outcome != events_pb2.RISK_DECISION_OUTCOME_APPROVED:
            row.update(status=st.REJECTED, error=decision.reason[:2000])
            await self.recorder.unsent(row, stamps, publish=False)
            return
        if owner is None or not owner.live:
            reason = owner.refusal if owner else ownership.missing
            await self.recorder.unsent({**row, "status": st.DROPPED, "error": reason}, stamps)
            return
        self.sending.add(row["execution_id"])
        try:
            await self._run(decision, owner, row, stamps)
        except Refusal as refused:
            await self.recorder.unsent(
                {**row, "status": refused.status, "error": refused.error[:2000]},
                stamps,
                session_error=refused.session_error,
            )
        finally:
            self.sending.discard(row["execution_id"])

    # the stages -----------------------------------------------------------------------------------

    async def _run(
        self,
        decision: events_pb2.RiskDecision,
        owner: Owner,
        row: dict[str, Any],
        stamps: events_pb2.HopTimestamps,
    ) -> None:
        opportunity = decision.opportunity
        settings = strategy_pb2.ExecutionSettings.FromString(owner.settings) if owner.settings else None
        limits = planning.merge_limits(
            settings, decision, common_pb2.SubmissionMode.ValueType(owner.submission_mode)
        )
        row["submission_mode"] = limits.submission_mode
        tenant_id, wallet = row["tenant_id"], row["wallet_address"]
        try:
            executor = executor_for(row["action_kind"])
            job = Job(
                tenant_id=tenant_id,
                execution_id=row["execution_id"],
                session_id=row["session_id"],
                opportunity_id=row["opportunity_id"],
                wallet=wallet,
                opportunity=opportunity,
                limits=limits,
                expected_gross_profit=row["expected_gross_profit"],
                retry_until_deadline=settings is None,
                executor_contract=await self.contracts.address(tenant_id, wallet, opportunity.chain_id),
            )
            plan = executor.plan(job, self)
            secret = await self.keys.key(tenant_id, wallet)
        except (NoExecutor, ChainUnavailable, planning.PlanError, LookupError) as exc:
            raise Refusal(st.FAILED, str(exc), session_error=True) from None
        if limits.execution_delay_ms:
            await asyncio.sleep(limits.execution_delay_ms / 1000)
        seen = await self._simulate(job, plan)
        stamps.simulated_at.GetCurrentTime()
        fees = self._checks(job, plan, seen, row)
        intents = executor.assess(job, plan, seen, self)
        await self._sign_record_send(executor, job, plan, seen, fees, intents, row, stamps, secret, owner)

    async def _simulate(self, job: Job, plan: Plan) -> Seen:
        """One round trip per chain, all chains at once (shared with the concurrent decisions':
        coalescing.py): the head block, the executor's code when it is not verified yet, and the
        executor's own reads."""
        contract = job.executor_contract if plan.calls_executor else None
        batches: dict[int, list[tuple[str, list[Any]]]] = {}
        code_on: int | None = None
        for chain_id in plan.chain_ids:
            calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False])]
            if (
                contract
                and chain_id == job.opportunity.chain_id
                and self.contracts.needs_check(chain_id, contract)
            ):
                calls.append(("eth_getCode", [contract, "latest"]))
                code_on = chain_id
            batches[chain_id] = [*calls, *plan.reads.get(chain_id, ())]
        try:
            replies = await asyncio.gather(
                *(self.gateway.chain(c).reads.batch(calls) for c, calls in batches.items())
            )
        except Exception as exc:
            raise Refusal(st.FAILED, f"RPC failed: {exc}", session_error=True) from None
        heads: dict[int, Any] = {}
        answers: dict[int, list[Any]] = {}
        for chain_id, reply in zip(batches, replies, strict=True):
            block = reply[0]
            if isinstance(block, RpcError) or not isinstance(block, dict):
                raise Refusal(
                    st.FAILED, f"RPC failed: no head block on chain {chain_id}: {block!r}", session_error=True
                )
            heads[chain_id] = block
            rest = list(reply[1:])
            if chain_id == code_on and contract:
                problem = self.contracts.observe(chain_id, contract, int(block["number"], 16), rest.pop(0))
                if problem is not None:
                    self._repair(job, chain_id, problem)
                    raise Refusal(st.FAILED, problem, session_error=True)
            else:
                self.contracts.saw_head(chain_id, int(block["number"], 16))
            answers[chain_id] = rest
        return Seen(heads=heads, answers=answers)

    def _repair(self, job: Job, chain_id: int, problem: str) -> None:
        async def fail(reason: str) -> None:
            await self.recorder.fail_session(job.tenant_id, job.session_id, reason)

        self.contracts.repair_soon(job.tenant_id, job.wallet, chain_id, problem, fail)

    def _checks(self, job: Job, plan: Plan, seen: Seen, row: dict[str, Any]) -> dict[int, tuple[int, int]]:
        """Stale (the deadline is in the opportunity's chain's blocks) and the gas cap on every
        chain; the fee caps per chain when both pass."""
        deadline = job.opportunity.deadline_block
        head_chain = row["chain_id"] if row["chain_id"] in seen.heads else plan.chain_ids[0]
        head = seen.head(head_chain)
        if planning.is_stale(deadline, head):
            raise Refusal(st.STALE, f"deadline block {deadline} passed (head {head})")
        fees: dict[int, tuple[int, int]] = {}
        for chain_id in plan.chain_ids:
            base_fee = planning.next_base_fee(seen.heads[chain_id])
            refusal = planning.gas_price_refusal(base_fee, job.limits)
            if refusal is not None:
                raise Refusal(st.DROPPED, f"chain {chain_id}: {refusal}")
            fees[chain_id] = planning.fee_caps(base_fee, job.limits)
        return fees

    def _window(self, job: Job, head: int) -> int:
        """How many blocks (from the next one) a transaction may be resent or awaited: the
        strategy's retry attempts, and never past the deadline; without the strategy's settings,
        every block up to the deadline."""
        deadline = job.opportunity.deadline_block
        window = 1 + job.limits.retry_attempts
        if deadline:
            until_deadline = max(1, deadline - head)
            window = until_deadline if job.retry_until_deadline else min(window, until_deadline)
        return min(window, planning.RETRY_UNTIL_DEADLINE + 1)

    async def _sign_record_send(
        self,
        executor: ActionExecutor,
        job: Job,
        plan: Plan,
        seen: Seen,
        fees: dict[int, tuple[int, int]],
        intents: list[LegIntent],
        row: dict[str, Any],
        stamps: events_pb2.HopTimestamps,
        secret: Any,
        owner: Owner,
    ) -> None:
        nonces = self.gateway.nonces
        wallet = job.wallet
        reserved: list[tuple[int, int]] = []
        async with contextlib.AsyncExitStack() as held:
            for chain_id in sorted({intent.chain_id for intent in intents}):
                await held.enter_async_context(self.gateway.wallet_lock(chain_id, wallet))
            legs: list[SignedLeg] = []
            for intent in intents:
                max_fee, priority_fee = fees[intent.chain_id]
                head = seen.head(intent.chain_id)
                leg = SignedLeg(
                    intent, [], [], head + 1, head + self._window(job, head), max_fee, priority_fee
                )
                for tx in intent.transactions:
                    nonce = await nonces.reserve(intent.chain_id, wallet)
                    reserved.append((intent.chain_id, nonce))
                    leg.nonces.append(nonce)
                    leg.signed.append(
                        sign_call(
                            chain_id=intent.chain_id,
                            nonce=nonce,
                            key=secret,
                            to=tx.to,
                            data=tx.data,
                            gas=tx.gas,
                            max_fee=max_fee,
                            priority_fee=priority_fee,
                        )
                    )
                legs.append(leg)
            stamps.signed_at.GetCurrentTime()
            recorded = executor.record(job, plan, legs)
            max_attempts = legs[0].last_block - legs[0].target_block + 1
            values = {**row, **recorded.execution, "status": st.SIGNED, "max_attempts": max_attempts}
            intent_row = await self.recorder.intent(values, stamps, owner, recorded.legs)
            if intent_row is None or intent_row["status"] != st.SIGNED:
                for chain_id, nonce in reversed(reserved):
                    await nonces.release(chain_id, wallet, nonce)
                return
            outcomes: list[Sent | BaseException] = await asyncio.gather(
                *(
                    self.submitter.send(
                        leg.intent.chain_id,
                        leg.raws,
                        job.limits.submission_mode,
                        leg.target_block,
                        leg.last_block,
                    )
                    for leg in legs
                ),
                return_exceptions=True,
            )
            for leg, outcome in zip(legs, outcomes, strict=True):
                for nonce in reversed(leg.nonces):
                    if isinstance(outcome, Sent):
                        await nonces.confirm(leg.intent.chain_id, wallet, nonce)
                    else:
                        # A refused transaction may follow one of the leg's that did go out.
                        maybe_sent = not isinstance(outcome, RpcError) or len(leg.nonces) > 1
                        await nonces.release(leg.intent.chain_id, wallet, nonce, maybe_sent=maybe_sent)
        await self._after_send(intent_row, recorded.legs, outcomes, stamps)

    async def _after_send(
        self,
        intent_row: asyncpg.Record,
        leg_rows: Sequence[Mapping[str, Any]],
        outcomes: list[Sent | BaseException],
        stamps: events_pb2.HopTimestamps,
    ) -> None:
        submitted = now_timestamp()
        stamps.submitted_at.CopyFrom(submitted)
        changes: dict[str, Any] = {
            "status": st.SUBMITTED,
            "submitted_at": submitted.ToDatetime(UTC),
            "timestamps": stamps.SerializeToString(deterministic=True),
            "block_to_submission_ms": ms_between(stamps.block_seen_at, submitted),
        }
        if leg_rows:
            await self._legs_sent(intent_row, leg_rows, outcomes, changes)
        else:
            await self._single_sent(intent_row, outcomes[0], changes)

    async def _single_sent(
        self, intent_row: asyncpg.Record, outcome: Sent | BaseException, changes: dict[str, Any]
    ) -> None:
        """The execution row carries its one transaction: a refusal is its end; an unknown
        outcome (the request may have reached the chain) is left to the tracker."""
        if isinstance(outcome, Sent):
            changes.update(bundle_hash=outcome.bundle_hash, target_block=outcome.target_block)
            await self.recorder.submitted(intent_row, changes)
        elif isinstance(outcome, RpcError):
            await self.recorder.update(
                intent_row, {"status": st.FAILED, "error": f"submission refused: {outcome.message}"}
            )

    async def _legs_sent(
        self,
        intent_row: asyncpg.Record,
        leg_rows: Sequence[Mapping[str, Any]],
        outcomes: list[Sent | BaseException],
        changes: dict[str, Any],
    ) -> None:
        """The execution is submitted; each sent leg too; a refused leg is dropped (and the
        execution settles once its other legs are final)."""
        targets = {
            leg["leg_index"]: outcome.target_block
            for leg, outcome in zip(leg_rows, outcomes, strict=True)
            if isinstance(outcome, Sent)
        }
        await self.recorder.submitted(intent_row, changes, targets)
        settle = multi_leg_executor_for(intent_row["action_kind"]).settle
        for leg, outcome in zip(leg_rows, outcomes, strict=True):
            if isinstance(outcome, RpcError):
                await self.recorder.finish_leg(
                    leg, {"status": st.DROPPED, "error": f"submission refused: {outcome.message}"}, settle
                )
