"""A tenant's strategy, asked of the strategy service over NATS request/reply
(`subjects.STRATEGY_GET`). The tenant travels in the request's tenant-id header and the strategy
service reads under that tenant's row-level security, so an answer never shows another tenant's
strategy: a foreign id is as unknown as a made-up one."""

from __future__ import annotations

from mevaas.strategy.v1 import strategy_pb2
from mevaas_core.bus import Bus, BusError, NoRespondersError, RemoteError
from mevaas_core.errors import NotFound, Unavailable


class StrategyServiceAbsent(Exception):
    """Nobody serves the lookup subject (the strategy service is not deployed or not up)."""


async def lookup_strategy(
    bus: Bus, subject: str, tenant_id: str, strategy_id: str, *, version: int = 0, timeout_s: float = 2.0
) -> strategy_pb2.Strategy:
    """The tenant's active strategy (``version`` 0 = current). Raises NotFound for an unknown or
    another tenant's id, Unavailable when the lookup fails, StrategyServiceAbsent when nobody
    serves ``subject`` (each caller decides what that means for it)."""
    try:
        reply = await bus.request(
            subject,
            strategy_pb2.GetStrategyRequest(strategy_id=strategy_id, version=version),
            strategy_pb2.GetStrategyResponse,
            tenant_id=tenant_id,
            timeout=timeout_s,
        )
    except NoRespondersError:
        raise StrategyServiceAbsent(subject) from None
    except RemoteError as exc:
        if exc.code == 404:
            raise NotFound("strategy", strategy_id) from None
        raise Unavailable(f"strategy lookup failed: {exc.message}") from None
    except BusError as exc:
        raise Unavailable(f"strategy lookup failed: {exc}") from None
    return reply.strategy
