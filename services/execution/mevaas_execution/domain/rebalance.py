"""Rebalance trades: pure planning and settlement.

A rebalance trade (`RebalanceTradeAction`) is one Uniswap V2 Router02
``swapExactTokensForTokens`` along its hops (all on one chain and one DEX), sent from the tenant's
wallet and paid from what the wallet holds: the wallet is both payer and recipient, no executor
contract is involved. The trade is exact: it spends ``amount_in`` and reverts on chain below
``min_amount_out``; a wallet holding less than ``amount_in`` refuses it (a rebalance is never
silently resized). A trade is not meant to earn: its realised profit is minus its gas.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_execution.domain.cross_chain import SWAP_EXACT_TOKENS, Settlement
from mevaas_execution.domain.planning import PlanError, in_profit_token


@dataclass(frozen=True, slots=True)
class TradePlan:
    chain_id: int
    dex: str
    path: tuple[str, ...]
    amount_in: int
    amount_out_min: int

    @property
    def token_in(self) -> str:
        return self.path[0]

    @property
    def token_out(self) -> str:
        return self.path[-1]


def plan_trade(chain_id: int, action: events_pb2.RebalanceTradeAction) -> TradePlan:
    hops = list(action.hops)
    if not hops:
        raise PlanError(f"rebalance {action.rebalance_id} trade {action.trade_index} has no hops")
    if any(hop.chain_id not in (0, chain_id) for hop in hops):
        raise PlanError(f"a rebalance trade runs on one chain ({chain_id}); a hop is on another")
    dexes = {hop.dex for hop in hops}
    if len(dexes) != 1 or "" in dexes:
        raise PlanError("a rebalance trade routes through exactly one named DEX (one router)")
    for index, (hop, following) in enumerate(itertools.pairwise(hops)):
        if hop.token_out.lower() != following.token_in.lower():
            raise PlanError(f"hop {index + 1} does not spend what hop {index} yields")
    try:
        amount_in, amount_out_min = int(action.amount_in or 0), int(action.min_amount_out or 0)
    except ValueError:
        raise PlanError("the trade has malformed amounts") from None
    if amount_in <= 0 or amount_out_min <= 0:
        raise PlanError("the trade needs a positive amount_in and min_amount_out")
    path = (hops[0].token_in, *(hop.token_out for hop in hops))
    return TradePlan(chain_id, hops[0].dex, path, amount_in, amount_out_min)


def check_inventory(plan: TradePlan, held: int) -> None:
    if held < plan.amount_in:
        raise PlanError(
            f"inventory short: the wallet holds {held} of {plan.token_in} on chain {plan.chain_id}, "
            f"the trade needs {plan.amount_in}"
        )


def swap_calldata(plan: TradePlan, wallet: str, deadline: int) -> bytes:
    return abi.encode_call(
        SWAP_EXACT_TOKENS, plan.amount_in, plan.amount_out_min, list(plan.path), wallet, deadline
    )


def settle(leg: Mapping[str, Any]) -> Settlement:
    """The execution's facts from its one leg: the leg's status, its error, and minus its gas."""
    gas_cost = in_profit_token(int(leg["gas_cost"]), (int(leg["gas_rate_num"]), int(leg["gas_rate_den"])))
    status = str(leg["status"])
    error = "" if status == "included" else f"trade {status}" + (f" ({leg['error']})" if leg["error"] else "")
    return Settlement(status, error, 0, -gas_cost, int(leg["gas_used"]), gas_cost, int(leg["block_number"]))
