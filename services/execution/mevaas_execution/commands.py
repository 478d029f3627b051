"""Execution's use cases, one transaction each (state change, outbox event and idempotency record
together): sessions (start, transitions, activation, the kill switch), wallets, protected
transactions, and the reads the API serves. The API validates and converts; this decides."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.keystore import SecretKey, encrypt_private_key, generate_wallet
from mevaas_chain.rawtx import DecodedTransaction
from mevaas_core.auth import Principal
from mevaas_core.bus import PLATFORM_TENANT, Delivery
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.errors import AlreadyExists, FailedPrecondition, NotFound
from mevaas_core.idempotency import IdempotentCall
from mevaas_core.onboarding import Capability
from mevaas_core.tenant_phase import PhaseGate
from mevaas_execution import convert, store
from mevaas_execution.chains import ChainGateway
from mevaas_execution.contracts import ExecutorContracts
from mevaas_execution.contracts import store as contract_store
from mevaas_execution.domain import sessions as states
from mevaas_execution.events import SCHEMA, actor_of, publish_session_event
from mevaas_execution.protection import store as protection_store
from mevaas_execution.protection.commands import ProtectionCommands, Submission
from mevaas_execution.protection.publishing import receipt_proto
from mevaas_execution.strategies import StrategyDirectory
from mevaas_execution.wallets import WalletKeys

log = logging.getLogger("mevaas.execution.commands")

Row = asyncpg.Record


class Commands:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        keys: WalletKeys,
        contracts: ExecutorContracts,
        protection: ProtectionCommands,
        phases: PhaseGate,
        strategies: StrategyDirectory | None = None,
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.keys = keys
        self.contracts = contracts
        self.protection = protection
        self.phases = phases
        self.strategies = strategies
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # sessions -------------------------------------------------------------------------------------

    async def kill_switch_reason(self, tenant_id: str, strategy_id: str) -> str | None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            return await store.engaged_kill_switch(conn, tenant_id, strategy_id, PLATFORM_TENANT)

    async def start_session(
        self, principal: Principal, request: execution_pb2.StartExecutionRequest
    ) -> execution_pb2.StartExecutionResponse:
        tenant_id = principal.tenant_id
        call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method="StartExecution", request=request)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            replay = await call.replay(conn, execution_pb2.StartExecutionResponse)
        if replay is not None:
            return replay
        await self.phases.require(tenant_id, Capability.LIVE_SESSION)
        reason = await self.kill_switch_reason(tenant_id, request.strategy_id)
        if reason is not None:
            raise FailedPrecondition(f"the kill switch is engaged ({reason})", subject="kill-switch")
        strategy = (
            await self.strategies.lookup(tenant_id, request.strategy_id, request.strategy_version)
            if self.strategies
            else None
        )
        settings = strategy.settings if strategy else None
        chain_ids = (strategy.chain_ids if strategy else []) or self.gateway.chain_ids
        unknown = [c for c in chain_ids if c not in self.gateway.chain_ids]
        if unknown:
            raise FailedPrecondition(f"chains {unknown} are not configured for execution", subject="chains")
        wanted_wallet = request.wallet_address or (settings.wallet_address if settings else "")
        async with tenant_transaction(self.pool, tenant_id) as conn:
            replay = await call.replay(conn, execution_pb2.StartExecutionResponse)
            if replay is not None:
                return replay
            wallet = (
                await store.get_wallet(conn, tenant_id, wanted_wallet)
                if wanted_wallet
                else await store.get_default_wallet(conn, tenant_id)
            )
            if wallet is None:
                raise FailedPrecondition(
                    f"wallet {wanted_wallet or '(default)'} is unknown; create or import one first",
                    subject="wallet",
                )
            # Recorded executors are checked live on chain before the first call to each (pipeline).
            ready = [
                await contract_store.get_executor(conn, tenant_id, wallet["address"], c) is not None
                for c in chain_ids
            ]
            state = states.RUNNING if all(ready) else states.STARTING
            row = await store.insert_session(
                conn,
                session_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                strategy_id=request.strategy_id,
                strategy_version=strategy.version if strategy else request.strategy_version,
                strategy_type=strategy.type if strategy else 0,
                state=state,
                wallet_address=wallet["address"],
                chain_ids=chain_ids,
                submission_mode=(settings.submission_mode if settings else 0)
                or common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
                settings=settings.SerializeToString(deterministic=True) if settings else b"",
                sequence=1,
                state_reason="started" if state == states.RUNNING else "deploying executors",
            )
            if row is None:
                raise FailedPrecondition(
                    f"strategy {request.strategy_id} already has a session that is not stopped",
                    subject=f"strategies/{request.strategy_id}",
                )
            await publish_session_event(conn, row, "", actor_of(principal))
            response = execution_pb2.StartExecutionResponse(session=convert.session(row))
            await call.remember(conn, response)
        if state == states.STARTING:
            self.activate_soon(tenant_id, row["session_id"])
        return response

    async def transition(
        self,
        principal: Principal,
        session_id: str,
        reason: str,
        target_of: Callable[[str], str],
        *,
        check_kill_switch: bool = False,
        requires: Capability | None = None,
    ) -> Row:
        tenant_id = principal.tenant_id
        if requires is not None:
            # Before the row lock: the answer may need a round trip to tenancy.
            await self.phases.require(tenant_id, requires)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            row = await store.get_session(conn, tenant_id, session_id, lock="UPDATE")
            if row is None:
                raise NotFound("execution session", session_id)
            try:
                target = target_of(row["state"])
            except states.TransitionRefused as exc:
                raise FailedPrecondition(str(exc), subject=f"sessions/{session_id}") from None
            if target == row["state"]:
                return row
            if check_kill_switch:
                engaged = await self.kill_switch_reason(tenant_id, row["strategy_id"])
                if engaged is not None:
                    raise FailedPrecondition(f"the kill switch is engaged ({engaged})", subject="kill-switch")
            updated = await store.update_session_state(conn, tenant_id, session_id, target, reason)
            await publish_session_event(conn, updated, row["state"], actor_of(principal))
            return updated

    def activate_soon(self, tenant_id: str, session_id: str) -> None:
        self.spawn(self.activate(tenant_id, session_id), f"exec-activate-{session_id}")

    async def activate(self, tenant_id: str, session_id: str) -> None:
        """STARTING -> RUNNING once the wallet has a live executor on every chain of the session
        (deployed, or redeployed when the recorded one is missing or foreign); FAILED with the
        reason, naming the executor, when that fails."""
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_session(conn, tenant_id, session_id)
        if row is None or row["state"] != states.STARTING:
            return
        error = ""
        try:
            for chain_id in row["chain_ids"]:
                await self.contracts.ensure(tenant_id, row["wallet_address"], chain_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"executor deployment failed: {exc}"
            log.warning("session %s: %s", session_id, error, extra={"tenant_id": tenant_id})
        async with tenant_transaction(self.pool, tenant_id) as conn:
            current = await store.get_session(conn, tenant_id, session_id, lock="UPDATE")
            if current is None or current["state"] != states.STARTING:
                return
            if error:
                await store.set_session_error(conn, tenant_id, session_id, error)
                updated = await store.update_session_state(conn, tenant_id, session_id, states.FAILED, error)
            else:
                updated = await store.update_session_state(
                    conn, tenant_id, session_id, states.RUNNING, "executors ready"
                )
            await publish_session_event(conn, updated, states.STARTING, actor_of(None))

    async def resume_starting(self) -> None:
        """Finish activating the sessions a previous process left STARTING."""
        async with platform_transaction(self.pool, readonly=True) as conn:
            starting = await store.starting_sessions(conn)
        for row in starting:
            self.activate_soon(row["tenant_id"], row["session_id"])

    async def on_kill_switch(self, event: events_pb2.KillSwitchChanged, delivery: Delivery) -> None:
        """Engaged: every live session it covers (tenant, one strategy, or all tenants for the
        platform switch) goes FAILED at once, in one transaction."""
        tenant_id = event.tenant_id or PLATFORM_TENANT
        platform_wide = tenant_id == PLATFORM_TENANT
        reason = f"kill switch: {event.reason}" if event.reason else "kill switch"
        changed_at = event.occurred_at.ToDatetime(UTC) if event.HasField("occurred_at") else datetime.now(UTC)
        async with platform_transaction(self.pool) as conn:
            applies = await store.record_kill_switch(
                conn,
                tenant_id=tenant_id,
                strategy_id=event.strategy_id,
                engaged=event.engaged,
                reason=event.reason,
                event_id=event.event_id or delivery.msg_id,
                changed_at=changed_at,
            )
            if not (applies and event.engaged):
                return
            sessions = await store.live_sessions(
                conn, None if platform_wide else tenant_id, event.strategy_id, lock=True
            )
            actor = event.actor if event.HasField("actor") else actor_of(None)
            for session in sessions:
                updated = await store.update_session_state(
                    conn, session["tenant_id"], session["session_id"], states.FAILED, reason
                )
                await publish_session_event(conn, updated, session["state"], actor)

    # reads ----------------------------------------------------------------------------------------

    async def session_status(self, tenant_id: str, session_id: str) -> tuple[Row, dict[str, int], Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_session(conn, tenant_id, session_id)
            if row is None:
                raise NotFound("execution session", session_id)
            counts = await store.session_counts(conn, tenant_id, session_id)
            totals = await store.session_totals(conn, tenant_id, session_id)
        return row, counts, totals

    async def list_sessions(self, tenant_id: str, **filters: Any) -> list[Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await store.list_sessions(conn, tenant_id, **filters)

    async def list_executions(self, tenant_id: str, **filters: Any) -> list[Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await store.list_executions(conn, tenant_id, **filters)

    async def list_protected(self, tenant_id: str, **filters: Any) -> list[Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await protection_store.list_protected(conn, tenant_id, **filters)

    async def get_execution(self, tenant_id: str, execution_id: str) -> Row:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_execution(conn, tenant_id, execution_id)
        if row is None:
            raise NotFound("execution", execution_id)
        return row

    async def list_wallets(
        self, tenant_id: str, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await store.list_wallets(conn, tenant_id, after=after, limit=limit)

    async def executor_deployments(
        self, tenant_id: str, wallet: str, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await contract_store.executor_deployments(
                conn, tenant_id, wallet, before=before, limit=limit
            )

    # wallets --------------------------------------------------------------------------------------

    async def store_wallet(
        self,
        principal: Principal,
        method: str,
        request: Any,
        secret: SecretKey | None,
        label: str,
        make_default: bool,
    ) -> execution_pb2.Wallet:
        tenant_id = principal.tenant_id
        response_type = (
            execution_pb2.CreateWalletResponse
            if method == "CreateWallet"
            else execution_pb2.ImportWalletResponse
        )
        async with tenant_transaction(self.pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method=method, request=request)
            replay = await call.replay(conn, response_type)
            if replay is not None:
                replayed: execution_pb2.Wallet = getattr(replay, "wallet")  # noqa: B009 - both response types
                return replayed
            ring = await self.keys.sealing_ring(conn, tenant_id)
            record = (
                generate_wallet(tenant_id, ring)
                if secret is None
                else encrypt_private_key(tenant_id, secret, ring)
            )
            row = await store.insert_wallet(
                conn,
                wallet_id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                address=record.address,
                label=label,
                imported=secret is not None,
                make_default=make_default,
                kek_id=record.kek_id,
                wrapped_dek=record.wrapped_dek,
                ciphertext=record.ciphertext,
            )
            if row is None:
                raise AlreadyExists(f"{record.address} is already a wallet of this tenant")
            wallet = convert.wallet(row)
            # Idempotency stores the response only: the request would hold an imported key.
            await call.remember(conn, response_type(wallet=wallet))
            return wallet

    # protected transactions -------------------------------------------------------------------------

    async def submit_protected(
        self,
        principal: Principal,
        request: execution_pb2.SubmitProtectedTransactionRequest,
        decoded: DecodedTransaction,
        raw: bytes,
        head: int,
        max_block: int,
    ) -> execution_pb2.SubmitProtectedTransactionResponse:
        tenant_id = principal.tenant_id
        call = IdempotentCall(
            SCHEMA, tenant_id=tenant_id, method="SubmitProtectedTransaction", request=request
        )
        # The key's lock is held while the transaction is accepted, so a concurrent retry with the
        # same key waits and replays. The transaction itself is the idempotency key of what is
        # recorded and sent (the same raw transaction is accepted once, whatever the key).
        async with tenant_transaction(self.pool, tenant_id) as conn:
            replay = await call.replay(conn, execution_pb2.SubmitProtectedTransactionResponse)
            if replay is not None:
                return replay
            accepted = await self.protection.accept(
                Submission(
                    tenant_id,
                    request.chain_id,
                    decoded,
                    raw,
                    request.mode,
                    max_block,
                    head,
                    "grpc",
                    fast=request.fast,
                )
            )
            response = execution_pb2.SubmitProtectedTransactionResponse(
                transaction=convert.protected(accepted.row, self.gateway.registry)
            )
            if accepted.receipt is not None:
                response.transaction.ordering_receipt.CopyFrom(receipt_proto(accepted.receipt))
            await call.remember(conn, response)
        return response

    async def get_protected(
        self, tenant_id: str, protected_id: str, tx_hash: str
    ) -> execution_pb2.ProtectedTransaction:
        row = await self.protection.get(tenant_id, protected_id, tx_hash)
        transaction = convert.protected(row, self.gateway.registry)
        receipt = await self.protection.receipt(row)
        if receipt is not None:
            transaction.ordering_receipt.CopyFrom(receipt_proto(receipt))
        return transaction
