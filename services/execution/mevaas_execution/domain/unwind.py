"""Unwinding a cross-chain trade whose legs did not all land (pure).

A leg that landed while another did not has moved inventory on its chain only. It is unwound by
a reverse Router02 swap on the same chain and router (what it received back into what it spent),
whose ``amountOutMin`` bounds the loss at ``max_loss_bps`` of what the leg spent. When the unwind
cannot land within that bound (it reverts) or is dropped, the leg's proceeds stay where they are:
an open position, named in the execution's error.

The execution's realised profit is then what the chains say: the net change of every token the
legs (unwinds included) moved, the profit token counted as is and any other token valued at the
rate the trade's own leg on that chain executed at, minus the gas of every transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor
from typing import Any

from mevaas_execution.domain.cross_chain import Settlement
from mevaas_execution.domain.planning import BPS, in_profit_token

INCLUDED = "included"


@dataclass(frozen=True, slots=True)
class UnwindPlan:
    # The leg it reverses (its row: tenant, execution, wallet, submission mode, gas rate).
    leg: Mapping[str, Any]
    unwinds: int
    chain_id: int
    router: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out_min: int


def trade_legs(legs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [leg for leg in legs if leg["unwinds"] is None]


def unwind_plans(legs: Sequence[Mapping[str, Any]], max_loss_bps: int) -> list[UnwindPlan]:
    """The reverse swaps the execution needs: one per trade leg that landed while another trade
    leg did not, unless that leg has been unwound (or tried) already."""
    trades = trade_legs(legs)
    if all(leg["status"] == INCLUDED for leg in trades) or not any(
        leg["status"] == INCLUDED for leg in trades
    ):
        return []
    tried = {leg["unwinds"] for leg in legs if leg["unwinds"] is not None}
    return [
        UnwindPlan(
            leg=leg,
            unwinds=int(leg["leg_index"]),
            chain_id=int(leg["chain_id"]),
            router=leg["router_address"],
            token_in=leg["token_out"],
            token_out=leg["token_in"],
            amount_in=int(leg["amount_out"] or 0),
            amount_out_min=max(1, int(leg["amount_in"]) * (BPS - max_loss_bps) // BPS),
        )
        for leg in trades
        if leg["status"] == INCLUDED
        and int(leg["leg_index"]) not in tried
        and int(leg["amount_out"] or 0) > 0
    ]


def unwind_unsent(plan: UnwindPlan, leg_index: int, error: str) -> dict[str, Any]:
    """The unwind leg that could not be sent, as settlement sees it: dropped, nothing moved."""
    return {
        "leg_index": leg_index,
        "chain_id": plan.chain_id,
        "status": "dropped",
        "router_address": plan.router,
        "token_in": plan.token_in,
        "token_out": plan.token_out,
        "amount_in": plan.amount_in,
        "amount_out": None,
        "amount_out_min": plan.amount_out_min,
        "gas_used": 0,
        "gas_cost": 0,
        "gas_rate_num": 1,
        "gas_rate_den": 1,
        "block_number": 0,
        "error": error,
        "tx_hash": "",
        "unwinds": plan.unwinds,
    }


def _token(chain_id: Any, address: str) -> tuple[int, str]:
    return int(chain_id), address.lower()


def chain_deltas(legs: Sequence[Mapping[str, Any]]) -> dict[tuple[int, str], int]:
    """Net change of each (chain, token) over the legs that landed."""
    deltas: dict[tuple[int, str], int] = defaultdict(int)
    for leg in legs:
        if leg["status"] == INCLUDED:
            deltas[_token(leg["chain_id"], leg["token_in"])] -= int(leg["amount_in"])
            deltas[_token(leg["chain_id"], leg["token_out"])] += int(leg["amount_out"] or 0)
    return dict(deltas)


def settle_unwound(legs: Sequence[Mapping[str, Any]]) -> Settlement:
    """The final facts of an execution with unwind legs: always FAILED (the arbitrage did not
    happen), naming what was unwound and what remains open; realised profit from the chain deltas."""
    trades = trade_legs(legs)
    first, last = trades[0], trades[-1]
    profit_side = {_token(first["chain_id"], first["token_in"]), _token(last["chain_id"], last["token_out"])}
    # Profit-token units per unit of each other token: the rate its trade leg was planned at.
    rates: dict[tuple[int, str], Fraction] = {}
    for leg in trades:
        if int(leg["amount_in"]) and leg["amount_out_min"]:
            if _token(leg["chain_id"], leg["token_in"]) in profit_side:
                rates[_token(leg["chain_id"], leg["token_out"])] = Fraction(
                    int(leg["amount_in"]), int(leg["amount_out_min"])
                )
            else:
                rates[_token(leg["chain_id"], leg["token_in"])] = Fraction(
                    int(leg["amount_out_min"]), int(leg["amount_in"])
                )
    gross = 0
    for token, delta in chain_deltas(legs).items():
        # Losses round down, gains too: never overstated.
        gross += delta if token in profit_side else floor(delta * rates.get(token, Fraction(0)))
    gas_used = sum(int(leg["gas_used"]) for leg in legs)
    gas_cost = sum(
        in_profit_token(int(leg["gas_cost"]), (int(leg["gas_rate_num"]), int(leg["gas_rate_den"])))
        for leg in legs
    )
    block = max((int(leg["block_number"]) for leg in legs), default=0)
    failed = "; ".join(
        f"leg {leg['leg_index']} on chain {leg['chain_id']} {leg['status']}"
        + (f" ({leg['error']})" if leg["error"] else "")
        for leg in trades
        if leg["status"] != INCLUDED
    )
    by_leg = {int(leg["unwinds"]): leg for leg in legs if leg["unwinds"] is not None}
    notes = []
    for index, unwind in sorted(by_leg.items()):
        if unwind["status"] == INCLUDED:
            notes.append(f"leg {index} unwound on chain {unwind['chain_id']} ({unwind['tx_hash']})")
        else:
            notes.append(
                f"open position: leg {index}'s {unwind['amount_in']} of {unwind['token_in']} stays on chain "
                f"{unwind['chain_id']} (unwind {unwind['status']}{': ' + unwind['error'] if unwind['error'] else ''})"
            )
    return Settlement(
        "failed", "; ".join([failed, *notes]), gross, gross - gas_cost, gas_used, gas_cost, block
    )


def open_positions(legs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The unwind legs that did not land: the inventory they were to bring back is still out."""
    return [leg for leg in legs if leg["unwinds"] is not None and leg["status"] != INCLUDED]
