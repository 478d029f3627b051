"""What each action kind exposes to the limits: one small case per `Opportunity.action` kind.

Every case names the chains and tokens the action touches, the token and amount it puts at risk
(reserved against max_position until the execution settles) and the counterparties it pays or
acts on (screened against sanctions lists). A kind without a case here is refused, never let
through unmeasured. A ``protective`` action (leverage protection's deleverage: it costs gas and
earns nothing, and it is needed most when the tenant is losing) is not held to min_profit,
daily_loss_limit, max_position or max_concurrent_executions (see checks.decide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_risk.domain.limits import TokenKey


@dataclass(frozen=True, slots=True)
class ActionFacts:
    kind: str
    chain_ids: frozenset[int]
    tokens: frozenset[TokenKey]
    exposure_token: TokenKey
    exposure_amount: int
    counterparties: frozenset[str] = frozenset()
    protective: bool = False


def _amount(value: str) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _route(kind: str, chain_id: int, hops: Iterable[events_pb2.RouteHop], amount_in: str) -> ActionFacts:
    hops = list(hops)
    chains: set[int] = {chain_id} - {0}
    tokens: set[TokenKey] = set()
    # Every pool traded against and every token contract moved is a counterparty too.
    parties: set[str] = set()
    for hop in hops:
        chain = hop.chain_id or chain_id
        chains.add(chain)
        tokens.add(TokenKey.of(chain, hop.token_in))
        tokens.add(TokenKey.of(chain, hop.token_out))
        parties |= {hop.pool.lower(), hop.token_in.lower(), hop.token_out.lower()}
    first = hops[0] if hops else events_pb2.RouteHop()
    return ActionFacts(
        kind=kind,
        chain_ids=frozenset(chains),
        tokens=frozenset(tokens),
        exposure_token=TokenKey.of(first.chain_id or chain_id, first.token_in),
        exposure_amount=_amount(amount_in),
        counterparties=frozenset(parties - {""}),
    )


def _token(token: common_pb2.Token, chain_id: int) -> TokenKey:
    return TokenKey.of(token.chain_id or chain_id, token.address)


def _swap_cycle(opp: events_pb2.Opportunity) -> ActionFacts:
    return _route("swap_cycle", opp.chain_id, opp.swap_cycle.hops, opp.swap_cycle.amount_in)


def _cross_chain(opp: events_pb2.Opportunity) -> ActionFacts:
    legs = list(opp.cross_chain.legs)
    parts = [_route("cross_chain", leg.chain_id, leg.hops, leg.amount_in) for leg in legs]
    if not parts:
        return _route("cross_chain", opp.chain_id, (), "0")
    return ActionFacts(
        kind="cross_chain",
        chain_ids=frozenset().union(*(p.chain_ids for p in parts)),
        tokens=frozenset().union(*(p.tokens for p in parts)),
        # The first leg spends the base token; later legs spend what earlier ones bought.
        exposure_token=parts[0].exposure_token,
        exposure_amount=parts[0].exposure_amount,
        counterparties=frozenset().union(*(p.counterparties for p in parts)),
    )


def _liquidation(opp: events_pb2.Opportunity) -> ActionFacts:
    action = opp.liquidation
    debt = _token(action.debt_asset, opp.chain_id)
    swap = _route("liquidation", opp.chain_id, action.collateral_swap, "0")
    return ActionFacts(
        kind="liquidation",
        chain_ids=frozenset({opp.chain_id} | swap.chain_ids) - {0},
        tokens=frozenset({debt, _token(action.collateral_asset, opp.chain_id)} | swap.tokens),
        exposure_token=debt,
        exposure_amount=_amount(action.debt_to_cover),
        counterparties=frozenset({action.borrower.lower()} - {""}) | swap.counterparties,
    )


def _backrun(opp: events_pb2.Opportunity) -> ActionFacts:
    cycle = _route("backrun", opp.chain_id, opp.backrun.cycle.hops, opp.backrun.cycle.amount_in)
    return ActionFacts(
        kind="backrun",
        chain_ids=cycle.chain_ids,
        tokens=cycle.tokens,
        exposure_token=cycle.exposure_token,
        exposure_amount=cycle.exposure_amount,
        counterparties=frozenset({opp.backrun.refund_recipient.lower()} - {""}) | cycle.counterparties,
    )


def _deleverage(opp: events_pb2.Opportunity) -> ActionFacts:
    action = opp.deleverage
    debt = _token(action.debt_asset, opp.chain_id)
    swap = _route("deleverage", opp.chain_id, action.collateral_swap, "0")
    return ActionFacts(
        kind="deleverage",
        chain_ids=frozenset({opp.chain_id} | swap.chain_ids) - {0},
        tokens=frozenset({debt, _token(action.collateral_asset, opp.chain_id)} | swap.tokens),
        exposure_token=debt,
        exposure_amount=_amount(action.repay_amount),
        counterparties=swap.counterparties,
        protective=True,
    )


def _rebalance_trade(opp: events_pb2.Opportunity) -> ActionFacts:
    action = opp.rebalance_trade
    return _route("rebalance_trade", opp.chain_id, action.hops, action.amount_in)


def _withdrawal(opp: events_pb2.Opportunity) -> ActionFacts:
    action = opp.withdrawal
    token = _token(action.token, opp.chain_id)
    return ActionFacts(
        kind="withdrawal",
        chain_ids=frozenset({token.chain_id} - {0}),
        tokens=frozenset({token}),
        exposure_token=token,
        exposure_amount=_amount(action.amount),
        counterparties=frozenset({action.destination.lower()} - {""}),
    )


FACTS: dict[str, Callable[[events_pb2.Opportunity], ActionFacts]] = {
    "swap_cycle": _swap_cycle,
    "cross_chain": _cross_chain,
    "liquidation": _liquidation,
    "backrun": _backrun,
    "deleverage": _deleverage,
    "rebalance_trade": _rebalance_trade,
    "withdrawal": _withdrawal,
}


def facts_of(opp: events_pb2.Opportunity) -> ActionFacts | None:
    """The action's facts, or None when the opportunity has no action risk knows."""
    kind = opp.WhichOneof("action")
    case = FACTS.get(kind) if kind else None
    return case(opp) if case is not None else None
