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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_chain.registry import ChainConfig
from mevaas_chain.signer import SignedTransaction
from mevaas_execution.domain.planning import Limits

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
