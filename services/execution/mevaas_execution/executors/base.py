"""The executor interface: what one action kind contributes to the pipeline.

The pipeline (``mevaas_execution.pipeline``) runs every action the same way: plan -> simulate ->
checks -> sign -> record -> send -> track -> book. An executor supplies only what differs per
kind, as pure functions over typed values:

* ``plan(job, chains)`` - the chains it touches, the reads its simulation needs on each (batched
  with the head block in one round trip per chain), and whether it calls the tenant's executor
  contract (then the pipeline checks that contract's code first);
* ``assess(job, plan, seen)`` - from the heads and the answers to those reads: the transactions
  to sign, grouped in legs (one leg per chain, sent together), or a ``Refusal``;
* ``record(job, plan, legs)`` - the columns to record with the execution, and the leg rows (empty
  when the execution row itself carries its single transaction);
* ``book(row, receipts)`` - the final facts of a transaction (or leg) from its receipts.

Executors that record legs also implement ``settle(legs)`` (``MultiLegExecutor``): the
execution's final facts once every leg is final.

The executors that swap on a DEX's Router02 from the wallet's own inventory (``cross_chain``,
``rebalance_trade``) share their steps here: the router, the allowance and balance reads, the
approval when the allowance is short, the leg row and the booking of the swap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_chain.client import RpcError
from mevaas_chain.registry import ChainConfig
from mevaas_chain.signer import SignedTransaction
from mevaas_execution.domain import cross_chain
from mevaas_execution.domain import statuses as st
from mevaas_execution.domain.planning import Limits, PlanError

RpcCall = tuple[str, list[Any]]
# A stored execution or leg (an asyncpg record, or a plain mapping of its columns).
RowLike = Mapping[str, Any] | asyncpg.Record


@dataclass(frozen=True, slots=True)
class Job:
    """One approved decision on its way through the pipeline."""

    tenant_id: str
    execution_id: str
    session_id: str
    opportunity_id: str
    wallet: str
    opportunity: events_pb2.Opportunity
    limits: Limits
    expected_gross_profit: int
    # Without the strategy's own settings every block up to the deadline is an attempt.
    retry_until_deadline: bool
    # The wallet's executor contract on the opportunity's chain, when it has one.
    executor_contract: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    chain_ids: tuple[int, ...]
    reads: Mapping[int, Sequence[RpcCall]]
    # The action calls the wallet's executor contract on the opportunity's chain.
    calls_executor: bool
    # The executor's own planned values, handed back to assess and record.
    detail: Any = None


@dataclass(frozen=True, slots=True)
class Seen:
    """What the simulation round trip saw on each chain."""

    heads: Mapping[int, Mapping[str, Any]]
    answers: Mapping[int, Sequence[Any]]

    def head(self, chain_id: int) -> int:
        return int(self.heads[chain_id]["number"], 16)


@dataclass(frozen=True, slots=True)
class TxIntent:
    """One unsigned transaction from the tenant's wallet."""

    to: str
    data: bytes
    gas: int


@dataclass(frozen=True, slots=True)
class LegIntent:
    """The transactions to send on one chain, in nonce order (e.g. an approval then a swap)."""

    index: int
    chain_id: int
    transactions: tuple[TxIntent, ...]
    detail: Any = None
    # Transactions signed by someone else that go first in the same bundle (a backrun's target).
    before: tuple[bytes, ...] = ()


