"""Rebalances executed: from the command to COMPLETED or FAILED.

``on_command`` (the durable consumer of ``exec.*.rebalance``) records the rebalance once per
rebalance id (a redelivered command inserts nothing) and wakes the runner. The runner drives
every active rebalance one step at a time, each step one transaction that checks the step
against the state table (domain/states.py), bumps the rebalance's sequence (compare-and-set, so
two replicas never take one step twice) and writes its status event through the outbox:

* submitted -> planning;
* planning: read the wallet's balances, the pools and the prices at the chains' heads (market.py)
  and plan the trades (domain/planner.py); -> executing with trade 0 published to risk, or
  completed (nothing to trade), or failed with the planner's reason (e.g. an unpriced target);
* executing: when the current trade's execution is final: included -> the next trade is
  published (or completed after the last); rejected by risk, failed, reverted, dropped or stale
  -> failed with the reason. A trade that no decision reached by its deadline block fails too.

Each trade is an Opportunity checked by risk under the tenant's limits and executed by the one
pipeline (owned by the rebalance: rebalancing/ownership.py); trades run one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_chain.client import RpcError, TransientRpcError
from mevaas_core.bus import Delivery
from mevaas_core.db import platform_transaction, tenant_transaction
from mevaas_core.errors import FailedPrecondition, NotFound
from mevaas_core.onboarding import Capability
from mevaas_core.tenant_phase import PhaseGate
from mevaas_execution import store as execution_store
from mevaas_execution.chains import ChainGateway, ChainUnavailable
from mevaas_execution.domain import statuses
from mevaas_execution.rebalancing import events, store
from mevaas_execution.rebalancing.domain import states
from mevaas_execution.rebalancing.domain.planner import PlanningError, Target, plan_trades
from mevaas_execution.rebalancing.domain.trades import (
    trade_action,
    trade_opportunity,
    trade_opportunity_id,
    trade_summary,
)
from mevaas_execution.rebalancing.market import MarketReader

log = logging.getLogger("mevaas.execution.rebalancing")
Row = asyncpg.Record
READ_ERRORS = (RpcError, TransientRpcError, ChainUnavailable, OSError, TimeoutError)


def targets_of(command: events_pb2.RebalanceCommand) -> list[Target]:
    """The command's targets; PlanningError naming the first malformed one."""
    out: list[Target] = []
    for i, target in enumerate(command.targets):
        chain_id, token = target.token.chain_id, target.token.address.lower()
        kind = target.WhichOneof("target")
        try:
            if kind == "target_amount":
                amount = int(target.target_amount)
                if amount < 0:
                    raise ValueError
                out.append(Target(chain_id, token, amount=amount))
            elif kind == "target_weight_percent":
                weight = Decimal(target.target_weight_percent.value)
                if not Decimal(0) <= weight <= Decimal(100):
                    raise ValueError
                out.append(Target(chain_id, token, weight_percent=weight))
            else:
                raise ValueError
        except (ValueError, InvalidOperation):
            raise PlanningError(f"targets[{i}] ({chain_id}:{token}) is malformed") from None
    if not out:
        raise PlanningError("the command has no targets")
    return out


