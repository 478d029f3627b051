"""Withdraw and Deposit: move funds between a wallet and its executor contract (or out of the
executor to an allow-listed address), booked in the treasury ledger after the receipt.

Each transfer is checked (the wallet is the tenant's, the executor exists, the destination is the
wallet or on risk's allow-list, the amount is at most the balance), then signed and recorded
with its idempotency key before it is sent: a retried request re-sends the same signed
transaction and waits for it, it never signs a second one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.client import RpcError
from mevaas_core import subjects
from mevaas_core.bus import Bus, NoRespondersError, RequestTimeoutError
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from mevaas_execution import convert
from mevaas_execution import store as execution_store
from mevaas_execution.chains import ChainGateway, sign_call
from mevaas_execution.contracts import store as contract_store
from mevaas_execution.domain.planning import DEFAULT_PRIORITY_FEE_WEI
from mevaas_execution.hooks import BookedReceipt
from mevaas_execution.treasury import store
from mevaas_execution.treasury.commands import Treasury
from mevaas_execution.treasury.domain.ledger import NATIVE, HolderKind, Holding
from mevaas_execution.treasury.domain.transfers import (
    TRANSFER_GAS,
    TransferCall,
    deposit_call,
    destination_allowed,
    withdrawal_call,
)
from mevaas_execution.wallets import WalletKeys

# (tenant, chain) -> the destinations the tenant's risk limits allow (lower-case addresses).
Allowlist = Callable[[str, int], Awaitable[frozenset[str]]]


class RiskAllowlist:
    """Asks risk (rpc.risk.withdrawal_allowlist); risk not answering refuses the withdrawal."""

    def __init__(self, bus: Bus, *, timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.timeout_s = timeout_s

    async def __call__(self, tenant_id: str, chain_id: int) -> frozenset[str]:
        try:
            reply = await self.bus.request(
                subjects.RISK_WITHDRAWAL_ALLOWLIST,
                common_pb2.WithdrawalAllowlistRequest(),
                common_pb2.WithdrawalAllowlistResponse,
                tenant_id=tenant_id,
                timeout=self.timeout_s,
            )
        except (NoRespondersError, RequestTimeoutError) as exc:
            raise Unavailable(f"risk did not answer the withdrawal allow-list check: {exc}") from exc
        return frozenset(a.lower() for a in reply.addresses)


class Transfers:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        keys: WalletKeys,
        treasury: Treasury,
        allowlist: Allowlist,
        *,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.keys = keys
        self.treasury = treasury
        self.allowlist = allowlist
        self.receipt_timeout_s = receipt_timeout_s

    async def withdraw(
        self, tenant_id: str, request: execution_pb2.WithdrawRequest
    ) -> execution_pb2.TreasuryTransfer:
        async def plan(wallet: str, executor: str, amount: int) -> tuple[TransferCall, str]:
            destination = (request.to_address or wallet).lower()
            if destination != wallet:
                allowed = await self.allowlist(tenant_id, request.chain_id)
                if not destination_allowed(destination, wallet, allowed):
                    raise InvalidArgument(
                        FieldViolation(
                            "to_address",
                            "is neither the wallet nor on the tenant's risk withdrawal_allowlist",
                        )
                    )
            await self._require_balance(
                request.chain_id,
                Holding(request.chain_id, executor, HolderKind.EXECUTOR, wallet, _token(request)),
                amount,
            )
            return withdrawal_call(executor, _token(request), destination, amount), destination

        return await self._transfer(tenant_id, "withdrawal", request, plan)

    async def deposit(
        self, tenant_id: str, request: execution_pb2.DepositRequest
    ) -> execution_pb2.TreasuryTransfer:
        async def plan(wallet: str, executor: str, amount: int) -> tuple[TransferCall, str]:
            await self._require_balance(
                request.chain_id,
                Holding(request.chain_id, wallet, HolderKind.WALLET, wallet, _token(request)),
                amount,
            )
            return deposit_call(executor, _token(request), amount), executor

        return await self._transfer(tenant_id, "deposit", request, plan)

    async def _require_balance(self, chain_id: int, holding: Holding, amount: int) -> None:
        head = await self.gateway.chain(chain_id).rpc.block_number()
        balance = (await self.treasury.read(chain_id, [holding], head))[holding]
        if amount > balance:
            raise FailedPrecondition(
                f"amount {amount} exceeds the {holding.holder_kind.value}'s balance of {balance} "
                f"(token {holding.token or 'native'}, chain {chain_id}, block {head})",
                subject="amount",
                violation_type="INSUFFICIENT_BALANCE",
            )

    async def _transfer(
        self,
        tenant_id: str,
        kind: str,
        request: execution_pb2.WithdrawRequest | execution_pb2.DepositRequest,
        plan: Callable[[str, str, int], Awaitable[tuple[TransferCall, str]]],
    ) -> execution_pb2.TreasuryTransfer:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_transfer(conn, tenant_id, kind, request.idempotency_key)
        sent = False
        if row is None:
            wallet, executor = await self._locate(tenant_id, request)
            try:
                row = await self._sign_send_record(tenant_id, kind, request, wallet, executor, plan)
                sent = True
            except _RecordedMeanwhile as recorded:
                row = recorded.row
        if row["status"] == "signed":
            row = await self._book(tenant_id, row, resend=not sent)
        return transfer_proto(row)

    async def _locate(
        self, tenant_id: str, request: execution_pb2.WithdrawRequest | execution_pb2.DepositRequest
    ) -> tuple[str, str]:
        """(wallet, executor), lower-case: the wallet must be the tenant's, with an executor there."""
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            wallet_row = await execution_store.get_wallet(conn, tenant_id, request.wallet_address)
            if wallet_row is None:
                raise NotFound("wallet", request.wallet_address)
            executor = await contract_store.get_executor(
                conn, tenant_id, wallet_row["address"], request.chain_id
            )
        if not executor:
            raise FailedPrecondition(
                f"wallet {request.wallet_address} has no executor contract on chain {request.chain_id} "
                "(start a session on that chain first)",
                subject="wallet_address",
            )
        return str(wallet_row["address"]).lower(), executor.lower()

    async def _sign_send_record(
        self,
        tenant_id: str,
        kind: str,
        request: execution_pb2.WithdrawRequest | execution_pb2.DepositRequest,
        wallet: str,
        executor: str,
        plan: Callable[[str, str, int], Awaitable[tuple[TransferCall, str]]],
    ) -> asyncpg.Record:
        amount = int(request.amount)
        call, destination = await plan(wallet, executor, amount)
        key = await self.keys.key(tenant_id, wallet)
        chain_id = request.chain_id
        block = await self.gateway.latest_block(chain_id)
        max_fee = 2 * int(block.get("baseFeePerGas") or "0x0", 16) + DEFAULT_PRIORITY_FEE_WEI
        async with (
            self.gateway.wallet_lock(chain_id, wallet),
            self.gateway.nonces.lease(chain_id, wallet) as nonce,
        ):
            signed = sign_call(
                chain_id=chain_id,
                nonce=nonce,
                key=key,
                to=call.to,
                data=call.data,
                gas=TRANSFER_GAS,
                max_fee=max_fee,
                priority_fee=DEFAULT_PRIORITY_FEE_WEI,
                value=call.value,
            )
            async with tenant_transaction(self.pool, tenant_id) as conn:
                row = await store.insert_transfer(
                    conn,
                    transfer_id=str(uuid.uuid4()),
                    tenant_id=tenant_id,
                    idempotency_key=request.idempotency_key,
                    kind=kind,
                    chain_id=chain_id,
                    wallet=wallet,
                    executor=executor,
                    token=_token(request),
                    to_address=destination,
                    amount=amount,
                    tx_hash="0x" + signed.hash.hex(),
                    raw_tx=signed.raw,
                )
                if row["tx_hash"] != "0x" + signed.hash.hex():
                    # The same request, recorded by a concurrent retry: its transaction is the
                    # one; raising releases this unsent nonce.
                    raise _RecordedMeanwhile(row)
            await self.gateway.send_raw(chain_id, signed.raw)
        return row

    async def _book(self, tenant_id: str, row: asyncpg.Record, *, resend: bool) -> asyncpg.Record:
        chain_id = row["chain_id"]
        (known,) = await self.gateway.receipts(chain_id, [row["tx_hash"]])
        if resend and known is None:
            # A retry of a transfer recorded but perhaps never sent (a crash in between): the same
            # signed transaction again. A node that already has it refuses it; the receipt decides.
            with contextlib.suppress(RpcError):
                await self.gateway.send_raw(chain_id, bytes(row["raw_tx"]))
        receipt = await self.gateway.wait_receipt(chain_id, row["tx_hash"], self.receipt_timeout_s)
        ok = int(receipt["status"], 16) == 1
        gas_cost = int(receipt["gasUsed"], 16) * int(receipt.get("effectiveGasPrice") or "0x0", 16)
        block_number = int(receipt["blockNumber"], 16)
        async with tenant_transaction(self.pool, tenant_id) as conn:
            finished = await store.finish_transfer(
                conn,
                tenant_id,
                row["transfer_id"],
                status="included" if ok else "failed",
                block_number=block_number,
                gas_cost=gas_cost,
                error="" if ok else f"transaction {row['tx_hash']} reverted",
            )
        await self.treasury.after_receipt(
            BookedReceipt(
                tenant_id=tenant_id,
                execution_id=row["transfer_id"],
                action_kind=row["kind"],
                chain_id=chain_id,
                wallet_address=row["wallet_address"],
                executor_address=row["executor_address"],
                tx_hashes=(row["tx_hash"],),
                block_number=block_number,
                status=finished["status"],
                gas_cost_wei=gas_cost,
            )
        )
        return finished


class _RecordedMeanwhile(Exception):
    def __init__(self, row: asyncpg.Record) -> None:
        super().__init__("transfer recorded by a concurrent retry")
        self.row = row


def _token(request: execution_pb2.WithdrawRequest | execution_pb2.DepositRequest) -> str:
    return request.token_address.lower() if request.token_address else NATIVE


def transfer_proto(row: asyncpg.Record) -> execution_pb2.TreasuryTransfer:
    return execution_pb2.TreasuryTransfer(
        transfer_id=row["transfer_id"],
        kind=row["kind"],
        chain_id=row["chain_id"],
        wallet_address=convert.checksum(row["wallet_address"]),
        executor_address=convert.checksum(row["executor_address"]),
        token_address=convert.checksum(row["token"]) if row["token"] else "",
        to_address=convert.checksum(row["to_address"]),
        amount=str(int(row["amount"])),
        tx_hash=row["tx_hash"],
        status=row["status"],
        block_number=row["block_number"],
        gas_cost_wei=str(int(row["gas_cost"])),
        error=row["error"],
        created_at=convert.timestamp(row["created_at"]),
    )
