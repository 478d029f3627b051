"""gRPC servicer for ExecutionService: validate, translate, and run each mutation as one
transaction (state change + outbox event + idempotency record)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.keystore import SecretKey, encrypt_private_key, generate_wallet
from mevaas_core.auth import Role
from mevaas_core.bus import PLATFORM_TENANT, Bus, BusError, NoRespondersError, RemoteError
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, rpc
from mevaas_core.idempotency import IdempotentCall
from mevaas_core.pagination import decode_page_token, encode_page_token
from mevaas_core.validation import Validator
from mevaas_execution import convert, store
from mevaas_execution.domain import sessions as states
from mevaas_execution.domain.rawtx import RawTransactionError, decode_signed
from mevaas_execution.engine import Engine
from mevaas_execution.events import SCHEMA, actor_of, publish_session_event
from mevaas_execution.wallets import WalletKeys

Ctx = Any
READERS = tuple(ALL_TENANT_ROLES)
OPERATORS = (Role.OWNER, Role.ADMIN, Role.TRADER)
WALLET_ADMINS = (Role.OWNER, Role.ADMIN)
PRIVATE_KEY = re.compile(r"^0x[0-9a-fA-F]{64}$")
RAW_TX = re.compile(r"^0x([0-9a-fA-F]{2})+$")
MAX_RAW_TX_BYTES = 128 * 1024
DEFAULT_PROTECTION_BLOCKS = 25
MAX_ID = 128


@dataclass(frozen=True, slots=True)
class StrategyView:
    """What a session needs from the strategy version it runs."""

    version: int
    type: int
    chain_ids: list[int]
    settings: strategy_pb2.ExecutionSettings | None


class StrategyDirectory:
    """Asks the strategy service (NATS request/reply on ``subject``) for a strategy version.

    When nobody serves the subject the session still starts: chains default to every configured
    chain and execution settings come from each decision (opportunity + risk limits)."""

    def __init__(self, bus: Bus, subject: str, timeout_s: float = 2.0) -> None:
        self._bus = bus
        self._subject = subject
        self._timeout_s = timeout_s

    async def lookup(self, tenant_id: str, strategy_id: str, version: int) -> StrategyView | None:
        try:
            reply = await self._bus.request(
                self._subject,
                strategy_pb2.GetStrategyRequest(strategy_id=strategy_id, version=version),
                strategy_pb2.GetStrategyResponse,
                tenant_id=tenant_id,
                timeout=self._timeout_s,
            )
        except NoRespondersError:
            return None
        except RemoteError as exc:
            if exc.code == 404:
                raise NotFound("strategy", strategy_id) from None
            raise Unavailable(f"strategy lookup failed: {exc.message}") from None
        except BusError as exc:
            raise Unavailable(f"strategy lookup failed: {exc}") from None
        strategy = reply.strategy
        parameters = strategy.config.parameters
        return StrategyView(
            version=strategy.version,
            type=strategy.config.type,
            chain_ids=list(parameters.chain_ids),
            settings=parameters.execution_settings if parameters.HasField("execution_settings") else None,
        )


def _page_cursor(token: str) -> tuple[datetime, str] | None:
    cursor = decode_page_token(token, 2)
    if cursor is None:
        return None
    try:
        return datetime.fromisoformat(str(cursor[0])), str(cursor[1])
    except ValueError:
        raise InvalidArgument(
            FieldViolation("page.page_token", "is not a page token issued by this API")
        ) from None


def _next_token(rows: list[asyncpg.Record], size: int, time_column: str, id_column: str) -> str:
    if len(rows) <= size:
        return ""
    last = rows[size - 1]
    return encode_page_token(last[time_column].isoformat(), last[id_column])


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(
        self, pool: asyncpg.Pool, engine: Engine, keys: WalletKeys, strategies: StrategyDirectory
    ) -> None:
        self._pool = pool
        self._engine = engine
        self._keys = keys
        self._strategies = strategies

    # sessions -------------------------------------------------------------------------------------

    async def _kill_switch_reason(self, tenant_id: str, strategy_id: str) -> str | None:
        async with platform_transaction(self._pool, readonly=True) as conn:
            return await store.engaged_kill_switch(conn, tenant_id, strategy_id, PLATFORM_TENANT)

    @rpc(*OPERATORS)
    async def StartExecution(
        self, request: execution_pb2.StartExecutionRequest, context: Ctx
    ) -> execution_pb2.StartExecutionResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        if v.required(request.strategy_id, "strategy_id"):
            v.length(request.strategy_id, "strategy_id", 1, MAX_ID)
        if request.wallet_address:
            v.address(request.wallet_address, "wallet_address")
        v.raise_if_any()
        principal = current_principal()
        tenant_id = principal.tenant_id
        method = "StartExecution"
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method=method, request=request)
            replay = await call.replay(conn, execution_pb2.StartExecutionResponse)
        if replay is not None:
            return replay
        reason = await self._kill_switch_reason(tenant_id, request.strategy_id)
        if reason is not None:
            raise FailedPrecondition(f"the kill switch is engaged ({reason})", subject="kill-switch")
        strategy = await self._strategies.lookup(tenant_id, request.strategy_id, request.strategy_version)
        settings = strategy.settings if strategy else None
        chain_ids = (strategy.chain_ids if strategy else []) or self._engine.gateway.chain_ids
        unknown = [c for c in chain_ids if c not in self._engine.gateway.chain_ids]
        if unknown:
            raise FailedPrecondition(f"chains {unknown} are not configured for execution", subject="chains")
        wanted_wallet = request.wallet_address or (settings.wallet_address if settings else "")
        async with tenant_transaction(self._pool, tenant_id) as conn:
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
            ready = [
                await store.get_executor(conn, tenant_id, wallet["address"], c) is not None for c in chain_ids
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
            self._engine.activate_soon(tenant_id, row["session_id"])
        return response

    async def _transition(
        self, session_id: str, reason: str, target_of: Any, *, check_kill_switch: bool = False
    ) -> execution_pb2.ExecutionSession:
        principal = current_principal()
        tenant_id = principal.tenant_id
        async with tenant_transaction(self._pool, tenant_id) as conn:
            row = await store.get_session(conn, tenant_id, session_id, lock="UPDATE")
            if row is None:
                raise NotFound("execution session", session_id)
            try:
                target = target_of(row["state"])
            except states.TransitionRefused as exc:
                raise FailedPrecondition(str(exc), subject=f"sessions/{session_id}") from None
            if target == row["state"]:
                return convert.session(row)
            if check_kill_switch:
                engaged = await self._kill_switch_reason(tenant_id, row["strategy_id"])
                if engaged is not None:
                    raise FailedPrecondition(f"the kill switch is engaged ({engaged})", subject="kill-switch")
            updated = await store.update_session_state(conn, tenant_id, session_id, target, reason)
            await publish_session_event(conn, updated, row["state"], actor_of(principal))
            return convert.session(updated)

    def _validate_session_request(self, session_id: str, reason: str = "") -> None:
        v = Validator()
        if v.required(session_id, "session_id"):
            v.length(session_id, "session_id", 1, MAX_ID)
        v.check(len(reason) <= 512, "reason", "must be at most 512 characters")
        v.raise_if_any()

    @rpc(*OPERATORS)
    async def StopExecution(
        self, request: execution_pb2.StopExecutionRequest, context: Ctx
    ) -> execution_pb2.StopExecutionResponse:
        self._validate_session_request(request.session_id, request.reason)
        session = await self._transition(request.session_id, request.reason or "stopped", states.stop_target)
        return execution_pb2.StopExecutionResponse(session=session)

    @rpc(*OPERATORS)
    async def PauseExecution(
        self, request: execution_pb2.PauseExecutionRequest, context: Ctx
    ) -> execution_pb2.PauseExecutionResponse:
        self._validate_session_request(request.session_id, request.reason)
        session = await self._transition(request.session_id, request.reason or "paused", states.pause_target)
        return execution_pb2.PauseExecutionResponse(session=session)

    @rpc(*OPERATORS)
    async def ResumeExecution(
        self, request: execution_pb2.ResumeExecutionRequest, context: Ctx
    ) -> execution_pb2.ResumeExecutionResponse:
        self._validate_session_request(request.session_id)
        session = await self._transition(
            request.session_id, "resumed", states.resume_target, check_kill_switch=True
        )
        return execution_pb2.ResumeExecutionResponse(session=session)

    @rpc(*READERS)
    async def GetExecutionStatus(
        self, request: execution_pb2.GetExecutionStatusRequest, context: Ctx
    ) -> execution_pb2.GetExecutionStatusResponse:
        self._validate_session_request(request.session_id)
        tenant_id = current_principal().tenant_id
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_session(conn, tenant_id, request.session_id)
            if row is None:
                raise NotFound("execution session", request.session_id)
            counts = await store.session_counts(conn, tenant_id, request.session_id)
            totals = await store.session_totals(conn, tenant_id, request.session_id)
        received = sum(n for status, n in counts.items() if status != "executed")
        return execution_pb2.GetExecutionStatusResponse(
            session=convert.session(row),
            counts=execution_pb2.ExecutionCounts(
                opportunities_received=received,
                opportunities_rejected=counts.get("rejected", 0),
                executed=counts.get("executed", 0),
                included=counts.get("included", 0),
                reverted=counts.get("reverted", 0),
                dropped=counts.get("dropped", 0),
                stale=counts.get("stale", 0),
                failed=counts.get("failed", 0),
                in_flight=counts.get("signed", 0) + counts.get("submitted", 0),
            ),
            realized_profit=str(int(totals["realized_profit"])),
            profit_token=common_pb2.Token.FromString(bytes(totals["profit_token"] or b"")),
            gas_spent_wei=str(int(totals["gas_cost"])),
            last_error=row["last_error"],
            last_error_at=convert.timestamp(row["last_error_at"]),
            last_opportunity_at=convert.timestamp(totals["last_opportunity_at"]),
            last_execution_at=convert.timestamp(totals["last_execution_at"]),
        )

    @rpc(*READERS)
    async def ListExecutionSessions(
        self, request: execution_pb2.ListExecutionSessionsRequest, context: Ctx
    ) -> execution_pb2.ListExecutionSessionsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.check(request.state == 0 or request.state in states.PROTO_TO_STATE, "state", "is not a known state")
        v.check(len(request.strategy_id) <= MAX_ID, "strategy_id", f"must be at most {MAX_ID} characters")
        v.raise_if_any()
        cursor = _page_cursor(request.page.page_token)
        tenant_id = current_principal().tenant_id
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.list_sessions(
                conn,
                tenant_id,
                strategy_id=request.strategy_id,
                state=states.PROTO_TO_STATE.get(request.state),
                before=cursor,
                limit=size + 1,
            )
        return execution_pb2.ListExecutionSessionsResponse(
            sessions=[convert.session(r) for r in rows[:size]],
            page=common_pb2.PageResponse(next_page_token=_next_token(rows, size, "started_at", "session_id")),
        )

    # executions -----------------------------------------------------------------------------------

    @rpc(*READERS)
    async def ListExecutions(
        self, request: execution_pb2.ListExecutionsRequest, context: Ctx
    ) -> execution_pb2.ListExecutionsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.check(
            request.status == 0 or request.status in convert.STATUS_FILTER, "status", "is not a known status"
        )
        start = end = None
        if request.HasField("time_range"):
            if v.check(request.time_range.HasField("start"), "time_range.start", "is required"):
                start = request.time_range.start.ToDatetime(UTC)
            if request.time_range.HasField("end"):
                end = request.time_range.end.ToDatetime(UTC)
                v.check(start is None or end > start, "time_range.end", "must be after start")
        v.raise_if_any()
        cursor = _page_cursor(request.page.page_token)
        tenant_id = current_principal().tenant_id
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.list_executions(
                conn,
                tenant_id,
                session_id=request.session_id,
                strategy_id=request.strategy_id,
                status=convert.STATUS_FILTER.get(request.status),
                chain_id=request.chain_id,
                start=start,
                end=end,
                before=cursor,
                limit=size + 1,
            )
        return execution_pb2.ListExecutionsResponse(
            executions=[convert.execution(r) for r in rows[:size]],
            page=common_pb2.PageResponse(
                next_page_token=_next_token(rows, size, "created_at", "execution_id")
            ),
        )

    @rpc(*READERS)
    async def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: Ctx
    ) -> execution_pb2.GetExecutionResponse:
        v = Validator()
        if v.required(request.execution_id, "execution_id"):
            v.length(request.execution_id, "execution_id", 1, MAX_ID)
        v.raise_if_any()
        tenant_id = current_principal().tenant_id
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_execution(conn, tenant_id, request.execution_id)
        if row is None:
            raise NotFound("execution", request.execution_id)
        return execution_pb2.GetExecutionResponse(execution=convert.execution(row))

    # wallets --------------------------------------------------------------------------------------

    async def _store_wallet(
        self, method: str, request: Any, secret: SecretKey | None, label: str, make_default: bool
    ) -> execution_pb2.Wallet:
        tenant_id = current_principal().tenant_id
        response_type = (
            execution_pb2.CreateWalletResponse
            if method == "CreateWallet"
            else execution_pb2.ImportWalletResponse
        )
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method=method, request=request)
            replay = await call.replay(conn, response_type)
            if replay is not None:
                replayed: execution_pb2.Wallet = getattr(replay, "wallet")  # noqa: B009 - both response types
                return replayed
            record = (
                generate_wallet(tenant_id, self._keys.keyring)
                if secret is None
                else encrypt_private_key(tenant_id, secret, self._keys.keyring)
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

    @rpc(*WALLET_ADMINS)
    async def CreateWallet(
        self, request: execution_pb2.CreateWalletRequest, context: Ctx
    ) -> execution_pb2.CreateWalletResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(len(request.label) <= 64, "label", "must be at most 64 characters")
        v.raise_if_any()
        wallet = await self._store_wallet("CreateWallet", request, None, request.label, request.make_default)
        return execution_pb2.CreateWalletResponse(wallet=wallet)

    @rpc(*WALLET_ADMINS)
    async def ImportWallet(
        self, request: execution_pb2.ImportWalletRequest, context: Ctx
    ) -> execution_pb2.ImportWalletResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(len(request.label) <= 64, "label", "must be at most 64 characters")
        secret: SecretKey | None = None
        if v.pattern(request.private_key, "private_key", PRIVATE_KEY, "0x + 64 hex characters"):
            try:
                secret = SecretKey.from_hex(request.private_key)
            except ValueError:
                v.fail("private_key", "must be non-zero and below the secp256k1 curve order")
        v.raise_if_any()
        assert secret is not None
        wallet = await self._store_wallet(
            "ImportWallet", request, secret, request.label, request.make_default
        )
        return execution_pb2.ImportWalletResponse(wallet=wallet)

    @rpc(*READERS)
    async def ListWallets(
        self, request: execution_pb2.ListWalletsRequest, context: Ctx
    ) -> execution_pb2.ListWalletsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        after = _page_cursor(request.page.page_token)
        tenant_id = current_principal().tenant_id
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            rows = await store.list_wallets(conn, tenant_id, after=after, limit=size + 1)
        return execution_pb2.ListWalletsResponse(
            wallets=[convert.wallet(r) for r in rows[:size]],
            page=common_pb2.PageResponse(next_page_token=_next_token(rows, size, "created_at", "wallet_id")),
        )

    # protected transactions -------------------------------------------------------------------------

    @rpc(*OPERATORS)
    async def SubmitProtectedTransaction(
        self, request: execution_pb2.SubmitProtectedTransactionRequest, context: Ctx
    ) -> execution_pb2.SubmitProtectedTransactionResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        chain_ok = v.check(
            request.chain_id in self._engine.gateway.chain_ids, "chain_id", "must be a configured chain"
        )
        v.check(
            request.mode
            in (execution_pb2.PROTECTION_MODE_PRIVATE_BUNDLE, execution_pb2.PROTECTION_MODE_FAIR_ORDERING),
            "mode",
            "must be PRIVATE_BUNDLE or FAIR_ORDERING",
        )
        decoded = None
        raw = b""
        if v.check(
            len(request.raw_transaction) <= 2 + 2 * MAX_RAW_TX_BYTES,
            "raw_transaction",
            "must be at most 128 KiB",
        ) and v.pattern(request.raw_transaction, "raw_transaction", RAW_TX, "0x-prefixed hex"):
            raw = bytes.fromhex(request.raw_transaction[2:])
            try:
                decoded = decode_signed(raw)
            except RawTransactionError as exc:
                v.fail("raw_transaction", f"is not a signed transaction: {exc}")
        if decoded is not None and chain_ok:
            v.check(decoded.chain_id == request.chain_id, "raw_transaction", "must be signed for chain_id")
        v.raise_if_any()
        assert decoded is not None
        head = await self._engine.gateway.chain(request.chain_id).rpc.block_number()
        max_block = request.max_block_number or head + DEFAULT_PROTECTION_BLOCKS
        if max_block <= head:
            v.fail("max_block_number", f"must be in the future (head is {head})")
            v.raise_if_any()
        tenant_id = current_principal().tenant_id
        method = "SubmitProtectedTransaction"
        async with tenant_transaction(self._pool, tenant_id) as conn:
            call = IdempotentCall(SCHEMA, tenant_id=tenant_id, method=method, request=request)
            replay = await call.replay(conn, execution_pb2.SubmitProtectedTransactionResponse)
            if replay is not None:
                return replay
            row = await store.insert_protected(
                conn,
                {
                    "protected_transaction_id": str(uuid.uuid4()),
                    "tenant_id": tenant_id,
                    "chain_id": request.chain_id,
                    "tx_hash": decoded.tx_hash,
                    "sender": decoded.sender,
                    "nonce": decoded.nonce,
                    "raw_tx": raw,
                    "mode": request.mode,
                    "status": "received",
                    "max_block_number": max_block,
                },
            )
            if row is None:
                row = await store.get_protected(conn, tenant_id, tx_hash=decoded.tx_hash)
                assert row is not None
            response = execution_pb2.SubmitProtectedTransactionResponse(transaction=convert.protected(row))
            await call.remember(conn, response)
        if row["status"] == "received":
            await self._engine.submit_protected(row, head)
        return response

    @rpc(*READERS)
    async def GetProtectedTransaction(
        self, request: execution_pb2.GetProtectedTransactionRequest, context: Ctx
    ) -> execution_pb2.GetProtectedTransactionResponse:
        v = Validator()
        lookup = request.WhichOneof("lookup")
        v.check(lookup is not None, "lookup", "set protected_transaction_id or tx_hash")
        if lookup == "protected_transaction_id":
            v.length(request.protected_transaction_id, "protected_transaction_id", 1, MAX_ID)
        elif lookup == "tx_hash":
            v.check(
                bool(re.fullmatch(r"0x[0-9a-fA-F]{64}", request.tx_hash)), "tx_hash", "must be 0x + 64 hex"
            )
        v.raise_if_any()
        tenant_id = current_principal().tenant_id
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
            row = await store.get_protected(
                conn,
                tenant_id,
                protected_id=request.protected_transaction_id,
                tx_hash=request.tx_hash,
            )
        if row is None:
            raise NotFound("protected transaction", request.protected_transaction_id or request.tx_hash)
        return execution_pb2.GetProtectedTransactionResponse(transaction=convert.protected(row))
