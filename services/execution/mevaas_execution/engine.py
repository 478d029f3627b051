"""The execution engine: the last hop of the hot path and everything that follows a submission.

Per approved decision: find the strategy's RUNNING session, merge its execution settings with the
risk limits, simulate the executor call (``eth_call``, batched with the head block in one round
trip), refuse stale opportunities and base fees above the max gas price, sign with the tenant's
key, record the intent, submit (private bundle for the next block, or public mempool), and
publish the result.

Exactly-once effect: the signed transaction is written in one transaction with a row keyed by
(tenant, opportunity) under a unique constraint *before* it is sent, while the session row is
locked FOR SHARE (so a pause committed first wins). A redelivered decision finds the row and sends
nothing. After a crash, rows left ``signed``/``submitted`` are reconciled by the inclusion tracker
from the chain (receipt of the recorded hash), never re-signed.

Cross-chain opportunities (one hop per chain) are traded from the wallet's inventory on each
chain: one Router02 swap per leg (domain/cross_chain.py), all legs signed and recorded in
``execution_legs`` together with the execution before any is sent, then sent at once; each
chain's tracker books its legs and the last one booked settles the execution (INCLUDED only when
every leg landed; a leg that landed alone is a FAILED execution naming the stranded leg).

The tracker polls each chain's head; on every new block it looks up receipts of the in-flight
executions, books included/reverted ones with realised profit from the receipt, resubmits missed
bundles while ``retry_attempts`` and the deadline allow, and drops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.client import RpcError
from mevaas_chain.signer import SignedTransaction
from mevaas_core.bus import PLATFORM_TENANT, Delivery
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_execution import store
from mevaas_execution.chains import ChainGateway, ChainUnavailable, sign_call, sign_executor_call
from mevaas_execution.convert import now_timestamp
from mevaas_execution.domain import cross_chain, planning
from mevaas_execution.domain.sessions import FAILED, RUNNING, STARTING, accepts_decisions
from mevaas_execution.events import actor_of, publish_result, publish_session_event
from mevaas_execution.wallets import WalletKeys

log = logging.getLogger("mevaas.execution.engine")

BUNDLE = common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE


def _ms_between(start: Timestamp, end: Timestamp) -> float:
    if not start.seconds and not start.nanos:
        return 0.0
    return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e6


def _when(ts: Timestamp) -> datetime:
    return ts.ToDatetime(UTC) if ts.seconds or ts.nanos else datetime.now(UTC)


class Engine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        keys: WalletKeys,
        *,
        poll_seconds: float = 0.05,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.keys = keys
        self.poll_seconds = poll_seconds
        self.receipt_timeout_s = receipt_timeout_s
        self._executors: dict[tuple[str, str, int], str] = {}
        self._deploy_locks: dict[tuple[str, str, int], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._trackers: list[asyncio.Task[None]] = []
        self._sending: set[str] = set()

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Track every configured chain (reconciling whatever was in flight before a restart) and
        finish activating sessions a previous process left STARTING."""
        for chain_id in self.gateway.chain_ids:
            self._trackers.append(asyncio.create_task(self._track(chain_id), name=f"exec-track-{chain_id}"))
        async with platform_transaction(self.pool, readonly=True) as conn:
            starting = await store.starting_sessions(conn)
        for row in starting:
            self.activate_soon(row["tenant_id"], row["session_id"])

    async def stop(self) -> None:
        for task in [*self._trackers, *self._tasks]:
            task.cancel()
        for task in [*self._trackers, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._trackers.clear()
        self._tasks.clear()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # executors and session activation ---------------------------------------------------------------

    async def executor_for(self, tenant_id: str, wallet: str, chain_id: int) -> str | None:
        key = (tenant_id, wallet.lower(), chain_id)
        address = self._executors.get(key)
        if address is None:
            async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
                address = await store.get_executor(conn, tenant_id, wallet, chain_id)
            if address is not None:
                self._executors[key] = address
        return address

    async def ensure_executor(self, tenant_id: str, wallet: str, chain_id: int) -> str:
        """The tenant wallet's executor on the chain, deployed (signed by the wallet) if missing."""
        key = (tenant_id, wallet.lower(), chain_id)
        lock = self._deploy_locks.setdefault(key, asyncio.Lock())
        async with lock:
            existing = await self.executor_for(tenant_id, wallet, chain_id)
            if existing is not None:
                return existing
            secret = await self.keys.key(tenant_id, wallet)
            address, tx_hash = await self.gateway.deploy_executor(
                chain_id, secret, wallet, receipt_timeout_s=self.receipt_timeout_s
            )
            async with tenant_transaction(self.pool, tenant_id) as conn:
                await store.insert_executor(conn, tenant_id, wallet, chain_id, address, tx_hash)
            self._executors[key] = address
            log.info(
                "executor deployed",
                extra={"tenant_id": tenant_id, "chain_id": chain_id, "executor": address, "tx_hash": tx_hash},
            )
            return address

    def activate_soon(self, tenant_id: str, session_id: str) -> None:
        self._spawn(self.activate(tenant_id, session_id), f"exec-activate-{session_id}")

    async def activate(self, tenant_id: str, session_id: str) -> None:
        """STARTING -> RUNNING once the wallet has an executor on every chain of the session;
        FAILED (with the error) when a deployment fails."""
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_session(conn, tenant_id, session_id)
        if row is None or row["state"] != STARTING:
            return
        error = ""
        try:
            for chain_id in row["chain_ids"]:
                await self.ensure_executor(tenant_id, row["wallet_address"], chain_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"executor deployment failed: {exc}"
            log.warning("session %s: %s", session_id, error, extra={"tenant_id": tenant_id})
        async with tenant_transaction(self.pool, tenant_id) as conn:
            current = await store.get_session(conn, tenant_id, session_id, lock="UPDATE")
            if current is None or current["state"] != STARTING:
                return
            if error:
                await store.set_session_error(conn, tenant_id, session_id, error)
                updated = await store.update_session_state(conn, tenant_id, session_id, FAILED, error)
            else:
                updated = await store.update_session_state(
                    conn, tenant_id, session_id, RUNNING, "executors ready"
                )
            await publish_session_event(conn, updated, STARTING, actor_of(None))

    # decisions ------------------------------------------------------------------------------------

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
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            # One round trip: is this a redelivery, and the strategy's live session if any.
            found = await conn.fetchrow(
                f"SELECT EXISTS (SELECT 1 FROM execution.executions WHERE tenant_id = $1 "
                f"AND opportunity_id = $2) AS seen, s.* FROM (SELECT) AS one LEFT JOIN LATERAL "
                f"(SELECT {store.SESSION_COLUMNS} FROM execution.sessions WHERE tenant_id = $1 "
                f"AND strategy_id = $3 AND state IN ('starting', 'running', 'paused', 'stopping')) AS s "
                f"ON true",
                tenant_id,
                opportunity_id,
                decision.strategy_id,
            )
        assert found is not None
        if found["seen"]:
            return
        session = found if found["session_id"] is not None else None
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
            "session_id": session["session_id"] if session else "",
            "strategy_id": decision.strategy_id or opportunity.strategy_id,
            "strategy_version": opportunity.strategy_version,
            "reservation_id": decision.reservation_id,
            "chain_id": opportunity.chain_id,
            "submission_mode": opportunity.submission_mode,
            "deadline_block": opportunity.deadline_block,
            "expected_profit": int(opportunity.expected_profit_net_of_gas or 0),
            "expected_gross_profit": int(opportunity.expected_profit or 0),
            "profit_token": opportunity.profit_token.SerializeToString(deterministic=True),
            "wallet_address": session["wallet_address"] if session else "",
        }
        if decision.outcome != events_pb2.RISK_DECISION_OUTCOME_APPROVED:
            row.update(status="rejected", error=decision.reason[:2000])
            await self._record_unsent(row, stamps, publish=False)
            return
        if session is None or not accepts_decisions(session["state"]):
            reason = f"session is {session['state']}" if session else "the strategy has no running session"
            await self._record_unsent({**row, "status": "dropped", "error": reason}, stamps)
            return
        # While this path signs and sends, the tracker must not take its "signed" row for one a
        # crash left unsent (it would resend it and record it without the bundle hash).
        self._sending.add(row["execution_id"])
        try:
            await self._execute(decision, session, row, stamps)
        finally:
            self._sending.discard(row["execution_id"])

    async def _execute(
        self,
        decision: events_pb2.RiskDecision,
        session: asyncpg.Record,
        row: dict[str, Any],
        stamps: events_pb2.HopTimestamps,
    ) -> None:
        opportunity = decision.opportunity
        tenant_id, chain_id, wallet = row["tenant_id"], row["chain_id"], row["wallet_address"]
        settings = (
            strategy_pb2.ExecutionSettings.FromString(bytes(session["settings"]))
            if session["settings"]
            else None
        )
        limits = planning.merge_limits(settings, decision, session["submission_mode"])
        row.update(submission_mode=limits.submission_mode, max_attempts=1 + limits.retry_attempts)
        if cross_chain.is_cross_chain(opportunity):
            await self._execute_cross_chain(opportunity, row, stamps, limits, settings is None)
            return
        try:
            chain = self.gateway.chain(chain_id)
            executor = await self.executor_for(tenant_id, wallet, chain_id)
            if executor is None:
                raise planning.PlanError(f"wallet {wallet} has no executor on chain {chain_id}")
            rate = planning.gas_rate(opportunity, chain.config)
            min_profit = planning.min_profit_on_chain(row["expected_gross_profit"], limits)
            data = planning.executor_calldata(opportunity, chain.config, min_profit)
            secret = await self.keys.key(tenant_id, wallet)
        except (ChainUnavailable, planning.PlanError, LookupError) as exc:
            await self._record_unsent(
                {**row, "status": "failed", "error": str(exc)}, stamps, session_error=True
            )
            return
        row.update(executor_address=executor, gas_rate_num=rate[0], gas_rate_den=rate[1])
        if limits.execution_delay_ms:
            await asyncio.sleep(limits.execution_delay_ms / 1000)
        gas = planning.gas_limit(opportunity)
        call = {"from": wallet, "to": executor, "data": "0x" + data.hex(), "gas": hex(gas)}
        try:
            block, simulation = await chain.rpc.batch(
                [("eth_getBlockByNumber", ["latest", False]), ("eth_call", [call, "latest"])]
            )
            if isinstance(block, RpcError) or not isinstance(block, dict):
                raise RpcError(-32603, f"no head block: {block!r}")
        except Exception as exc:
            await self._record_unsent(
                {**row, "status": "failed", "error": f"RPC failed: {exc}"}, stamps, session_error=True
            )
            return
        stamps.simulated_at.GetCurrentTime()
        head = int(block["number"], 16)
        if planning.is_stale(opportunity.deadline_block, head):
            error = f"deadline block {opportunity.deadline_block} passed (head {head})"
            await self._record_unsent({**row, "status": "stale", "error": error}, stamps)
            return
        base_fee = planning.next_base_fee(block)
        refusal = planning.gas_price_refusal(base_fee, limits)
        if refusal is not None:
            await self._record_unsent({**row, "status": "dropped", "error": refusal}, stamps)
            return
        if isinstance(simulation, RpcError):
            error = f"simulation reverted: {simulation.message} {simulation.data or ''}".strip()
            await self._record_unsent({**row, "status": "failed", "error": error}, stamps, session_error=True)
            return
        max_fee, priority_fee = planning.fee_caps(base_fee, limits)
        target = head + 1
        if settings is None and opportunity.deadline_block:
            # Without the strategy's settings, every block up to the deadline is an attempt.
            row["max_attempts"] = max(1, opportunity.deadline_block - target + 1)
        nonces = self.gateway.nonces
        async with self.gateway.wallet_lock(chain_id, wallet):
            nonce = await nonces.reserve(chain_id, wallet)
            signed = sign_executor_call(
                chain_id=chain_id,
                nonce=nonce,
                key=secret,
                executor=executor,
                data=data,
                gas=gas,
                max_fee=max_fee,
                priority_fee=priority_fee,
            )
            stamps.signed_at.GetCurrentTime()
            intent = await self._record_intent(
                {
                    **row,
                    "status": "signed",
                    "nonce": nonce,
                    "tx_hash": "0x" + signed.hash.hex(),
                    "raw_tx": signed.raw,
                    "target_block": target,
                    "attempts": 1,
                },
                stamps,
            )
            if intent is None or intent["status"] != "signed":
                await nonces.release(chain_id, wallet, nonce)
                return
            try:
                if limits.submission_mode == BUNDLE:
                    bundle_hash = await self.gateway.send_bundle(chain_id, [signed.raw], target)
                else:
                    bundle_hash = ""
                    await self.gateway.send_raw(chain_id, signed.raw)
            except RpcError as exc:
                await nonces.release(chain_id, wallet, nonce)
                await self._finish(
                    intent, {"status": "failed", "error": f"submission refused: {exc.message}"}
                )
                return
            except Exception as exc:
                # The request may have reached the relay: the tracker settles it from the chain.
                await nonces.release(chain_id, wallet, nonce, maybe_sent=True)
                log.warning("submission outcome unknown: %r", exc, extra={"tenant_id": tenant_id})
                return
            await nonces.confirm(chain_id, wallet, nonce)
        submitted = now_timestamp()
        stamps.submitted_at.CopyFrom(submitted)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            updated = await store.update_execution(
                conn,
                tenant_id,
                intent["execution_id"],
                {
                    "status": "submitted",
                    "bundle_hash": bundle_hash,
                    "submitted_at": submitted.ToDatetime(UTC),
                    "timestamps": stamps.SerializeToString(deterministic=True),
                    "block_to_submission_ms": _ms_between(stamps.block_seen_at, submitted),
                },
            )
            if updated is not None:
                await publish_result(conn, updated)

    async def _record_unsent(
        self,
        row: Mapping[str, Any],
        stamps: events_pb2.HopTimestamps,
        *,
        publish: bool = True,
        session_error: bool = False,
    ) -> None:
        """A decision that ends without a transaction (rejected, dropped, stale, failed)."""
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

    async def _record_intent(
        self,
        row: Mapping[str, Any],
        stamps: events_pb2.HopTimestamps,
        legs: Sequence[Mapping[str, Any]] = (),
    ) -> asyncpg.Record | None:
        """Write the signed transaction (or a cross-chain execution's signed ``legs``) before
        sending it. Returns the row (``signed``, or ``dropped`` when the session stopped running
        meanwhile), or None for a duplicate."""
        tenant_id = row["tenant_id"]
        values = {**row, "timestamps": stamps.SerializeToString(deterministic=True)}
        async with tenant_transaction(self.pool, tenant_id) as conn:
            # The usual case in one statement: insert while the session, locked FOR SHARE, is running.
            inserted = await conn.fetchrow(
                f"WITH live AS (SELECT 1 FROM execution.sessions WHERE tenant_id = $1 AND session_id = $2 "
                f"AND state = '{RUNNING}' FOR SHARE) "
                f"INSERT INTO execution.executions ({', '.join(values)}) "
                f"SELECT {', '.join(f'${i}' for i in range(3, len(values) + 3))} WHERE EXISTS (SELECT 1 FROM live) "
                f"ON CONFLICT (tenant_id, opportunity_id) DO NOTHING RETURNING {store.EXECUTION_COLUMNS}",
                tenant_id,
                row["session_id"],
                *values.values(),
            )
            if inserted is not None:
                await store.insert_legs(conn, legs)
                return inserted
            session = await store.get_session(conn, tenant_id, row["session_id"], lock="SHARE")
            if session is None or not accepts_decisions(session["state"]):
                state = session["state"] if session else "gone"
                values.update(
                    status="dropped",
                    error=f"session is {state}",
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

    async def _finish(self, row: asyncpg.Record, changes: Mapping[str, Any]) -> None:
        tenant_id = row["tenant_id"]
        async with tenant_transaction(self.pool, tenant_id) as conn:
            updated = await store.update_execution(
                conn, tenant_id, row["execution_id"], {**changes, "finalized_at": datetime.now(UTC)}
            )
            if updated is not None:
                await publish_result(conn, updated)
                if updated["status"] == "failed" and updated["session_id"]:
                    await store.set_session_error(conn, tenant_id, updated["session_id"], updated["error"])

    # cross-chain execution ------------------------------------------------------------------------

    async def _execute_cross_chain(
        self,
        opportunity: events_pb2.Opportunity,
        row: dict[str, Any],
        stamps: events_pb2.HopTimestamps,
        limits: planning.Limits,
        retry_until_deadline: bool,
    ) -> None:
        """Inventory on every chain: one router swap per leg from the tenant's wallet on the leg's
        chain (after a router approval when the allowance is short). Every leg is signed and
        recorded with the execution before any is sent; then all are sent at once. The tracker
        books each leg on its chain; the execution is final when every leg is."""
        tenant_id, wallet = row["tenant_id"], row["wallet_address"]
        try:
            plans = cross_chain.plan_legs(opportunity, limits.max_slippage_bps)
            chains = {plan.chain_id: self.gateway.chain(plan.chain_id) for plan in plans}
            routers: dict[int, str] = {}
            for plan in plans:
                router = chains[plan.chain_id].config.dex(plan.dex).router
                if router is None:
                    raise planning.PlanError(f"DEX {plan.dex} on chain {plan.chain_id} has no router")
                routers[plan.index] = router
            secret = await self.keys.key(tenant_id, wallet)
        except (ChainUnavailable, planning.PlanError, LookupError) as exc:
            await self._record_unsent(
                {**row, "status": "failed", "error": str(exc)}, stamps, session_error=True
            )
            return
        if limits.execution_delay_ms:
            await asyncio.sleep(limits.execution_delay_ms / 1000)
        try:
            replies = await asyncio.gather(
                *(
                    chains[plan.chain_id].rpc.batch(
                        [
                            ("eth_getBlockByNumber", ["latest", False]),
                            (
                                "eth_call",
                                [
                                    {
                                        "to": plan.token_in,
                                        "data": "0x"
                                        + cross_chain.allowance_call(wallet, routers[plan.index]).hex(),
                                    },
                                    "latest",
                                ],
                            ),
                        ]
                    )
                    for plan in plans
                )
            )
            for block, allowance in replies:
                if not isinstance(block, dict) or isinstance(allowance, RpcError):
                    raise RpcError(-32603, f"no head block or allowance: {block!r} {allowance!r}")
        except Exception as exc:
            await self._record_unsent(
                {**row, "status": "failed", "error": f"RPC failed: {exc}"}, stamps, session_error=True
            )
            return
        stamps.simulated_at.GetCurrentTime()
        heads = {
            plan.chain_id: int(block["number"], 16) for plan, (block, _) in zip(plans, replies, strict=True)
        }
        head = heads.get(row["chain_id"], heads[plans[0].chain_id])
        if planning.is_stale(opportunity.deadline_block, head):
            error = f"deadline block {opportunity.deadline_block} passed (head {head})"
            await self._record_unsent({**row, "status": "stale", "error": error}, stamps)
            return
        fees: dict[int, tuple[int, int]] = {}
        for plan, (block, _) in zip(plans, replies, strict=True):
            base_fee = planning.next_base_fee(block)
            refusal = planning.gas_price_refusal(base_fee, limits)
            if refusal is not None:
                error = f"chain {plan.chain_id}: {refusal}"
                await self._record_unsent({**row, "status": "dropped", "error": error}, stamps)
                return
            fees[plan.chain_id] = planning.fee_caps(base_fee, limits)
        # Each leg is resent (bundles) or awaited (public) for as many blocks of its own chain as
        # the opportunity leaves before its deadline, or the strategy's retry attempts.
        window = max(1, opportunity.deadline_block - head) if opportunity.deadline_block else 1
        if not retry_until_deadline:
            window = min(window, 1 + limits.retry_attempts)
        row.update(target_block=head + 1, attempts=1, tx_hash="", nonce=None, raw_tx=None)
        nonces = self.gateway.nonces
        reserved: list[tuple[int, int]] = []
        legs: list[dict[str, Any]] = []
        async with contextlib.AsyncExitStack() as held:
            for chain_id in sorted(chains):
                await held.enter_async_context(self.gateway.wallet_lock(chain_id, wallet))
            for plan, (block, allowance) in zip(plans, replies, strict=True):
                max_fee, priority_fee = fees[plan.chain_id]
                router = routers[plan.index]

                approve: SignedTransaction | None = None
                if int(allowance or "0x0", 16) < plan.amount_in:
                    nonce = await nonces.reserve(plan.chain_id, wallet)
                    reserved.append((plan.chain_id, nonce))
                    approve = sign_call(
                        chain_id=plan.chain_id,
                        nonce=nonce,
                        key=secret,
                        to=plan.token_in,
                        data=cross_chain.approve_calldata(router),
                        gas=cross_chain.APPROVE_GAS,
                        max_fee=max_fee,
                        priority_fee=priority_fee,
                    )
                nonce = await nonces.reserve(plan.chain_id, wallet)
                reserved.append((plan.chain_id, nonce))
                deadline = int(block["timestamp"], 16) + cross_chain.ROUTER_DEADLINE_S
                swap = sign_call(
                    chain_id=plan.chain_id,
                    nonce=nonce,
                    key=secret,
                    to=router,
                    data=cross_chain.swap_calldata(plan, wallet, deadline),
                    gas=cross_chain.SWAP_GAS,
                    max_fee=max_fee,
                    priority_fee=priority_fee,
                )
                rate = cross_chain.leg_gas_rate(opportunity, plan, chains[plan.chain_id].config)
                target = heads[plan.chain_id] + 1
                legs.append(
                    {
                        "tenant_id": tenant_id,
                        "execution_id": row["execution_id"],
                        "opportunity_id": row["opportunity_id"],
                        "leg_index": plan.index,
                        "chain_id": plan.chain_id,
                        "wallet_address": wallet,
                        "status": "signed",
                        "submission_mode": limits.submission_mode,
                        "router_address": router,
                        "token_in": plan.token_in,
                        "token_out": plan.token_out,
                        "amount_in": plan.amount_in,
                        "amount_out_min": plan.amount_out_min,
                        "approve_tx_hash": "0x" + approve.hash.hex() if approve else "",
                        "approve_raw_tx": approve.raw if approve else None,
                        "nonce": nonce,
                        "tx_hash": "0x" + swap.hash.hex(),
                        "raw_tx": swap.raw,
                        "target_block": target,
                        "last_block": target + window - 1,
                        "attempts": 1,
                        "gas_rate_num": rate[0],
                        "gas_rate_den": rate[1],
                    }
                )
            stamps.signed_at.GetCurrentTime()
            row.update(
                gas_rate_num=legs[0]["gas_rate_num"],
                gas_rate_den=legs[0]["gas_rate_den"],
                leg_tx_hashes=[leg["tx_hash"] for leg in legs],
            )
            intent = await self._record_intent({**row, "status": "signed"}, stamps, legs)
            if intent is None or intent["status"] != "signed":
                for chain_id, nonce in reversed(reserved):
                    await nonces.release(chain_id, wallet, nonce)
                return
            outcomes = await asyncio.gather(*(self._send_leg(leg, leg["target_block"]) for leg in legs))
            for leg, outcome in zip(legs, outcomes, strict=True):
                leg_nonces = [n for c, n in reserved if c == leg["chain_id"]]
                for nonce in reversed(leg_nonces):
                    if outcome is None:
                        await nonces.confirm(leg["chain_id"], wallet, nonce)
                    else:
                        # A refused public swap may follow an approval that did go out.
                        maybe_sent = not isinstance(outcome, RpcError) or leg["approve_raw_tx"] is not None
                        await nonces.release(leg["chain_id"], wallet, nonce, maybe_sent=maybe_sent)
        submitted = now_timestamp()
        stamps.submitted_at.CopyFrom(submitted)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            for leg, outcome in zip(legs, outcomes, strict=True):
                if outcome is None:
                    await store.update_leg(
                        conn, tenant_id, leg["execution_id"], leg["leg_index"], {"status": "submitted"}
                    )
            updated = await store.update_execution(
                conn,
                tenant_id,
                intent["execution_id"],
                {
                    "status": "submitted",
                    "submitted_at": submitted.ToDatetime(UTC),
                    "timestamps": stamps.SerializeToString(deterministic=True),
                    "block_to_submission_ms": _ms_between(stamps.block_seen_at, submitted),
                },
            )
            if updated is not None:
                await publish_result(conn, updated)
        for leg, outcome in zip(legs, outcomes, strict=True):
            if isinstance(outcome, RpcError):
                await self._finish_leg(
                    leg, {"status": "dropped", "error": f"submission refused: {outcome.message}"}
                )
            elif outcome is not None:
                # The request may have reached the chain: the tracker settles the leg from it.
                log.warning("leg submission outcome unknown: %r", outcome, extra={"tenant_id": tenant_id})

    async def _send_leg(
        self, leg: Mapping[str, Any] | asyncpg.Record, target: int, *, approved: bool = False
    ) -> Exception | None:
        """Send a leg's transactions (its approval first unless ``approved``); the error, if any."""
        raws = [bytes(leg["raw_tx"])]
        if leg["approve_raw_tx"] is not None and not approved:
            raws.insert(0, bytes(leg["approve_raw_tx"]))
        try:
            if leg["submission_mode"] == BUNDLE:
                await self.gateway.send_bundle(leg["chain_id"], raws, target)
            else:
                for raw in raws:
                    await self.gateway.send_raw(leg["chain_id"], raw)
        except Exception as exc:
            return exc
        return None

    async def check_legs(self, chain_id: int, head: int) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.in_flight_legs(conn, chain_id)
        if not rows:
            return
        approvals = [row["approve_tx_hash"] for row in rows if row["approve_tx_hash"]]
        receipts = await self.gateway.receipts(chain_id, [row["tx_hash"] for row in rows] + approvals)
        approved = dict(zip(approvals, receipts[len(rows) :], strict=True))
        for row, receipt in zip(rows, receipts[: len(rows)], strict=True):
            approval = approved.get(row["approve_tx_hash"])
            if receipt is not None:
                await self._book_leg(row, receipt, approval)
            elif head >= row["target_block"]:
                await self._missed_leg(row, head, approval is not None)

    async def _book_leg(
        self, row: asyncpg.Record, receipt: Mapping[str, Any], approval: Mapping[str, Any] | None
    ) -> None:
        success = int(receipt["status"], 16) == 1
        gas_used, gas_cost = cross_chain.gas_paid([r for r in (approval, receipt) if r is not None])
        await self._finish_leg(
            row,
            {
                "status": "included" if success else "reverted",
                "block_number": int(receipt["blockNumber"], 16),
                "amount_out": (
                    cross_chain.received(receipt, row["token_out"], row["wallet_address"]) if success else 0
                ),
                "gas_used": gas_used,
                "gas_cost": gas_cost,
                "error": "" if success else "swap reverted",
            },
        )

    async def _missed_leg(self, row: asyncpg.Record, head: int, approved: bool) -> None:
        """The leg's target block passed without it: resend while its window lasts (a bundle
        every block; a public transaction only if its send never confirmed), then drop it."""
        unsent = row["status"] == "signed"
        if unsent and row["execution_id"] in self._sending:
            return
        if head < row["last_block"]:
            if row["submission_mode"] != BUNDLE and not unsent:
                return  # public: it may still be mined within the window
            error = await self._send_leg(row, head + 1, approved=approved)
            if error is None:
                async with tenant_transaction(self.pool, row["tenant_id"]) as conn:
                    await store.update_leg(
                        conn,
                        row["tenant_id"],
                        row["execution_id"],
                        row["leg_index"],
                        {"status": "submitted", "target_block": head + 1, "attempts": row["attempts"] + 1},
                    )
                return
            log.info("leg resubmission refused: %s", error, extra={"tenant_id": row["tenant_id"]})
            return
        await self._finish_leg(
            row, {"status": "dropped", "error": f"not included by block {head} (last {row['last_block']})"}
        )
        await self.gateway.nonces.resync(row["chain_id"], row["wallet_address"])

    async def _finish_leg(self, leg: Mapping[str, Any] | asyncpg.Record, changes: Mapping[str, Any]) -> None:
        """Book one leg; when it is the last one in flight, settle the execution. The execution
        row is locked first, so the chains' trackers settle it exactly once."""
        tenant_id, execution_id = leg["tenant_id"], leg["execution_id"]
        async with tenant_transaction(self.pool, tenant_id) as conn:
            execution = await store.get_execution(conn, tenant_id, execution_id, lock=True)
            if execution is None:
                return
            booked = await store.update_leg(
                conn,
                tenant_id,
                execution_id,
                leg["leg_index"],
                {**changes, "finalized_at": datetime.now(UTC)},
            )
            if booked is None:
                return
            legs = await store.legs_of(conn, tenant_id, execution_id)
            if any(other["status"] in ("signed", "submitted") for other in legs):
                return
            settled = cross_chain.settle([dict(other) for other in legs])
            stamps = events_pb2.HopTimestamps.FromString(bytes(execution["timestamps"]))
            if settled.status == "included":
                stamps.included_at.GetCurrentTime()
            updated = await store.update_execution(
                conn,
                tenant_id,
                execution_id,
                {
                    "status": settled.status,
                    "error": settled.error[:2000],
                    "block_number": settled.block_number,
                    "gas_used": settled.gas_used,
                    "gas_cost": settled.gas_cost,
                    "realized_gross_profit": settled.gross_profit,
                    "realized_profit": settled.realized_profit,
                    "timestamps": stamps.SerializeToString(deterministic=True),
                    "finalized_at": datetime.now(UTC),
                },
            )
            if updated is not None:
                await publish_result(conn, updated)
                if updated["status"] == "failed" and updated["session_id"]:
                    await store.set_session_error(conn, tenant_id, updated["session_id"], updated["error"])

    # kill switch ----------------------------------------------------------------------------------

    async def on_kill_switch(self, event: events_pb2.KillSwitchChanged, delivery: Delivery) -> None:
        """Engaged: every live session it covers (tenant, one strategy, or all tenants for the
        platform switch) goes FAILED at once, in one transaction."""
        tenant_id = event.tenant_id or PLATFORM_TENANT
        platform_wide = tenant_id == PLATFORM_TENANT
        reason = f"kill switch: {event.reason}" if event.reason else "kill switch"
        async with platform_transaction(self.pool) as conn:
            applies = await store.record_kill_switch(
                conn,
                tenant_id=tenant_id,
                strategy_id=event.strategy_id,
                engaged=event.engaged,
                reason=event.reason,
                event_id=event.event_id or delivery.msg_id,
                changed_at=_when(event.occurred_at),
            )
            if not (applies and event.engaged):
                return
            sessions = await store.live_sessions(
                conn, None if platform_wide else tenant_id, event.strategy_id, lock=True
            )
            actor = event.actor if event.HasField("actor") else actor_of(None)
            for session in sessions:
                updated = await store.update_session_state(
                    conn, session["tenant_id"], session["session_id"], FAILED, reason
                )
                await publish_session_event(conn, updated, session["state"], actor)
        log.info("kill switch engaged: %d sessions stopped", len(sessions), extra={"tenant_id": tenant_id})

    # inclusion tracking ---------------------------------------------------------------------------

    async def _track(self, chain_id: int) -> None:
        last_head = -1
        while True:
            try:
                head = await self.gateway.chain(chain_id).rpc.block_number()
                if head != last_head:
                    await self.check_chain(chain_id, head)
                    await self.check_legs(chain_id, head)
                    await self.check_protected(chain_id, head)
                    last_head = head
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("tracking chain %d failed; retrying", chain_id, exc_info=True)
            await asyncio.sleep(self.poll_seconds)

    async def check_chain(self, chain_id: int, head: int) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.in_flight_executions(conn, chain_id)
        if not rows:
            return
        receipts = await self.gateway.receipts(chain_id, [row["tx_hash"] for row in rows])
        for row, receipt in zip(rows, receipts, strict=True):
            if receipt is not None:
                await self._book_receipt(row, receipt)
            elif head >= row["target_block"]:
                await self._missed(row, head)

    async def _book_receipt(self, row: asyncpg.Record, receipt: Mapping[str, Any]) -> None:
        rate = (int(row["gas_rate_num"]), int(row["gas_rate_den"]))
        outcome = planning.outcome_from_receipt(receipt, row["executor_address"], rate)
        stamps = events_pb2.HopTimestamps.FromString(bytes(row["timestamps"]))
        stamps.included_at.GetCurrentTime()
        await self._finish(
            row,
            {
                "status": "included" if outcome.success else "reverted",
                "block_number": outcome.block_number,
                "gas_used": outcome.gas_used,
                "effective_gas_price": outcome.effective_gas_price,
                "gas_cost": outcome.gas_cost,
                "realized_gross_profit": outcome.gross_profit,
                "realized_profit": outcome.realized_profit,
                "timestamps": stamps.SerializeToString(deterministic=True),
                "error": "" if outcome.success else "transaction reverted",
            },
        )

    async def _missed(self, row: asyncpg.Record, head: int) -> None:
        """The target block was mined without the transaction: resubmit the same signed transaction
        while attempts and the deadline allow, otherwise drop it. A row still "signed" was recorded
        but its send never confirmed (a crash or a lost reply): it gets its send now. Resending is
        safe either way: one signed transaction, one nonce, at most one inclusion."""
        chain_id, wallet = row["chain_id"], row["wallet_address"]
        within_deadline = not planning.is_stale(row["deadline_block"], head)
        bundle = row["submission_mode"] == BUNDLE
        unsent = row["status"] == "signed"
        if unsent and row["execution_id"] in self._sending:
            return
        if row["status"] in ("signed", "submitted") and within_deadline:
            if not bundle and not unsent and row["deadline_block"]:
                return  # public: it may still be mined before the deadline
            if unsent or (bundle and row["attempts"] < row["max_attempts"]):
                try:
                    if bundle:
                        await self.gateway.send_bundle(chain_id, [bytes(row["raw_tx"])], head + 1)
                    else:
                        await self.gateway.send_raw(chain_id, bytes(row["raw_tx"]))
                except RpcError as exc:
                    log.info("resubmission refused: %s", exc.message, extra={"tenant_id": row["tenant_id"]})
                else:
                    changes: dict[str, Any] = {"target_block": head + 1, "attempts": row["attempts"] + 1}
                    if unsent:
                        changes.update(status="submitted", submitted_at=datetime.now(UTC))
                    async with tenant_transaction(self.pool, row["tenant_id"]) as conn:
                        await store.update_execution(conn, row["tenant_id"], row["execution_id"], changes)
                    return
        await self._finish(
            row,
            {"status": "dropped", "error": f"not included by block {head} (target {row['target_block']})"},
        )
        # The nonce was not used: let the chain tell the next reservation where the account is.
        await self.gateway.nonces.resync(chain_id, wallet)

    # protected transactions -------------------------------------------------------------------------

    async def submit_protected(self, row: asyncpg.Record, head: int) -> None:
        """Send a client's transaction as a single-transaction bundle for the next block; the
        tracker resends it every block (in arrival order) until included or past its last block."""
        changes: dict[str, Any]
        try:
            await self.gateway.send_bundle(row["chain_id"], [bytes(row["raw_tx"])], head + 1)
        except RpcError as exc:
            changes = {"status": "failed", "error": f"relay refused: {exc.message}"}
        else:
            changes = {"status": "submitted", "submitted_at": datetime.now(UTC)}
        async with platform_transaction(self.pool) as conn:
            await store.update_protected(conn, row["protected_transaction_id"], changes)

    async def check_protected(self, chain_id: int, head: int) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.pending_protected(conn, chain_id)
        if not rows:
            return
        receipts = await self.gateway.receipts(chain_id, [row["tx_hash"] for row in rows])
        for row, receipt in zip(rows, receipts, strict=True):
            changes: dict[str, Any] | None = None
            if receipt is not None:
                success = int(receipt["status"], 16) == 1
                changes = {
                    "status": "included" if success else "reverted",
                    "block_number": int(receipt["blockNumber"], 16),
                    "included_at": datetime.now(UTC),
                }
            elif head >= row["max_block_number"]:
                changes = {"status": "expired", "error": f"not included by block {row['max_block_number']}"}
            else:
                await self.submit_protected(row, head)
            if changes is not None:
                async with platform_transaction(self.pool) as conn:
                    await store.update_protected(conn, row["protected_transaction_id"], changes)
