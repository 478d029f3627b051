"""The treasury's commands: book a receipt's movements (the tracker's ReceiptHook), reconcile
every holding against the chain periodically, and read holdings back.

Balances are read in one JSON-RPC batch per chain and block (eth_getBalance and ERC-20
balanceOf for the wallet and its executor, every configured token); the ledger rules are pure
(domain/ledger.py), the SQL is in store.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from mevaas_chain import abi
from mevaas_chain.client import RpcError
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_execution.chains import ChainGateway
from mevaas_execution.hooks import BookedReceipt
from mevaas_execution.treasury import store
from mevaas_execution.treasury.domain.ledger import (
    NATIVE,
    HolderKind,
    Holding,
    newly_drifted,
    receipt_movements,
    reconcile,
)
from mevaas_execution.treasury.events import DRIFTING, publish_drift

log = logging.getLogger("mevaas.execution.treasury")


class Treasury:
    def __init__(self, pool: asyncpg.Pool, gateway: ChainGateway, *, reconcile_seconds: float = 30.0) -> None:
        self.pool = pool
        self.gateway = gateway
        self.reconcile_seconds = reconcile_seconds
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------ readings

    def holdings_of(self, chain_id: int, wallet: str, executor: str) -> list[Holding]:
        wallet = wallet.lower()
        holders = [(wallet, HolderKind.WALLET)]
        if executor:
            holders.append((executor.lower(), HolderKind.EXECUTOR))
        tokens = [NATIVE] + [t.address.lower() for t in self.gateway.chain(chain_id).config.tokens]
        return [Holding(chain_id, h, kind, wallet, token) for h, kind in holders for token in tokens]

    async def read(self, chain_id: int, holdings: Sequence[Holding], block: int) -> dict[Holding, int]:
        """Every holding's balance at ``block``, in one batch; a failed read raises (a holding is
        never taken as 0 because the node did not answer)."""
        tag = hex(block)
        requests = [
            ("eth_getBalance", [h.holder_address, tag])
            if h.token == NATIVE
            else ("eth_call", [{"to": h.token, "data": "0x" + abi.balance_of(h.holder_address).hex()}, tag])
            for h in holdings
        ]
        replies = await self.gateway.chain(chain_id).rpc.batch(requests)
        out: dict[Holding, int] = {}
        for holding, reply in zip(holdings, replies, strict=True):
            if isinstance(reply, RpcError):
                raise reply
            out[holding] = int(str(reply), 16) if holding.token == NATIVE else _uint(str(reply))
        return out

    # ------------------------------------------------------------------------------ booking

    async def after_receipt(self, booked: BookedReceipt) -> None:
        """Book what the receipt's block moved for the wallet and its executor, then reconcile
        them at that block."""
        holdings = self.holdings_of(booked.chain_id, booked.wallet_address, booked.executor_address)
        before, after = await asyncio.gather(
            self.read(booked.chain_id, holdings, booked.block_number - 1),
            self.read(booked.chain_id, holdings, booked.block_number),
        )
        async with tenant_transaction(self.pool, booked.tenant_id) as conn:
            await store.lock_wallet(conn, booked.tenant_id, booked.chain_id, holdings[0].wallet_address)
            booked_sums = await store.ledger_sums(
                conn, booked.tenant_id, booked.chain_id, sorted({h.holder_address for h in holdings})
            )
            opened = {
                h: booked_sums[(h.holder_address, h.token)][1]
                for h in holdings
                if (h.holder_address, h.token) in booked_sums
            }
            movements = receipt_movements(
                before,
                after,
                opened_at=opened,
                action_kind=booked.action_kind,
                gas_cost_wei=booked.gas_cost_wei,
                reference=booked.execution_id,
                block_number=booked.block_number,
            )
            await store.insert_movements(conn, booked.tenant_id, movements)
            await self._record(conn, booked.tenant_id, booked.chain_id, holdings, after, booked.block_number)

    async def _record(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        chain_id: int,
        holdings: Sequence[Holding],
        chain: dict[Holding, int],
        block: int,
    ) -> None:
        sums = await store.ledger_sums(
            conn, tenant_id, chain_id, sorted({h.holder_address for h in holdings})
        )
        for holding in holdings:
            ledger_amount, opened = sums.get((holding.holder_address, holding.token), (0, block))
            status = reconcile(chain[holding], ledger_amount)
            previous = await store.upsert_holding(
                conn,
                tenant_id,
                holding,
                opened_block=opened,
                chain_amount=chain[holding],
                ledger_amount=ledger_amount,
                read_block=block,
                status=status,
            )
            if newly_drifted(previous, status):
                log.warning(
                    "treasury drift: %s %s token %r on chain %d holds %d, the ledger says %d",
                    holding.holder_kind.value,
                    holding.holder_address,
                    holding.token,
                    chain_id,
                    chain[holding],
                    ledger_amount,
                    extra={"tenant_id": tenant_id},
                )
                await publish_drift(
                    conn,
                    tenant_id,
                    holding,
                    chain_amount=chain[holding],
                    ledger_amount=ledger_amount,
                    block_number=block,
                )

    # ------------------------------------------------------------------------------ reconciliation

    async def reconcile_all(self) -> None:
        """Read every booked holding of every tenant at each chain's head and record whether the
        ledger still agrees; publishes a drift alert for each holding that started drifting."""
        async with platform_transaction(self.pool, readonly=True) as conn:
            wallets = await store.tenants_wallets(conn)
        heads: dict[int, int] = {}
        for row in wallets:
            chain_id = row["chain_id"]
            if chain_id not in self.gateway.chain_ids:
                continue
            if chain_id not in heads:
                heads[chain_id] = await self.gateway.chain(chain_id).rpc.block_number()
            holdings = self.holdings_of(chain_id, row["wallet_address"], row["address"])
            chain = await self.read(chain_id, holdings, heads[chain_id])
            async with tenant_transaction(self.pool, row["tenant_id"]) as tx:
                await store.lock_wallet(tx, row["tenant_id"], chain_id, holdings[0].wallet_address)
                sums = await store.ledger_sums(
                    tx, row["tenant_id"], chain_id, [h.holder_address for h in holdings]
                )
                # Only holdings the ledger has opened are reconciled: the first receipt opens them.
                booked = [h for h in holdings if (h.holder_address, h.token) in sums]
                await self._record(tx, row["tenant_id"], chain_id, booked, chain, heads[chain_id])
        async with platform_transaction(self.pool, readonly=True) as conn:
            counts = await store.drift_counts(conn)
        for (chain_id, holder_kind), n in counts.items():
            DRIFTING.labels(str(chain_id), holder_kind).set(n)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="treasury-reconciliation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_seconds)
            try:
                await self.reconcile_all()
            except Exception:
                log.warning("treasury reconciliation failed", exc_info=True)

    async def holdings(self, tenant_id: str, *, chain_id: int = 0, wallet: str = "") -> list[asyncpg.Record]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await store.holdings(conn, tenant_id, chain_id=chain_id, wallet=wallet.lower())


def _uint(data: str) -> int:
    """balanceOf's uint256; an empty reply (no contract at the token address) is an error."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    if len(raw) < 32:
        raise RpcError(-32000, f"balanceOf returned {len(raw)} bytes (no token contract there?)")
    return abi.decode_uint(raw)