@dataclass(slots=True)
class SignedLeg:
    intent: LegIntent
    signed: list[SignedTransaction]
    nonces: list[int]
    target_block: int
    last_block: int
    max_fee: int
    priority_fee: int

    @property
    def raws(self) -> list[bytes]:
        return [*self.intent.before, *(tx.raw for tx in self.signed)]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the pipeline writes before anything is sent."""

    execution: Mapping[str, Any]
    legs: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


class Refusal(Exception):
    """The action must not be sent: recorded with ``status`` and ``error``; ``session_error``
    also marks it as the session's last error (something the tenant must fix)."""

    def __init__(self, status: str, error: str, *, session_error: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.session_error = session_error


def executor_call_recorded(job: Job, legs: Sequence[SignedLeg], rate: tuple[int, int]) -> Recorded:
    """The record of an action that is one transaction to the wallet's executor contract: the
    execution row carries it (no leg rows)."""
    (leg,) = legs
    (signed,) = leg.signed
    return Recorded(
        execution={
            "executor_address": job.executor_contract,
            "gas_rate_num": rate[0],
            "gas_rate_den": rate[1],
            "nonce": leg.nonces[0],
            "tx_hash": "0x" + signed.hash.hex(),
            "raw_tx": signed.raw,
            "target_block": leg.target_block,
            "attempts": 1,
        }
    )


class ChainConfigs(Protocol):
    def config(self, chain_id: int) -> ChainConfig: ...


class ActionExecutor(Protocol):
    # The ``Opportunity.action`` oneof field this executor runs.
    kind: ClassVar[str]

    def plan(self, job: Job, chains: ChainConfigs) -> Plan: ...

    def assess(self, job: Job, plan: Plan, seen: Seen, chains: ChainConfigs) -> list[LegIntent]: ...

    def record(self, job: Job, plan: Plan, legs: Sequence[SignedLeg]) -> Recorded: ...

    def book(self, row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]: ...


@runtime_checkable
class MultiLegExecutor(ActionExecutor, Protocol):
    def settle(self, legs: Sequence[RowLike]) -> dict[str, Any]: ...

    # What must be unwound once every leg is final (legs that landed alone), losing at most
    # max_loss_bps of what each spent; empty when nothing (more) is to be unwound.
    def unwinds(self, legs: Sequence[RowLike], max_loss_bps: int) -> list[Any]: ...


# Router02 swaps paid from the wallet's inventory ---------------------------------------------------


class InventorySwap(Protocol):
    """A planned Router02 swap of the wallet's own ``token_in`` on one chain."""

    @property
    def chain_id(self) -> int: ...
    @property
    def dex(self) -> str: ...
    @property
    def token_in(self) -> str: ...
    @property
    def token_out(self) -> str: ...
    @property
    def amount_in(self) -> int: ...
    @property
    def amount_out_min(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Inventory:
    """What the simulation saw of the wallet's ``token_in``: its allowance to the router, and
    its balance."""

    allowance: int
    held: int


def swap_router(swap: InventorySwap, chains: ChainConfigs) -> str:
    router = chains.config(swap.chain_id).dex(swap.dex).router
    if router is None:
        raise PlanError(f"DEX {swap.dex} on chain {swap.chain_id} has no router")
    return router


def inventory_reads(swap: InventorySwap, wallet: str, router: str) -> list[RpcCall]:
    """The reads ``inventory_seen`` answers from: the allowance, then the balance."""
    allowance = {"to": swap.token_in, "data": "0x" + cross_chain.allowance_call(wallet, router).hex()}
    return [
        ("eth_call", [allowance, "latest"]),
        ("eth_call", [cross_chain.balance_call(swap.token_in, wallet), "latest"]),
    ]


def inventory_seen(seen: Seen, chain_id: int, *, session_error: bool) -> Inventory:
    answers = seen.answers[chain_id]
    if any(isinstance(answer, RpcError) or not isinstance(answer, str) for answer in answers):
        raise Refusal(st.FAILED, f"RPC failed on chain {chain_id}: {answers!r}", session_error=session_error)
    return Inventory(allowance=int(answers[0] or "0x0", 16), held=int(answers[1] or "0x0", 16))


def router_deadline(seen: Seen, chain_id: int) -> int:
    return int(seen.heads[chain_id]["timestamp"], 16) + cross_chain.ROUTER_DEADLINE_S


def inventory_swap_transactions(
    swap: InventorySwap, router: str, allowance: int, calldata: bytes
) -> tuple[TxIntent, ...]:
    """The swap, preceded by an approval of the router when the allowance is short."""
    transaction = TxIntent(to=router, data=calldata, gas=cross_chain.SWAP_GAS)
    if allowance >= swap.amount_in:
        return (transaction,)
    approve = TxIntent(
        to=swap.token_in, data=cross_chain.approve_calldata(router), gas=cross_chain.APPROVE_GAS
    )
    return (approve, transaction)


def inventory_swap_leg(
    job: Job, leg: SignedLeg, index: int, swap: InventorySwap, router: str, rate: tuple[int, int]
) -> dict[str, Any]:
    """The ``execution_legs`` row of a signed swap (and its approval, when one goes first)."""
    approve = leg.signed[0] if len(leg.signed) == 2 else None
    transaction = leg.signed[-1]
    return {
        "tenant_id": job.tenant_id,
        "execution_id": job.execution_id,
        "opportunity_id": job.opportunity_id,
        "leg_index": index,
        "chain_id": swap.chain_id,
        "wallet_address": job.wallet,
        "status": st.SIGNED,
        "submission_mode": job.limits.submission_mode,
        "router_address": router,
        "token_in": swap.token_in,
        "token_out": swap.token_out,
        "amount_in": swap.amount_in,
        "amount_out_min": swap.amount_out_min,
        "approve_tx_hash": "0x" + approve.hash.hex() if approve else "",
        "approve_raw_tx": approve.raw if approve else None,
        "nonce": leg.nonces[-1],
        "tx_hash": "0x" + transaction.hash.hex(),
        "raw_tx": transaction.raw,
        "target_block": leg.target_block,
        "last_block": leg.last_block,
        "attempts": 1,
        "gas_rate_num": rate[0],
        "gas_rate_den": rate[1],
    }


def book_inventory_swap(row: RowLike, receipts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A swap leg's final facts: what reached the wallet, and the gas of the leg's transactions."""
    receipt = receipts[-1]
    success = int(receipt["status"], 16) == 1
    gas_used, gas_cost = cross_chain.gas_paid(receipts)
    return {
        "status": st.INCLUDED if success else st.REVERTED,
        "block_number": int(receipt["blockNumber"], 16),
        "amount_out": cross_chain.received(receipt, row["token_out"], row["wallet_address"])
        if success
        else 0,
        "gas_used": gas_used,
        "gas_cost": gas_cost,
        "error": "" if success else "swap reverted",
    }
