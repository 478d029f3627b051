"""Whether a strategy id names one of the tenant's strategies, asked of the strategy service
(mevaas_core.strategy_lookup): limits and kill switches are only kept for strategies that exist."""

from __future__ import annotations

from mevaas_core.bus import Bus
from mevaas_core.errors import Unavailable
from mevaas_core.strategy_lookup import StrategyServiceAbsent, lookup_strategy


class StrategyScope:
    def __init__(self, bus: Bus, subject: str) -> None:
        self._bus = bus
        self._subject = subject

    async def require(self, tenant_id: str, strategy_id: str, *, engaging_kill_switch: bool = False) -> None:
        """NotFound unless ``strategy_id`` (when given) is one of the tenant's strategies."""
        if not strategy_id:
            return
        try:
            await lookup_strategy(self._bus, self._subject, tenant_id, strategy_id)
        except StrategyServiceAbsent:
            # Stopping must never wait on another service: with the strategy service away an
            # engage is kept (under the caller's own tenant, so it touches nobody else).
            if engaging_kill_switch:
                return
            raise Unavailable(
                f"the strategy service is not answering; strategy_id {strategy_id} can't be checked"
            ) from None
