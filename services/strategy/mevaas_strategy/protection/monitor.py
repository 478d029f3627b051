"""The engine's leverage-protection monitor: after every block of a chain, every active
protection of the tenants this replica evaluates is checked with the chain's lending index
(Aave's integer math) at the time its deleverage could land (the deadline block's). Below the
trigger it publishes a deleverage opportunity on ``opp.<tenant>.<protection_id>`` (through risk
and execution like any action) and a TRIGGERED alert; a position nothing can restore gets one
UNPROTECTABLE alert per reason. While a deleverage is in flight the protection is not triggered
again; execution's result settles it: DELEVERAGED (with the health factor the lending index
shows once it has applied the block, which is the pool's getUserAccountData) or
DELEVERAGE_FAILED. A deleverage with no result by a few blocks after its deadline (refused by
risk, which publishes no execution) is DELEVERAGE_FAILED too, and the next block may trigger
again.

Every active protection's collateral is also published, at its first block and then once per
``VALUATION_INTERVAL_S`` of block time, as a ``ProtectedPositionSnapshot`` on
``protect.<tenant>.position`` (what analytics bills the yearly leverage-protection fee on).

Protections come from ``strategy.protections``, reloaded on NOTIFY and every few seconds.
A deleverage in flight is a row of ``strategy.protection_deleverages`` (one per protection, keyed
by it), claimed in the transaction that precedes publishing its opportunity and deleted in the one
that settles it; execution's result is kept on the row by whichever replica receives it. A
restarted monitor, or the replica taking the tenant over, loads those rows at start and resumes
waiting: it does not publish a second deleverage for a position whose first is still executing.
Two instances triggering the same protection at once publish only the deleverage whose claim
landed first. When the claim cannot be written the block's deleverage is not published (it is
tried again at the next block).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.bus import Bus, Delivery
from mevaas_core.db import platform_transaction
from mevaas_strategies.market import ChainMarket
from mevaas_strategies.opportunity import timestamp
from mevaas_strategies.protection import ProtectionRule, Trigger, evaluate, health_factor
from mevaas_strategy.protection import store
from mevaas_strategy.protection.alerts import alert, alert_subject, position_subject
from mevaas_strategy.reloading import reload_when_notified

log = logging.getLogger("mevaas.strategy.protection")
K = events_pb2
# The deleverage may land in the next block or the one after.
DEADLINE_BLOCKS = 2
# Blocks after the deadline to wait for execution's result before calling it failed.
RESULT_GRACE_BLOCKS = 5
RESULT_DURABLE = "strategy-protection-results"
# Block time between two snapshots of a protected position (each stands for at most this long).
VALUATION_INTERVAL_S = 3600
FINAL = {
    common_pb2.EXECUTION_RESULT_STATUS_INCLUDED,
    common_pb2.EXECUTION_RESULT_STATUS_REVERTED,
    common_pb2.EXECUTION_RESULT_STATUS_DROPPED,
    common_pb2.EXECUTION_RESULT_STATUS_STALE,
    common_pb2.EXECUTION_RESULT_STATUS_FAILED,
}


def rule_of(row: asyncpg.Record) -> ProtectionRule:
    return ProtectionRule(
        protection_id=row["protection_id"],
        tenant_id=row["tenant_id"],
        chain_id=row["chain_id"],
        account=row["account"],
        trigger_health_factor=int(row["trigger_health_factor"]),
        target_health_factor=int(row["target_health_factor"]),
        emergency_health_factor=int(row["emergency_health_factor"]),
        emergency_enabled=row["emergency_enabled"],
        collateral_asset=row["collateral_asset"],
        debt_asset=row["debt_asset"],
    )


@dataclass(slots=True)
class _Pending:
    opportunity_id: str
    deadline: int
    result: events_pb2.ExecutionResult | None = None


def pending_of(row: asyncpg.Record) -> _Pending:
    result = None
    if row["result"] is not None:
        result = events_pb2.ExecutionResult.FromString(row["result"])
    return _Pending(row["opportunity_id"], row["deadline_block"], result)


@dataclass(frozen=True, slots=True)
class Triggered:
    """A deleverage this block raises: published once its claim is written."""

    opportunity: events_pb2.Opportunity
    alert: events_pb2.ProtectionAlert


@dataclass(frozen=True, slots=True)
class Settled:
    """A deleverage this block settles: its row is deleted, then its alert published."""

    protection_id: str
    pending: _Pending
    alert: events_pb2.ProtectionAlert


@dataclass(slots=True)
class Checked:
    """What one block raises: alerts needing no state (UNPROTECTABLE), new and settled deleverages."""

    alerts: list[events_pb2.ProtectionAlert]
    triggered: list[Triggered]
    settled: list[Settled]


def snapshot(
    rule: ProtectionRule, market: ChainMarket, valid_seconds: int
) -> events_pb2.ProtectedPositionSnapshot | None:
    """The rule's collateral at the market's block (None without a position there)."""
    lending = market.lending
    position = lending.positions.get(rule.account) if lending is not None else None
    if lending is None or position is None:
        return None
    at = lending.block_timestamp
    hf = health_factor(rule, market, at)
    message = events_pb2.ProtectedPositionSnapshot(
        event_id=f"protection-position:{rule.protection_id}:{market.block_number}",
        tenant_id=rule.tenant_id,
        occurred_at=timestamp(datetime.fromtimestamp(at, UTC)),
        protection_id=rule.protection_id,
        chain_id=market.chain_id,
        account=rule.account,
        block_number=market.block_number,
        valid_seconds=valid_seconds,
        health_factor="" if hf is None else str(hf),
    )
    for reserve in sorted(lending.reserves.values(), key=lambda r: r.id):
        if not position.is_collateral(reserve.id):
            continue
        amount = position.collateral_balance(reserve, at)
        if amount:
            token = common_pb2.Token(
                chain_id=market.chain_id,
                address=reserve.asset,
                symbol=market.symbols.get(reserve.asset, ""),
                decimals=reserve.params.decimals,
            )
            message.collateral.add(token=token, amount=str(amount))
    return message


def opportunity(trigger: Trigger, market: ChainMarket, seen_at: datetime) -> events_pb2.Opportunity:
    action = trigger.action
    assert action is not None
    rule = trigger.rule
    key = f"{rule.tenant_id}|{rule.protection_id}|{market.chain_id}|{market.block_hash}|{action.key()}"
    opp_id = str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16]))
    rate = market.native_to_token(action.debt_asset)
    gas_cost = math.ceil(trigger.gas_estimate * market.gas_price * rate) if rate is not None else 0
    deadline = market.block_number + DEADLINE_BLOCKS
    detected = timestamp(datetime.now(UTC))
    opp = events_pb2.Opportunity(
        event_id=opp_id,
        tenant_id=rule.tenant_id,
        occurred_at=detected,
        opportunity_id=opp_id,
        strategy_id=rule.protection_id,
        chain_id=market.chain_id,
        chain_ids=[market.chain_id],
        # A deleverage earns nothing: it costs its gas (and the swap's fee, in collateral).
        expected_profit="0",
        profit_token=common_pb2.Token(
            chain_id=market.chain_id,
            address=action.debt_asset,
            symbol=market.symbols.get(action.debt_asset, ""),
            decimals=market.decimals.get(action.debt_asset, 0),
        ),
        gas_estimate=trigger.gas_estimate,
        gas_price=str(market.gas_price),
        expected_profit_net_of_gas=str(-gas_cost),
        detected_block=market.block_number,
        deadline_block=deadline,
        detected_at=detected,
        block_seen_at=timestamp(seen_at),
        submission_mode=common_pb2.SUBMISSION_MODE_PUBLIC_MEMPOOL,
    )
    action.write(opp, {market.chain_id: deadline})
    return opp


class ProtectionMonitor:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        owns: Callable[[str], bool],
        reload_interval_s: float = 5.0,
        results_durable: str = RESULT_DURABLE,
    ) -> None:
        self.bus = bus
        # Shared by every replica: a result reaches one of them (see reload).
        self.results_durable = results_durable
        self.pool = pool
        self.owns = owns
        self.reload_interval_s = reload_interval_s
        self.rules: dict[int, list[ProtectionRule]] = {}
        self.pending: dict[str, _Pending] = {}
        # The last UNPROTECTABLE reason alerted per protection (alerted again only when it changes).
        self.unprotectable: dict[str, str] = {}
        # Block time of each protection's last snapshot.
        self.valued_at: dict[str, int] = {}
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: Any = None
        self._results: Any = None

    async def start(self) -> None:
        # In-flight deleverages before the rules: no block is checked without them.
        await self.resume()
        await self.reload()
        self._listener = await self.pool.acquire()
        await self._listener.add_listener(store.PROTECTIONS_CHANNEL, self._on_notify)
        self._tasks.append(
            asyncio.create_task(
                reload_when_notified(self._reload, self.reload_interval_s, self.reload, log, "protections"),
                name="protection-reload",
            )
        )
        self._results = await self.bus.subscribe(
            "EXEC", self.results_durable, "exec.*.result", events_pb2.ExecutionResult, self.on_result
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._results is not None:
            await self._results.stop()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(store.PROTECTIONS_CHANNEL, self._on_notify)
            await self.pool.release(self._listener)

    def _on_notify(self, *_: object) -> None:
        self._reload.set()

    async def resume(self) -> None:
        """The deleverages in flight for this replica's tenants (another instance published them)."""
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.in_flight(conn)
        for row in rows:
            if self.owns(row["tenant_id"]):
                self.pending.setdefault(row["protection_id"], pending_of(row))

    async def reload(self) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.watched(conn)
            in_flight = await store.in_flight(conn)
        rules: dict[int, list[ProtectionRule]] = {}
        for row in rows:
            if self.owns(row["tenant_id"]):
                rules.setdefault(row["chain_id"], []).append(rule_of(row))
        self.rules = rules
        # Results another replica received (the results consumer is shared).
        for row in in_flight:
            pending = self.pending.get(row["protection_id"])
            if (
                pending is not None
                and pending.result is None
                and row["result"] is not None
                and pending.opportunity_id == row["opportunity_id"]
            ):
                pending.result = pending_of(row).result

    def reads_lending(self, chain_id: int) -> bool:
        return bool(self.rules.get(chain_id))

    async def on_result(self, result: events_pb2.ExecutionResult, delivery: Delivery) -> None:
        if result.status not in FINAL:
            return
        # Kept on the deleverage's row first: a restart before it is settled still knows it.
        async with platform_transaction(self.pool) as conn:
            await store.record_result(conn, result.opportunity_id, result.SerializeToString())
        pending = self.pending.get(result.strategy_id)
        if pending is not None and pending.opportunity_id == result.opportunity_id:
            pending.result = result

    async def on_block(self, market: ChainMarket, seen_at: datetime) -> None:
        checked = self.check(market, seen_at)
        alerts = list(checked.alerts)
        opportunities: list[events_pb2.Opportunity] = []
        try:
            claimed = await self.persist(checked)
        except Exception:
            log.exception(
                "chain %s block %s: recording deleverages failed; retried next block",
                market.chain_id,
                market.block_number,
            )
            self.undo(checked)
        else:
            alerts.extend(s.alert for s in checked.settled)
            for t in claimed:
                opportunities.append(t.opportunity)
                alerts.append(t.alert)
        snapshots = self.snapshots(market)
        outcomes = await asyncio.gather(
            *(
                self.bus.publish(
                    f"opp.{o.tenant_id}.{o.strategy_id}", o, msg_id=o.opportunity_id, tenant_id=o.tenant_id
                )
                for o in opportunities
            ),
            *(
                self.bus.publish(alert_subject(a.tenant_id), a, msg_id=a.alert_id, tenant_id=a.tenant_id)
                for a in alerts
            ),
            *(
                self.bus.publish(position_subject(v.tenant_id), v, msg_id=v.event_id, tenant_id=v.tenant_id)
                for v in snapshots
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.error(
                    "chain %s block %s: protection publish failed: %r",
                    market.chain_id,
                    market.block_number,
                    outcome,
                )

    async def persist(self, checked: Checked) -> list[Triggered]:
        """Deletes the settled deleverages' rows and claims the new ones, in one transaction; the
        new ones to publish (a protection another instance claimed first keeps that deleverage)."""
        if not checked.settled and not checked.triggered:
            return []
        claimed: list[Triggered] = []
        adopted: dict[str, _Pending] = {}
        async with platform_transaction(self.pool) as conn:
            for s in checked.settled:
                await store.settle_deleverage(conn, s.protection_id, s.pending.opportunity_id)
            for t in checked.triggered:
                opp = t.opportunity
                row = await store.claim_deleverage(
                    conn,
                    protection_id=opp.strategy_id,
                    tenant_id=opp.tenant_id,
                    chain_id=opp.chain_id,
                    opportunity_id=opp.opportunity_id,
                    deadline_block=opp.deadline_block,
                )
                if row["opportunity_id"] == opp.opportunity_id:
                    claimed.append(t)
                else:
                    adopted[opp.strategy_id] = pending_of(row)
        self.pending.update(adopted)
        return claimed

    def undo(self, checked: Checked) -> None:
        """Back to the state before the block: nothing of it was recorded or published."""
        for t in checked.triggered:
            pending = self.pending.get(t.opportunity.strategy_id)
            if pending is not None and pending.opportunity_id == t.opportunity.opportunity_id:
                del self.pending[t.opportunity.strategy_id]
        for s in checked.settled:
            self.pending.setdefault(s.protection_id, s.pending)

    def snapshots(self, market: ChainMarket) -> list[events_pb2.ProtectedPositionSnapshot]:
        """The snapshots due at this block: a protection's first, then one per interval."""
        if market.lending is None:
            return []
        now = market.lending.block_timestamp
        due: list[events_pb2.ProtectedPositionSnapshot] = []
        for rule in self.rules.get(market.chain_id, ()):
            last = self.valued_at.get(rule.protection_id)
            if last is not None and now - last < VALUATION_INTERVAL_S:
                continue
            found = snapshot(rule, market, VALUATION_INTERVAL_S)
            if found is not None:
                self.valued_at[rule.protection_id] = now
                due.append(found)
        return due

    def check(self, market: ChainMarket, seen_at: datetime) -> Checked:
        """What this block raises (pure but for the monitor's own in-flight state)."""
        checked = Checked([], [], [])
        alerts = checked.alerts
        lending = market.lending
        if lending is None:
            return checked
        at = lending.block_timestamp + max(1, int(market.block_time_s)) * DEADLINE_BLOCKS
        for rule in self.rules.get(market.chain_id, ()):
            pending = self.pending.get(rule.protection_id)
            if pending is not None:
                settled = self._settle(rule, pending, market)
                if settled is None:
                    continue
                checked.settled.append(Settled(rule.protection_id, pending, settled))
                del self.pending[rule.protection_id]
            trigger = evaluate(rule, market, at)
            if trigger is None:
                self.unprotectable.pop(rule.protection_id, None)
                continue
            if trigger.action is None:
                reason = trigger.unprotectable.value if trigger.unprotectable else "unknown"
                if self.unprotectable.get(rule.protection_id) != reason:
                    self.unprotectable[rule.protection_id] = reason
                    alerts.append(
                        alert(
                            K.PROTECTION_ALERT_KIND_UNPROTECTABLE,
                            rule,
                            health_factor=trigger.health_factor,
                            block_number=market.block_number,
                            emergency=trigger.emergency,
                            reason=reason,
                        )
                    )
                continue
            self.unprotectable.pop(rule.protection_id, None)
            opp = opportunity(trigger, market, seen_at)
            self.pending[rule.protection_id] = _Pending(opp.opportunity_id, opp.deadline_block)
            triggered = alert(
                K.PROTECTION_ALERT_KIND_TRIGGERED,
                rule,
                health_factor=trigger.health_factor,
                block_number=market.block_number,
                emergency=trigger.emergency,
                deleverage=opp.deleverage,
                opportunity_id=opp.opportunity_id,
            )
            checked.triggered.append(Triggered(opp, triggered))
        return checked

    def _settle(
        self, rule: ProtectionRule, pending: _Pending, market: ChainMarket
    ) -> events_pb2.ProtectionAlert | None:
        result = pending.result
        if result is None:
            if market.block_number <= pending.deadline + RESULT_GRACE_BLOCKS:
                return None
            return alert(
                K.PROTECTION_ALERT_KIND_DELEVERAGE_FAILED,
                rule,
                health_factor=None,
                block_number=market.block_number,
                opportunity_id=pending.opportunity_id,
                reason=f"no deleverage landed by block {pending.deadline} (refused by risk, or not executed)",
            )
        tx_hash = result.tx_hashes[-1] if result.tx_hashes else ""
        if result.status != common_pb2.EXECUTION_RESULT_STATUS_INCLUDED:
            status = common_pb2.ExecutionResultStatus.Name(result.status).removeprefix(
                "EXECUTION_RESULT_STATUS_"
            )
            return alert(
                K.PROTECTION_ALERT_KIND_DELEVERAGE_FAILED,
                rule,
                health_factor=None,
                block_number=result.block_number or market.block_number,
                opportunity_id=pending.opportunity_id,
                execution_id=result.execution_id,
                tx_hash=tx_hash,
                reason=f"{status.lower()}: {result.error}" if result.error else status.lower(),
            )
        if market.block_number < result.block_number or market.lending is None:
            return None  # the index has not applied the deleverage's block yet
        return alert(
            K.PROTECTION_ALERT_KIND_DELEVERAGED,
            rule,
            health_factor=health_factor(rule, market, market.lending.block_timestamp),
            block_number=market.block_number,
            opportunity_id=pending.opportunity_id,
            execution_id=result.execution_id,
            tx_hash=tx_hash,
        )
