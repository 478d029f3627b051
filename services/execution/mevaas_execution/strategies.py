"""The strategy versions sessions run, asked of the strategy service over NATS request/reply."""

from __future__ import annotations

from dataclasses import dataclass

from mevaas.strategy.v1 import strategy_pb2
from mevaas_core.bus import Bus
from mevaas_core.strategy_lookup import StrategyServiceAbsent, lookup_strategy


@dataclass(frozen=True, slots=True)
class StrategyView:
    """What a session needs from the strategy version it runs."""

    version: int
    type: int
    chain_ids: list[int]
    settings: strategy_pb2.ExecutionSettings | None


class StrategyDirectory:
    """Asks the strategy service (NATS request/reply on ``subject``) for a strategy version.

    When nobody serves the subject the session still starts: chains default to every configured
    chain and execution settings come from each decision (opportunity + risk limits)."""

    def __init__(self, bus: Bus, subject: str, timeout_s: float = 2.0) -> None:
        self._bus = bus
        self._subject = subject
        self._timeout_s = timeout_s

    async def lookup(self, tenant_id: str, strategy_id: str, version: int) -> StrategyView | None:
        try:
            strategy = await lookup_strategy(
                self._bus, self._subject, tenant_id, strategy_id, version=version, timeout_s=self._timeout_s
            )
        except StrategyServiceAbsent:
            return None
        parameters = strategy.config.parameters
        return StrategyView(
            version=strategy.version,
            type=strategy.config.type,
            chain_ids=list(parameters.chain_ids),
            settings=parameters.execution_settings if parameters.HasField("execution_settings") else None,
        )
