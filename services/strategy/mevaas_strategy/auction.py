"""The searcher side of the order-flow auction: every replica follows ``protect.*.hint``
(an ordered consumer, so each sees every hint) and asks each running strategy of its own
tenants whose plugin bids in auctions (`HintBidder`: the ``backrun`` type, or a tenant's plugin
with ``on_hint``) for its bid on the engine's current reserves. Bids are published as
opportunities on ``opp.<tenant>.<strategy>`` like any other, for risk and then execution; the
hint's tenant (the user's) is never shown to a plugin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from mevaas.events.v1 import events_pb2
from mevaas_chain.registry import ChainRegistry
from mevaas_core.bus import Bus
from mevaas_core.bus.follow import Follower, follow
from mevaas_strategies.backrun import Hint, hint_from_proto
from mevaas_strategies.market import MarketView
from mevaas_strategies.opportunity import opportunity_message
from mevaas_strategies.plugins import Candidate
from mevaas_strategy.engine import Engine

log = logging.getLogger("mevaas.strategy.auction")


@runtime_checkable
class HintBidder(Protocol):
    def on_hint(self, view: MarketView, hint: Hint, routers: Mapping[str, str]) -> list[Candidate]: ...


class HintSearcher:
    def __init__(self, bus: Bus, engine: Engine, chains: ChainRegistry) -> None:
        self.bus = bus
        self.engine = engine
        self.routers = {c.chain_id: {d.router.lower(): d.name for d in c.dexes if d.router} for c in chains}
        self._follower: Follower | None = None

    async def start(self) -> None:
        self._follower = await follow(
            self.bus, "PROTECT", "protect.*.hint", events_pb2.OrderFlowHint, self.on_hint
        )

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()

    def bids(self, message: events_pb2.OrderFlowHint) -> list[events_pb2.Opportunity]:
        """Every running bidder's opportunity for this hint (pure over the engine's state)."""
        hint = hint_from_proto(message)
        view = self.engine.view
        market = view.chain(hint.chain_id)
        routers = self.routers.get(hint.chain_id)
        if market is None or routers is None:
            return []
        seen = datetime.now(UTC)
        found = []
        for running in list(self.engine.running.values()):
            plugin = running.plugin
            if hint.chain_id not in running.spec.chain_ids or not isinstance(plugin, HintBidder):
                continue
            for candidate in plugin.on_hint(view, hint, routers):
                opportunity = opportunity_message(
                    running.spec, candidate, market, view, block_seen_at=seen, detected_at=datetime.now(UTC)
                )
                if hint.max_block_number:
                    opportunity.deadline_block = min(opportunity.deadline_block, hint.max_block_number)
                found.append(opportunity)
        return found

    async def on_hint(self, message: events_pb2.OrderFlowHint) -> None:
        bids = self.bids(message)
        results = await asyncio.gather(
            *(
                self.bus.publish(
                    f"opp.{o.tenant_id}.{o.strategy_id}", o, msg_id=o.opportunity_id, tenant_id=o.tenant_id
                )
                for o in bids
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("hint %s: publishing a bid failed: %r", message.tx_hash, result)