class Rebalances:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: ChainGateway,
        market: MarketReader,
        phases: PhaseGate,
        *,
        poll_seconds: float = 0.25,
        deadline_blocks: int = 50,
    ) -> None:
        self.pool = pool
        self.gateway = gateway
        self.market = market
        self.phases = phases
        self.poll_seconds = poll_seconds
        self.deadline_blocks = deadline_blocks
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rebalances")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # the command ----------------------------------------------------------------------------------

    async def on_command(self, command: events_pb2.RebalanceCommand, delivery: Delivery) -> None:
        # The subject's tenant is the one the command may act on.
        tenant_id = delivery.subject.split(".")[1]
        if not command.rebalance_id or (command.tenant_id and command.tenant_id != tenant_id):
            log.warning("rebalance command without id or for another tenant ignored: %s", delivery.subject)
            return
        command.tenant_id = tenant_id
        # Trades signed with the tenant's keys wait for the onboarding phase that allows them; when
        # tenancy cannot say, the command is redelivered later (nothing is recorded yet).
        try:
            await self.phases.require(tenant_id, Capability.REBALANCE)
            refused = ""
        except FailedPrecondition as exc:
            refused = exc.message
        except NotFound:
            # Tenancy knows no such tenant (deleted, or a forged subject): there is nowhere to
            # record it, and redelivering it would hold the consumer's queue forever.
            log.warning("rebalance command %s of unknown tenant %s dropped", command.rebalance_id, tenant_id)
            return
        async with tenant_transaction(self.pool, tenant_id) as conn:
            wallet = (
                await execution_store.get_wallet(conn, tenant_id, command.wallet_address)
                if command.wallet_address
                else await execution_store.get_default_wallet(conn, tenant_id)
            )
            address = wallet["address"] if wallet else command.wallet_address
            row = await store.insert_rebalance(
                conn, tenant_id, command.rebalance_id, address, command.SerializeToString(deterministic=True)
            )
            if row is None:
                return  # a redelivery: the rebalance is recorded and runs (or ran) already
            await events.publish_status(conn, row)
            if refused:
                await self._step(conn, row, states.FAILED, {"reason": refused})
            elif wallet is None:
                reason = f"wallet {command.wallet_address or '(default)'} is not a wallet of the tenant"
                await self._step(conn, row, states.FAILED, {"reason": reason})
        self._wake.set()

    # the runner -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.advance_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rebalance pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def advance_all(self) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            active = await store.active_rebalances(conn)
        for item in active:
            try:
                await self.advance(item["tenant_id"], item["rebalance_id"])
            except READ_ERRORS as exc:
                log.warning("rebalance %s waits for its chain: %s", item["rebalance_id"], exc)
            except Exception:
                # One rebalance's bug must not hold the others up; it is tried again next pass.
                log.exception("rebalance %s could not take its step", item["rebalance_id"])

    async def advance(self, tenant_id: str, rebalance_id: str) -> None:
        """One step of the rebalance, when one is due."""
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_rebalance(conn, tenant_id, rebalance_id)
        if row is None:
            return
        if row["state"] == states.SUBMITTED:
            await self._transition(row, states.PLANNING, {})
        elif row["state"] == states.PLANNING:
            await self._plan(row)
        elif row["state"] == states.EXECUTING:
            await self._follow(row)

    async def _plan(self, row: Row) -> None:
        tenant_id, rebalance_id = row["tenant_id"], row["rebalance_id"]
        command = events_pb2.RebalanceCommand.FromString(bytes(row["command"]))
        try:
            targets = targets_of(command)
            market = await self.market.read(tenant_id, row["wallet_address"], targets)
            planned = plan_trades(targets, market.assets, market.pools, command.max_slippage_bps)
        except PlanningError as exc:
            await self._transition(row, states.FAILED, {"reason": str(exc)[:2000]})
            return
        if not planned:
            await self._transition(row, states.COMPLETED, {"reason": "nothing to trade: every target is met"})
            return
        actions = [trade_action(rebalance_id, i, trade) for i, trade in enumerate(planned)]
        changes = {
            "trades": [a.SerializeToString(deterministic=True) for a in actions],
            "trade_summaries": [trade_summary(t).SerializeToString(deterministic=True) for t in planned],
            "current_trade": 0,
        }
        await self._next_trade(row, actions[0], changes, market.blocks[planned[0].chain_id])

    async def _next_trade(
        self,
        row: Row,
        action: events_pb2.RebalanceTradeAction,
        changes: dict[str, Any],
        head: Mapping[str, Any] | None = None,
    ) -> None:
        """Move to ``action`` (executing) and publish it to risk, in one transaction."""
        chain = self.gateway.chain(action.hops[0].chain_id)
        block = head or await chain.rpc.request("eth_getBlockByNumber", ["latest", False])
        number = int(block["number"], 16)
        opportunity = trade_opportunity(
            row["tenant_id"],
            action,
            gas_token=chain.config.wrapped_native or "",
            head=number,
            gas_price=2 * int(block.get("baseFeePerGas") or "0x0", 16),
            deadline_blocks=self.deadline_blocks,
            now=datetime.now(UTC),
        )
        changes = {**changes, "trade_deadline": opportunity.deadline_block}
        async with tenant_transaction(self.pool, row["tenant_id"]) as conn:
            updated = await self._step(conn, row, states.EXECUTING, changes)
            if updated is not None:
                await events.publish_trade(conn, opportunity)

    async def _follow(self, row: Row) -> None:
        """The current trade's execution decides the next step once it is final."""
        tenant_id, rebalance_id, index = row["tenant_id"], row["rebalance_id"], row["current_trade"]
        actions = [events_pb2.RebalanceTradeAction.FromString(bytes(t)) for t in row["trades"]]
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            execution = await store.trade_execution(
                conn, tenant_id, trade_opportunity_id(rebalance_id, index)
            )
        if execution is None:
            chain_id = actions[index].hops[0].chain_id
            head = await self.gateway.chain(chain_id).rpc.block_number()
            if head > row["trade_deadline"]:
                reason = (
                    f"trade {index} was not decided by risk before its deadline block {row['trade_deadline']}"
                )
                await self._transition(row, states.FAILED, {"reason": reason})
            return
        status = execution["status"]
        if not statuses.is_final(status):
            return
        if status == statuses.REJECTED:
            reason = f"trade {index} rejected by risk: {execution['error']}"
            await self._transition(row, states.FAILED, {"reason": reason[:2000]})
            return
        done = [*row["execution_ids"], execution["execution_id"]]
        if status != statuses.INCLUDED:
            reason = f"trade {index} {status}: {execution['error']}"
            await self._transition(row, states.FAILED, {"reason": reason[:2000], "execution_ids": done})
        elif index + 1 == len(actions):
            await self._transition(row, states.COMPLETED, {"execution_ids": done})
        else:
            await self._next_trade(
                row, actions[index + 1], {"execution_ids": done, "current_trade": index + 1}
            )

    async def _transition(self, row: Row, state: str, changes: Mapping[str, Any]) -> None:
        async with tenant_transaction(self.pool, row["tenant_id"]) as conn:
            await self._step(conn, row, state, changes)

    @staticmethod
    async def _step(conn: asyncpg.Connection, row: Row, state: str, changes: Mapping[str, Any]) -> Row | None:
        """``row`` -> ``state`` with ``changes`` if nobody changed the rebalance since ``row`` was
        read, and its status event; None when somebody did (that step is theirs)."""
        states.check(row["state"], state)
        updated = await store.update_rebalance(
            conn, row["tenant_id"], row["rebalance_id"], row["sequence"], {**changes, "state": state}
        )
        if updated is not None:
            await events.publish_status(conn, updated)
        return updated

    # reads ----------------------------------------------------------------------------------------

    async def get(self, tenant_id: str, rebalance_id: str) -> Row:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            row = await store.get_rebalance(conn, tenant_id, rebalance_id)
        if row is None:
            raise NotFound("rebalance", rebalance_id)
        return row

    async def list_rebalances(
        self, tenant_id: str, *, state: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Row]:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            return await store.list_rebalances(conn, tenant_id, state=state, before=before, limit=limit)
