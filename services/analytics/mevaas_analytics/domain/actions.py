"""What analytics reads from an opportunity's typed action: one small case per action kind.

``route`` is every swap hop the action makes (for the DEX column, route reports and sanctions
screening of pools and tokens); ``parties`` every address it pays or acts on besides the tenant's
own wallet (borrowers, refund recipients, withdrawal destinations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mevaas.events.v1 import events_pb2


@dataclass(frozen=True, slots=True)
class ActionView:
    kind: str
    route: tuple[events_pb2.RouteHop, ...]
    # (chain id, address) of tokens and parties outside the route.
    parties: tuple[tuple[int, str], ...] = ()


def _on_chain(hop: events_pb2.RouteHop, chain_id: int) -> events_pb2.RouteHop:
    copy = events_pb2.RouteHop()
    copy.CopyFrom(hop)
    copy.chain_id = hop.chain_id or chain_id
    return copy


def _cross_chain(opp: events_pb2.Opportunity) -> ActionView:
    hops = tuple(_on_chain(h, leg.chain_id) for leg in opp.cross_chain.legs for h in leg.hops)
    return ActionView("cross_chain", hops)


def _liquidation(opp: events_pb2.Opportunity) -> ActionView:
    a = opp.liquidation
    parties = ((opp.chain_id, a.borrower), (opp.chain_id, a.pool), (opp.chain_id, a.collateral_asset.address))
    return ActionView("liquidation", tuple(a.collateral_swap), parties)


def _backrun(opp: events_pb2.Opportunity) -> ActionView:
    a = opp.backrun
    return ActionView("backrun", tuple(a.cycle.hops), ((opp.chain_id, a.refund_recipient),))


def _deleverage(opp: events_pb2.Opportunity) -> ActionView:
    a = opp.deleverage
    return ActionView("deleverage", tuple(a.collateral_swap), ((opp.chain_id, a.pool),))


def _withdrawal(opp: events_pb2.Opportunity) -> ActionView:
    a = opp.withdrawal
    return ActionView("withdrawal", (), ((opp.chain_id, a.destination), (opp.chain_id, a.token.address)))


VIEWS: dict[str, Callable[[events_pb2.Opportunity], ActionView]] = {
    "swap_cycle": lambda opp: ActionView("swap_cycle", tuple(opp.swap_cycle.hops)),
    "cross_chain": _cross_chain,
    "liquidation": _liquidation,
    "backrun": _backrun,
    "deleverage": _deleverage,
    "rebalance_trade": lambda opp: ActionView("rebalance_trade", tuple(opp.rebalance_trade.hops)),
    "withdrawal": _withdrawal,
}


def view_of(opp: events_pb2.Opportunity) -> ActionView:
    kind = opp.WhichOneof("action")
    case = VIEWS.get(kind) if kind else None
    return case(opp) if case is not None else ActionView(kind or "", ())
