"""Use cases of protected transactions, shared by the gRPC API (SubmitProtectedTransaction) and the
Protect RPC (eth_sendRawTransaction): accept (simulate, record, send), status, and the pending
nonce a wallet should sign next."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from mevaas_chain.rawtx import DecodedTransaction
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from mevaas_core.protection_fees import protection_fee
from mevaas_core.sanctions import SanctionsList
from mevaas_core.tenant_phase import PhaseGate
from mevaas_execution.protection import store
from mevaas_execution.protection.auction import OrderFlowAuction, refund_share
from mevaas_execution.protection.domain.ordering import Entry
from mevaas_execution.protection.ordering import FAIR, OrderingLog, signing_key
from mevaas_execution.protection.publishing import publish_protected, publish_receipt
from mevaas_execution.protection.submission import ProtectedSubmission, Simulation

log = logging.getLogger(__name__)
Row = asyncpg.Record
SANCTIONED = "sanctioned counterparty (RISK_REASON_CODE_SANCTIONED_COUNTERPARTY)"


@dataclass(frozen=True, slots=True)
class Accepted:
    row: Row
    # This call recorded it (False: the same transaction was sent before; nothing was redone).
    new: bool
    # The ingress simulation (None for a resend).
    simulation: Simulation | None = None
    # The fair-ordering receipt (FAIR_ORDERING transactions that were accepted).
    receipt: Entry | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    tenant_id: str
    chain_id: int
    decoded: DecodedTransaction
    raw: bytes
    mode: int
    # The transaction's last block, and the head it arrived at; None: the head is read with the
    # simulation (one round trip) and the window is ``blocks`` blocks after it.
    max_block: int | None
    head: int | None
    source: str
    blocks: int = 0
    # Fast mode: every attempt goes to every relay of the chain at once (private mode only).
    fast: bool = False


class ProtectionCommands:
    def __init__(
        self,
        pool: asyncpg.Pool,
        submission: ProtectedSubmission,
        sanctions: SanctionsList | None = None,
        ordering: OrderingLog | None = None,
        plans: PhaseGate | None = None,
    ) -> None:
        self.pool = pool
        # The tenants' plans (tenancy's, cached), that price each accepted transaction.
        self.plans = plans
        self.submission = submission
        self.sanctions = sanctions or SanctionsList()
        # Opens an order-flow auction for every accepted transaction (None: no auctions).
        self.auction: OrderFlowAuction | None = None
        self.ordering = ordering or OrderingLog(pool, signing_key(""))

    async def accept(self, request: Submission) -> Accepted:
        """Record and send a client's signed transaction once: a resend of the same transaction
        returns what the first one recorded. A transaction whose simulation reverts is recorded
        FAILED with the reason and never sent; one that cannot be valid now (a used nonce, not
        enough funds) is refused without a record.

        A resend is rare, so it is not looked up first (a transaction of its own, four round trips
        to PostgreSQL on every call): the unique (tenant, hash) of the insert finds it, and the two
        refusals a resend could meet instead (its nonce is used since it landed; its sender's
        funds moved) look it up before refusing."""
        tenant_id, decoded, head = request.tenant_id, request.decoded, request.head
        listed = self.sanctions.hits([decoded.sender, decoded.to])
        if listed:
            # Screened before anything is sent (or simulated); recorded so its status says why.
            refusal = f"{SANCTIONED}: " + "; ".join(hit.describe() for hit in listed)
            simulation = Simulation(refusal=refusal)
            if head is None:
                head = await self.submission.gateway.chain(request.chain_id).rpc.block_number()
        elif head is None:
            simulation, head = await self.submission.simulate_at_head(request.chain_id, decoded)
        else:
            (simulation,) = await self.submission.simulate(request.chain_id, [decoded])
        max_block = head + request.blocks if request.max_block is None else request.max_block
        if simulation.nonce_used or simulation.refusal.startswith("insufficient funds"):
            existing = await self.find(tenant_id, decoded.tx_hash)
            if existing is not None:
                return Accepted(existing, new=False, receipt=await self.receipt(existing))
        if simulation.nonce_used:
            raise InvalidArgument(FieldViolation("raw_transaction", simulation.refusal))
        if simulation.refusal.startswith("insufficient funds"):
            raise FailedPrecondition(simulation.refusal, subject=decoded.sender, violation_type="FUNDS")
        values = {
            "protected_transaction_id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "chain_id": request.chain_id,
            "tx_hash": decoded.tx_hash,
            "sender": decoded.sender,
            "nonce": decoded.nonce,
            "raw_tx": request.raw,
            "mode": request.mode,
            "status": "received" if simulation.ok else "failed",
            "error": simulation.refusal,
            "max_block_number": max_block,
            "source": request.source,
            "fast": request.fast,
        }
        fair = request.mode == FAIR
        if simulation.ok:
            values |= await self._terms(tenant_id, fair)
        receipt = None
        async with tenant_transaction(self.pool, tenant_id) as conn:
            if fair and simulation.ok:
                # A resend of a fair transaction must replay it, not be refused as out of turn.
                await self.ordering.lock(conn, request.chain_id)
                existing = await store.get_protected(conn, tenant_id, tx_hash=decoded.tx_hash)
                if existing is not None:
                    return Accepted(
                        existing,
                        new=False,
                        receipt=await self.ordering.receipt(conn, existing["chain_id"], existing["tx_hash"]),
                    )
                await self._check_turn(conn, request, simulation)
            row = await store.insert_protected(conn, values)
            if row is None:  # sent before (or twice at once): what the first call recorded
                row = await store.get_protected(conn, tenant_id, tx_hash=decoded.tx_hash)
                assert row is not None
                receipt = (
                    await self.ordering.receipt(conn, row["chain_id"], row["tx_hash"])
                    if row["mode"] == FAIR
                    else None
                )
                return Accepted(row, new=False, receipt=receipt)
            if fair and simulation.ok:
                # Sequenced in the transaction that records it: a receipt exists iff the record does.
                receipt = await self.ordering.append(conn, request.chain_id, decoded.tx_hash)
                await publish_receipt(conn, tenant_id, receipt)
            await publish_protected(conn, row, sanctioned=listed, receipt=receipt, to=decoded.to)
        if simulation.ok and not fair:
            # Fair transactions wait for the next head: they go together, in receipt order (and
            # are never shown to searchers, so they open no auction).
            row = await self.submission.send(row, head) or row
            if self.auction is not None:
                try:
                    await self.auction.open(
                        tenant_id,
                        request.chain_id,
                        decoded,
                        request.raw,
                        max_block,
                        refund_bps=row["refund_share_bps"],
                    )
                except Exception:  # the transaction is protected either way; only the auction is lost
                    log.warning("order-flow auction not opened for %s", decoded.tx_hash, exc_info=True)
        return Accepted(row, new=True, simulation=simulation, receipt=receipt)

    async def _terms(self, tenant_id: str, fair: bool) -> dict[str, Any]:
        """The columns an accepted transaction is held to, from the tenant's plan now (a later
        plan change alters neither): its fee (none when the plan is unknown here) and, when it
        goes to an order-flow auction, the share of a backrun's profit it is refunded."""
        plan, tier = None, 0
        if self.plans is not None:
            standing = await self.plans.standing(tenant_id)
            if standing.plan is None:  # cached from before tenancy answered plans
                standing = await self.plans.standing(tenant_id, fresh=True)
            plan, tier = standing.plan, standing.tier
        values: dict[str, Any] = {}
        if plan is not None:
            fee = protection_fee(plan, tier, fair=fair)
            values |= {
                "protection_fee": fee.protection,
                "fair_ordering_fee": fee.fair_ordering,
                "fee_currency": fee.currency,
                "fee_plan": plan.name,
            }
        if self.auction is not None and not fair:
            values["refund_share_bps"] = refund_share(plan, self.auction.refund_bps)
        return values

    async def _check_turn(
        self, conn: asyncpg.Connection, request: Submission, simulation: Simulation
    ) -> None:
        """Fair ordering takes a sender's transactions in nonce order: a receipt ahead of the
        sender's previous nonce could only be honoured by a swap (or a bundle the chain refuses).
        Checked under the chain's log lock (the caller holds it), so a concurrent submission cannot
        slip in between."""
        decoded = request.decoded
        highest = await store.pending_nonce(conn, request.tenant_id, request.chain_id, decoded.sender)
        expected = simulation.chain_nonce if highest is None else max(simulation.chain_nonce, highest + 1)
        if decoded.nonce != expected:
            raise InvalidArgument(
                FieldViolation(
                    "raw_transaction",
                    f"nonce {decoded.nonce} is out of turn: fair ordering takes {decoded.sender}'s "
                    f"transactions in nonce order, the next is {expected}",
                )
            )

    async def receipt(self, row: Row) -> Entry | None:
        if row["mode"] != FAIR:
            return None
        async with tenant_transaction(self.pool, row["tenant_id"], readonly=True) as conn:
            return await self.ordering.receipt(conn, row["chain_id"], row["tx_hash"])

    async def get(self, tenant_id: str, protected_id: str = "", tx_hash: str = "") -> Row:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_protected(conn, tenant_id, protected_id=protected_id, tx_hash=tx_hash)
        if row is None:
            raise NotFound("protected transaction", protected_id or tx_hash)
        return row

    async def find(self, tenant_id: str, tx_hash: str) -> Row | None:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await store.get_protected(conn, tenant_id, tx_hash=tx_hash)

    async def next_nonce(self, tenant_id: str, chain_id: int, sender: str, chain_nonce: int) -> int:
        """The nonce a wallet should sign next: past the chain's and past every transaction of the
        sender still in flight here (the chain's pending pool never sees those)."""
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            highest = await store.pending_nonce(conn, tenant_id, chain_id, sender)
        return chain_nonce if highest is None else max(chain_nonce, highest + 1)
