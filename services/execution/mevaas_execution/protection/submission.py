"""Protected submission: simulation before anything is sent, then a single-transaction bundle for
the next block, resent on every new head until a receipt or the transaction's last block.

Revert protection is two checks: the transaction is simulated (``eth_call`` on the latest state)
before it is recorded and again before every resend, and the relay drops a bundle whose
transaction reverts, so a reverting transaction is never included; its status says why.

A relay's refusal is never terminal: "block N is in the past" (the chain moved between reading
the head and the relay's receipt) re-targets the block after the new head at once; any other
refusal, an unreachable relay or a missed block is retried at the next head, while the
transaction's window lasts. The last reason stays on the row, so an expired transaction says
what kept it out. In fast mode each attempt goes to every relay of the chain concurrently
(`domain/relays.py`): submitted when any relay took it, each relay's answer on the row."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_chain.rawtx import DecodedTransaction, RawTransactionError, decode_signed
from mevaas_chain.registry import PRIMARY_RELAY
from mevaas_core.db import platform_transaction
from mevaas_execution.chains import ChainGateway
from mevaas_execution.domain.planning import settled
from mevaas_execution.protection import store
from mevaas_execution.protection.domain.relays import RelayOutcome, attempt_changes
from mevaas_execution.protection.domain.revert import decode_reason, is_revert, revert_data
from mevaas_execution.protection.domain.statuses import FINAL, sources
from mevaas_execution.protection.ordering import FAIR, FairBundler
from mevaas_execution.protection.publishing import publish_protected
from mevaas_execution.protection.writes import GroupedUpdates

log = logging.getLogger(__name__)

# Re-targets after "in the past" within one attempt (each re-reads the head first).
PAST_RETARGETS = 3


@dataclass(frozen=True, slots=True)
class Simulation:
    """What the chain says of a transaction now: ``refusal`` is empty when it would succeed."""

    refusal: str = ""
    # The revert payload, when it reverted (for a JSON-RPC error's data).
    revert: bytes = b""
    # The sender's next nonce on chain.
    chain_nonce: int = 0

    @property
    def ok(self) -> bool:
        return not self.refusal

    @property
    def nonce_used(self) -> bool:
        return self.refusal.startswith("nonce too low")


def _interpret(decoded: DecodedTransaction, call: Any, count: Any, balance: Any) -> Simulation:
    if isinstance(count, RpcError) or isinstance(balance, RpcError):
        failed = count if isinstance(count, RpcError) else balance
        return Simulation(refusal=f"simulation failed: {failed.message}")
    chain_nonce = int(count, 16)
    if decoded.nonce < chain_nonce:
        return Simulation(
            refusal=f"nonce too low: {decoded.sender}'s next nonce is {chain_nonce}", chain_nonce=chain_nonce
        )
    cost = decoded.gas * decoded.max_fee_per_gas + decoded.value
    if int(balance, 16) < cost:
        return Simulation(
            refusal=f"insufficient funds: {decoded.sender} holds {int(balance, 16)} wei, the transaction "
            f"may cost {cost} (gas * max fee + value)",
            chain_nonce=chain_nonce,
        )
    if isinstance(call, RpcError):
        if is_revert(call.code, call.message):
            data = revert_data(call.data)
            return Simulation(
                refusal=f"reverted in simulation: {decode_reason(data)}", revert=data, chain_nonce=chain_nonce
            )
        return Simulation(refusal=f"simulation failed: {call.message}", chain_nonce=chain_nonce)
    return Simulation(chain_nonce=chain_nonce)


def _simulation_requests(txs: Sequence[DecodedTransaction]) -> list[tuple[str, list[Any]]]:
    requests: list[tuple[str, list[Any]]] = []
    for tx in txs:
        requests += [
            ("eth_call", [tx.call_object(), "latest"]),
            ("eth_getTransactionCount", [tx.sender, "latest"]),
            ("eth_getBalance", [tx.sender, "latest"]),
        ]
    return requests


class ProtectedSubmission:
    def __init__(self, pool: asyncpg.Pool, gateway: ChainGateway) -> None:
        self.pool = pool
        self.gateway = gateway
        self.fair = FairBundler(pool, gateway)
        self.writes = GroupedUpdates(pool)

    async def simulate(self, chain_id: int, txs: Sequence[DecodedTransaction]) -> list[Simulation]:
        """One JSON-RPC batch for all of ``txs``: each one's call, its sender's nonce and balance."""
        if not txs:
            return []
        replies = await self.gateway.chain(chain_id).rpc.batch(_simulation_requests(txs))
        return [_interpret(tx, *replies[3 * i : 3 * i + 3]) for i, tx in enumerate(txs)]

    async def simulate_at_head(self, chain_id: int, tx: DecodedTransaction) -> tuple[Simulation, int]:
        """``simulate`` of one transaction with the head in the same batch (one round trip to the
        chain instead of two: the Protect RPC needs the head for the transaction's window)."""
        replies = await self.gateway.chain(chain_id).rpc.batch(
            [("eth_blockNumber", []), *_simulation_requests([tx])]
        )
        if isinstance(replies[0], RpcError):
            raise replies[0]
        return _interpret(tx, *replies[1:4]), int(replies[0], 16)

    async def send(self, row: asyncpg.Record, head: int) -> asyncpg.Record | None:
        """One attempt at the block after ``head`` (in fast mode at every relay of the chain at
        once); the row as it is afterwards (None if it is no longer in flight)."""
        chain_id = row["chain_id"]
        relays = self.gateway.chain(chain_id).relay_names if row["fast"] else [PRIMARY_RELAY]
        outcomes = await asyncio.gather(*(self._attempt(row, relay, head + 1) for relay in relays))
        changes: dict[str, Any] = {"attempts": row["attempts"] + 1} | attempt_changes(
            outcomes, fast=row["fast"]
        )
        if changes.get("status") == "submitted" and row["submitted_at"] is None:
            changes["submitted_at"] = datetime.now(UTC)
        return await self.writes.update(
            row["protected_transaction_id"], changes, from_statuses=sources(changes.get("status"))
        )

    async def _attempt(self, row: asyncpg.Record, relay: str, target: int) -> RelayOutcome:
        """The bundle of ``row`` at one relay for ``target``, re-targeted when the chain moved
        past it meanwhile ("in the past")."""
        chain_id, reason = row["chain_id"], ""
        for _ in range(PAST_RETARGETS + 1):
            if target > row["max_block_number"]:
                return RelayOutcome(
                    relay, 0, f"no block left in the window (last block {row['max_block_number']})"
                )
            try:
                await self.gateway.send_bundle(chain_id, [bytes(row["raw_tx"])], target, relay=relay)
            except RpcError as exc:
                reason = f"relay refused the bundle for block {target}: {exc.message}"
                if "in the past" not in exc.message:
                    break
                target = await self.gateway.chain(chain_id).rpc.block_number() + 1
                continue
            except (TransientRpcError, OSError, TimeoutError) as exc:
                reason = f"relay unreachable for block {target}: {exc}"
                break
            return RelayOutcome(relay, target)
        return RelayOutcome(relay, 0, reason)

    async def check(self, chain_id: int, head: int) -> None:
        """A tracker head watcher: book receipts, expire what is past its last block, and resend
        the rest (simulated again first: one that would revert now is held back this block)."""
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.pending_protected(conn, chain_id)
        if not rows:
            return
        receipts = await self.gateway.receipts(chain_id, [row["tx_hash"] for row in rows])
        depth = self.gateway.confirmations(chain_id)
        resend: list[tuple[asyncpg.Record, DecodedTransaction]] = []
        for row, receipt in zip(rows, receipts, strict=True):
            if receipt is not None and not settled(receipt, head, depth):
                continue  # mined in a block that may still vanish: the next head decides
            if receipt is not None:
                success = int(receipt["status"], 16) == 1
                await self._update(
                    row,
                    {
                        "status": "included" if success else "reverted",
                        "block_number": int(receipt["blockNumber"], 16),
                        "included_at": datetime.now(UTC),
                    },
                )
            elif head >= row["max_block_number"]:
                reason = f"not included by block {row['max_block_number']}"
                await self._update(
                    row,
                    {
                        "status": "expired",
                        "error": reason + (f"; last: {row['error']}" if row["error"] else ""),
                    },
                )
            else:
                try:
                    resend.append((row, decode_signed(bytes(row["raw_tx"]))))
                except RawTransactionError as exc:  # recorded only after decoding: cannot happen
                    await self._update(row, {"status": "expired", "error": f"undecodable: {exc}"})
        simulations = await self.simulate(chain_id, [decoded for _, decoded in resend])
        sends: list[Awaitable[object]] = []
        fair: dict[str, int] = {}
        for (row, _), simulation in zip(resend, simulations, strict=True):
            if simulation.nonce_used:
                await self._nonce_used(row, simulation, head)
            elif not simulation.ok and row["mode"] == FAIR:
                # Held back, it would land after transactions received behind it (ordering.py).
                reason = f"lost its fair-ordering turn at block {head + 1}: {simulation.refusal}"
                await self._update(row, {"status": "expired", "error": reason})
            elif not simulation.ok:
                await self._update(row, {"error": f"held back at block {head + 1}: {simulation.refusal}"})
            elif row["mode"] == FAIR:
                fair[row["protected_transaction_id"]] = simulation.chain_nonce
            else:
                sends.append(self.send(row, head))
        if fair:
            sends.append(self.fair.send(chain_id, fair, head))
        for outcome in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.warning("protected resend failed: %r", outcome)

    async def _update(self, row: asyncpg.Record, changes: dict[str, Any]) -> None:
        async with platform_transaction(self.pool) as conn:
            updated = await store.update_protected(
                conn, row["protected_transaction_id"], changes, from_statuses=sources(changes.get("status"))
            )
            if updated is not None and changes.get("status") in FINAL:
                await publish_protected(conn, updated)

    async def _nonce_used(self, row: asyncpg.Record, simulation: Simulation, head: int) -> None:
        """The sender's nonce moved past this transaction's: it landed between the receipt lookup
        and the simulation, or another transaction took its nonce."""
        (receipt,) = await self.gateway.receipts(row["chain_id"], [row["tx_hash"]])
        if receipt is not None and not settled(receipt, head, self.gateway.confirmations(row["chain_id"])):
            return  # it landed in a block that may still vanish: the next head decides
        if receipt is not None:
            await self._update(
                row,
                {
                    "status": "included" if int(receipt["status"], 16) == 1 else "reverted",
                    "block_number": int(receipt["blockNumber"], 16),
                    "included_at": datetime.now(UTC),
                },
            )
        else:
            await self._update(
                row,
                {"status": "expired", "error": f"{simulation.refusal}: another transaction took the nonce"},
            )
