"""The live view of `mevaas up`: per-tenant hot-path activity followed on the bus (opportunities,
risk decisions, execution results, blocks) and the supervisor's status."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import nats
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_core.bus import HEADER_MSG_ID
from mevaas_core.bus.identities import (
    inbox_prefix,
)
from mevaas_local.supervisor import Supervisor

console = Console()
LIVE_SUBJECTS = ("opp.>", "risk.*.decision", "exec.*.result", "chain.*.block")


@dataclass
class TenantActivity:
    """What one tenant's hot path did since the view started."""

    opportunities: int = 0
    approved: int = 0
    rejected: int = 0
    # The latest status of each execution (a submitted one later becomes included, reverted...).
    execution_status: dict[str, str] = field(default_factory=dict)
    # Realised profit per profit token (base units), booked once per finished execution.
    pnl: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    decimals: dict[str, int] = field(default_factory=dict)
    booked: set[str] = field(default_factory=set)

    def executions(self) -> Counter[str]:
        return Counter(self.execution_status.values())


def _token_label(token: common_pb2.Token) -> str:
    return f"{token.symbol or token.address[:10]}@{token.chain_id}"


def _amount(value: int, decimals: int) -> str:
    """Human units for display only (amounts stay integers everywhere else)."""
    if not decimals:
        return str(value)
    return f"{Decimal(value).scaleb(-decimals).normalize():f}"


class LiveView:
    """What flows through the hot path, per tenant, decoded from core NATS subscriptions.

    It is an observer: plain subscriptions see every message published on the subjects without
    consuming from the durable consumers the services use. JetStream drops a republished event
    (same Nats-Msg-Id) from the stream, but core subscribers still receive it, so the view
    skips ids it has already counted.
    """

    RECENT_EVENTS = 6
    REMEMBERED_IDS = 50_000

    def __init__(self) -> None:
        self.tenants: dict[str, TenantActivity] = defaultdict(TenantActivity)
        self.blocks: dict[int, int] = {}
        self.recent: deque[str] = deque(maxlen=self.RECENT_EVENTS)
        self.unreadable = 0
        self._seen_ids: set[str] = set()
        self._seen_order: deque[str] = deque()

    async def attach(self, nc: NatsClient) -> None:
        """Subscribe to the hot path's subjects on ``nc`` (core NATS, observer only)."""
        for subject in LIVE_SUBJECTS:
            await nc.subscribe(subject, cb=self.on_message)

    async def on_message(self, msg: Any) -> None:
        self.observe(msg.subject, msg.data, msg.headers or {})

    def observe(self, subject: str, data: bytes, headers: Mapping[str, str]) -> None:
        msg_id = headers.get(HEADER_MSG_ID, "")
        if msg_id and not self._remember(f"{subject}|{msg_id}"):
            return
        domain, _, rest = subject.partition(".")
        try:
            if domain == "opp":
                self._opportunity(events_pb2.Opportunity.FromString(data))
            elif domain == "risk" and rest.endswith(".decision"):
                self._decision(events_pb2.RiskDecision.FromString(data))
            elif domain == "exec" and rest.endswith(".result"):
                self._result(events_pb2.ExecutionResult.FromString(data))
            elif domain == "chain" and rest.endswith(".block"):
                update = events_pb2.MarketUpdate.FromString(data)
                self.blocks[update.chain_id] = max(self.blocks.get(update.chain_id, 0), update.block_number)
        except DecodeError:
            self.unreadable += 1

    def _remember(self, key: str) -> bool:
        if key in self._seen_ids:
            return False
        self._seen_ids.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > self.REMEMBERED_IDS:
            self._seen_ids.discard(self._seen_order.popleft())
        return True

    def _event(self, tenant_id: str, text: str) -> None:
        self.recent.append(f"{time.strftime('%H:%M:%S')} {tenant_id[:8]} {text}")

    def _opportunity(self, opp: events_pb2.Opportunity) -> None:
        self.tenants[opp.tenant_id].opportunities += 1
        profit = _amount(int(opp.expected_profit_net_of_gas or 0), opp.profit_token.decimals)
        self._event(
            opp.tenant_id,
            f"opportunity {opp.opportunity_id[:8]}: {opp.WhichOneof('action') or 'no action'} on chain {opp.chain_id}, "
            f"net {profit} {_token_label(opp.profit_token)}",
        )

    def _decision(self, decision: events_pb2.RiskDecision) -> None:
        activity = self.tenants[decision.tenant_id]
        approved = decision.outcome == events_pb2.RISK_DECISION_OUTCOME_APPROVED
        if approved:
            activity.approved += 1
        else:
            activity.rejected += 1
        reason = events_pb2.RiskReasonCode.Name(decision.reason_code).removeprefix("RISK_REASON_CODE_")
        self._event(
            decision.tenant_id,
            f"risk {'approved' if approved else 'rejected'} {decision.opportunity_id[:8]} ({reason.lower()})",
        )

    def _result(self, result: events_pb2.ExecutionResult) -> None:
        activity = self.tenants[result.tenant_id]
        status = common_pb2.ExecutionResultStatus.Name(result.status).removeprefix("EXECUTION_RESULT_STATUS_")
        activity.execution_status[result.execution_id] = status.lower()
        text = f"execution {result.execution_id[:8]} {status.lower()}"
        finished = result.status != common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED
        if finished and result.execution_id not in activity.booked:
            activity.booked.add(result.execution_id)
            label = _token_label(result.profit_token)
            profit = int(result.realized_profit or 0)
            activity.pnl[label] += profit
            activity.decimals[label] = result.profit_token.decimals
            text += f", realised {_amount(profit, result.profit_token.decimals)} {label}"
        self._event(result.tenant_id, text)

    def render(self) -> Group:
        heads = ", ".join(f"chain {c}: block {n}" for c, n in sorted(self.blocks.items())) or "no blocks yet"
        table = Table(title=f"MEVaaS fleet: live ({heads}; Ctrl-C to stop)")
        for column in ("tenant", "opportunities", "approved", "rejected", "executions", "realised PnL"):
            table.add_column(column)
        for tenant_id, activity in sorted(self.tenants.items()):
            executions = activity.executions()
            table.add_row(
                tenant_id,
                str(activity.opportunities),
                str(activity.approved),
                str(activity.rejected),
                ", ".join(f"{status} {n}" for status, n in sorted(executions.items())) or "-",
                ", ".join(
                    f"{_amount(value, activity.decimals[label])} {label}"
                    for label, value in sorted(activity.pnl.items())
                )
                or "-",
            )
        recent = "\n".join(self.recent) or "waiting for opportunities..."
        if self.unreadable:
            recent += f"\n({self.unreadable} messages could not be decoded)"
        return Group(table, Text(recent, style="dim"))


async def watch(nats_url: str, stop: asyncio.Event, supervisor: Supervisor | None = None) -> None:
    """Show the live view, refreshed twice a second, until ``stop`` is set."""

    def render() -> Group:
        view_now = view.render()
        if supervisor is None:
            return view_now
        lines = [supervisor.status(), *supervisor.events]
        return Group(view_now, Text("\n".join(lines), style="yellow"))

    view = LiveView()
    user = urlsplit(nats_url.split(",", maxsplit=1)[0]).username
    nc = await nats.connect(
        nats_url, name="mevaas-up-live-view", inbox_prefix=inbox_prefix(user) if user else "_INBOX"
    )
    try:
        await view.attach(nc)
        with Live(render(), console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                live.update(render())
    finally:
        await nc.close()
