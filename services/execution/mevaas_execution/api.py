"""gRPC servicer for ExecutionService: each RPC validates its request, calls one command
(commands.py) and converts the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2, execution_pb2_grpc
from mevaas_chain.keystore import SecretKey
from mevaas_chain.rawtx import RawTransactionError, decode_signed
from mevaas_core.auth import Role
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, rpc
from mevaas_core.onboarding import Capability
from mevaas_core.pagination import keyset_page, page_after
from mevaas_core.validation import MAX_ID_LENGTH, Validator, require_identifier
from mevaas_execution import convert
from mevaas_execution.chains import ChainGateway
from mevaas_execution.commands import Commands
from mevaas_execution.domain import sessions as states
from mevaas_execution.rebalancing import events as rebalance_events
from mevaas_execution.rebalancing.commands import Rebalances
from mevaas_execution.rebalancing.domain import states as rebalance_states
from mevaas_execution.treasury.holdings import TreasuryHoldings
from mevaas_execution.treasury.transfers import Transfers

Ctx = Any
READERS = tuple(ALL_TENANT_ROLES)
OPERATORS = (Role.OWNER, Role.ADMIN, Role.TRADER)
WALLET_ADMINS = (Role.OWNER, Role.ADMIN)
PRIVATE_KEY = re.compile(r"^0x[0-9a-fA-F]{64}$")
RAW_TX = re.compile(r"^0x([0-9a-fA-F]{2})+$")
MAX_RAW_TX_BYTES = 128 * 1024
DEFAULT_PROTECTION_BLOCKS = 25


def _time_range(
    request: execution_pb2.ListExecutionsRequest | execution_pb2.ListProtectedTransactionsRequest,
    v: Validator,
) -> tuple[datetime | None, datetime | None]:
    """A list request's optional time_range: start required when it is set, end after start."""
    start = end = None
    if request.HasField("time_range"):
        if v.check(request.time_range.HasField("start"), "time_range.start", "is required"):
            start = request.time_range.start.ToDatetime(UTC)
        if request.time_range.HasField("end"):
            end = request.time_range.end.ToDatetime(UTC)
            v.check(start is None or end > start, "time_range.end", "must be after start")
    return start, end


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(
        self,
        commands: Commands,
        gateway: ChainGateway,
        transfers: Transfers,
        holdings: TreasuryHoldings,
        rebalances: Rebalances,
    ) -> None:
        self._commands = commands
        self._gateway = gateway
        self._holdings = holdings
        self._transfers = transfers
        self._rebalances = rebalances

    # sessions -------------------------------------------------------------------------------------

    @rpc(*OPERATORS)
    async def StartExecution(
        self, request: execution_pb2.StartExecutionRequest, context: Ctx
    ) -> execution_pb2.StartExecutionResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.identifier(request.strategy_id, "strategy_id")
        if request.wallet_address:
            v.address(request.wallet_address, "wallet_address")
        v.raise_if_any()
        return await self._commands.start_session(current_principal(), request)

    async def _transition(
        self,
        session_id: str,
        reason: str,
        target_of: Any,
        *,
        check_kill_switch: bool = False,
        requires: Capability | None = None,
    ) -> execution_pb2.ExecutionSession:
        row = await self._commands.transition(
            current_principal(),
            session_id,
            reason,
            target_of,
            check_kill_switch=check_kill_switch,
            requires=requires,
        )
        return convert.session(row)

    def _validate_session_request(self, session_id: str, reason: str = "") -> None:
        v = Validator()
        v.identifier(session_id, "session_id")
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
            request.session_id,
            "resumed",
            states.resume_target,
            check_kill_switch=True,
            requires=Capability.LIVE_SESSION,
        )
        return execution_pb2.ResumeExecutionResponse(session=session)

    @rpc(*READERS)
    async def GetExecutionStatus(
        self, request: execution_pb2.GetExecutionStatusRequest, context: Ctx
    ) -> execution_pb2.GetExecutionStatusResponse:
        self._validate_session_request(request.session_id)
        row, counts, totals = await self._commands.session_status(
            current_principal().tenant_id, request.session_id
        )
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
        v.check(
            len(request.strategy_id) <= MAX_ID_LENGTH,
            "strategy_id",
            f"must be at most {MAX_ID_LENGTH} characters",
        )
        v.raise_if_any()
        cursor = page_after(request.page.page_token)
        rows = await self._commands.list_sessions(
            current_principal().tenant_id,
            strategy_id=request.strategy_id,
            state=states.PROTO_TO_STATE.get(request.state),
            before=cursor,
            limit=size + 1,
        )
        page, token = keyset_page(rows, size, "started_at", "session_id")
        return execution_pb2.ListExecutionSessionsResponse(
            sessions=[convert.session(r) for r in page], page=common_pb2.PageResponse(next_page_token=token)
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
        start, end = _time_range(request, v)
        v.raise_if_any()
        cursor = page_after(request.page.page_token)
        rows = await self._commands.list_executions(
            current_principal().tenant_id,
            session_id=request.session_id,
            strategy_id=request.strategy_id,
            status=convert.STATUS_FILTER.get(request.status),
            chain_id=request.chain_id,
            start=start,
            end=end,
            before=cursor,
            limit=size + 1,
        )
        page, token = keyset_page(rows, size, "created_at", "execution_id")
        return execution_pb2.ListExecutionsResponse(
            executions=[convert.execution(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    @rpc(*READERS)
    async def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: Ctx
    ) -> execution_pb2.GetExecutionResponse:
        require_identifier(request.execution_id, "execution_id")
        row = await self._commands.get_execution(current_principal().tenant_id, request.execution_id)
        return execution_pb2.GetExecutionResponse(execution=convert.execution(row))

    # wallets --------------------------------------------------------------------------------------

    @rpc(*WALLET_ADMINS)
    async def CreateWallet(
        self, request: execution_pb2.CreateWalletRequest, context: Ctx
    ) -> execution_pb2.CreateWalletResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(len(request.label) <= 64, "label", "must be at most 64 characters")
        v.raise_if_any()
        wallet = await self._commands.store_wallet(
            current_principal(), "CreateWallet", request, None, request.label, request.make_default
        )
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
        wallet = await self._commands.store_wallet(
            current_principal(), "ImportWallet", request, secret, request.label, request.make_default
        )
        return execution_pb2.ImportWalletResponse(wallet=wallet)

    @rpc(*READERS)
    async def ListWallets(
        self, request: execution_pb2.ListWalletsRequest, context: Ctx
    ) -> execution_pb2.ListWalletsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        after = page_after(request.page.page_token)
        tenant_id = current_principal().tenant_id
        rows = await self._commands.list_wallets(tenant_id, after=after, limit=size + 1)
        page, token = keyset_page(rows, size, "created_at", "wallet_id")
        executors = await self._holdings.wallet_executors(tenant_id, [r["address"] for r in page])
        return execution_pb2.ListWalletsResponse(
            wallets=[convert.wallet(r, executors.get(str(r["address"]).lower(), ())) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    @rpc(*READERS)
    async def ListExecutorDeployments(
        self, request: execution_pb2.ListExecutorDeploymentsRequest, context: Ctx
    ) -> execution_pb2.ListExecutorDeploymentsResponse:
        v = Validator()
        if request.wallet_address:
            v.address(request.wallet_address, "wallet_address")
        size = v.page_size(request.page.page_size)
        v.raise_if_any()
        before = page_after(request.page.page_token)
        rows = await self._commands.executor_deployments(
            current_principal().tenant_id, request.wallet_address, before=before, limit=size + 1
        )
        page, token = keyset_page(rows, size, "deployed_at", "address")
        return execution_pb2.ListExecutorDeploymentsResponse(
            deployments=[convert.deployment(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    # protected transactions -------------------------------------------------------------------------

    @rpc(*OPERATORS)
    async def SubmitProtectedTransaction(
        self, request: execution_pb2.SubmitProtectedTransactionRequest, context: Ctx
    ) -> execution_pb2.SubmitProtectedTransactionResponse:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        chain_ok = v.check(
            request.chain_id in self._gateway.chain_ids, "chain_id", "must be a configured chain"
        )
        v.check(
            request.mode
            in (execution_pb2.PROTECTION_MODE_PRIVATE_BUNDLE, execution_pb2.PROTECTION_MODE_FAIR_ORDERING),
            "mode",
            "must be PRIVATE_BUNDLE or FAIR_ORDERING",
        )
        v.check(
            not (request.fast and request.mode == execution_pb2.PROTECTION_MODE_FAIR_ORDERING),
            "fast",
            "is for PRIVATE_BUNDLE (FAIR_ORDERING transactions go as one bundle, in receipt order)",
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
        head = await self._gateway.chain(request.chain_id).rpc.block_number()
        max_block = request.max_block_number or head + DEFAULT_PROTECTION_BLOCKS
        if max_block <= head:
            v.fail("max_block_number", f"must be in the future (head is {head})")
            v.raise_if_any()
        return await self._commands.submit_protected(
            current_principal(), request, decoded, raw, head, max_block
        )

    @rpc(*READERS)
    async def GetProtectedTransaction(
        self, request: execution_pb2.GetProtectedTransactionRequest, context: Ctx
    ) -> execution_pb2.GetProtectedTransactionResponse:
        v = Validator()
        lookup = request.WhichOneof("lookup")
        v.check(lookup is not None, "lookup", "set protected_transaction_id or tx_hash")
        if lookup == "protected_transaction_id":
            v.length(request.protected_transaction_id, "protected_transaction_id", 1, MAX_ID_LENGTH)
        elif lookup == "tx_hash":
            v.check(
                bool(re.fullmatch(r"0x[0-9a-fA-F]{64}", request.tx_hash)), "tx_hash", "must be 0x + 64 hex"
            )
        v.raise_if_any()
        transaction = await self._commands.get_protected(
            current_principal().tenant_id, request.protected_transaction_id, request.tx_hash
        )
        return execution_pb2.GetProtectedTransactionResponse(transaction=transaction)

    @rpc(*READERS)
    async def ListProtectedTransactions(
        self, request: execution_pb2.ListProtectedTransactionsRequest, context: Ctx
    ) -> execution_pb2.ListProtectedTransactionsResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.check(
            request.status == 0 or request.status in convert.PROTECTED_STATUS_FILTER,
            "status",
            "is not a known status",
        )
        if request.sender:
            v.address(request.sender, "sender")
        start, end = _time_range(request, v)
        v.raise_if_any()
        rows = await self._commands.list_protected(
            current_principal().tenant_id,
            status=convert.PROTECTED_STATUS_FILTER.get(request.status),
            sender=request.sender,
            chain_id=request.chain_id,
            start=start,
            end=end,
            before=page_after(request.page.page_token),
            limit=size + 1,
        )
        page, token = keyset_page(rows, size, "received_at", "protected_transaction_id")
        return execution_pb2.ListProtectedTransactionsResponse(
            transactions=[convert.protected(r, self._commands.gateway.registry) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )

    # treasury ---------------------------------------------------------------------------------

    def _validate_transfer(
        self, request: execution_pb2.WithdrawRequest | execution_pb2.DepositRequest
    ) -> Validator:
        v = Validator()
        v.idempotency_key(request.idempotency_key)
        v.check(request.chain_id in self._gateway.chain_ids, "chain_id", "must be a configured chain")
        v.address(request.wallet_address, "wallet_address")
        if request.token_address:
            v.address(request.token_address, "token_address")
        amount = v.integer_amount(request.amount, "amount")
        if amount is not None:
            v.check(amount > 0, "amount", "must be positive")
        return v

    @rpc(*WALLET_ADMINS)
    async def Withdraw(
        self, request: execution_pb2.WithdrawRequest, context: Ctx
    ) -> execution_pb2.WithdrawResponse:
        v = self._validate_transfer(request)
        if request.to_address:
            v.address(request.to_address, "to_address")
        v.raise_if_any()
        transfer = await self._transfers.withdraw(current_principal().tenant_id, request)
        return execution_pb2.WithdrawResponse(transfer=transfer)

    @rpc(*WALLET_ADMINS)
    async def Deposit(
        self, request: execution_pb2.DepositRequest, context: Ctx
    ) -> execution_pb2.DepositResponse:
        self._validate_transfer(request).raise_if_any()
        transfer = await self._transfers.deposit(current_principal().tenant_id, request)
        return execution_pb2.DepositResponse(transfer=transfer)

    # rebalances -----------------------------------------------------------------------------------

    @rpc(*READERS)
    async def GetRebalance(
        self, request: execution_pb2.GetRebalanceRequest, context: Ctx
    ) -> execution_pb2.GetRebalanceResponse:
        require_identifier(request.rebalance_id, "rebalance_id")
        row = await self._rebalances.get(current_principal().tenant_id, request.rebalance_id)
        return execution_pb2.GetRebalanceResponse(result=rebalance_events.result(row))

    @rpc(*READERS)
    async def ListRebalances(
        self, request: execution_pb2.ListRebalancesRequest, context: Ctx
    ) -> execution_pb2.ListRebalancesResponse:
        v = Validator()
        size = v.page_size(request.page.page_size)
        v.check(
            request.status == 0 or request.status in rebalance_states.FROM_PROTO,
            "status",
            "is not a status a rebalance takes here",
        )
        v.raise_if_any()
        rows = await self._rebalances.list_rebalances(
            current_principal().tenant_id,
            state=rebalance_states.FROM_PROTO.get(request.status),
            before=page_after(request.page.page_token),
            limit=size + 1,
        )
        page, token = keyset_page(rows, size, "created_at", "rebalance_id")
        return execution_pb2.ListRebalancesResponse(
            rebalances=[rebalance_events.result(r) for r in page],
            page=common_pb2.PageResponse(next_page_token=token),
        )
