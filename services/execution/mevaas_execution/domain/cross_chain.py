"""Cross-chain arbitrage with inventory on both chains: pure planning and booking.

A cross-chain action (`CrossChainAction`) has one leg per chain and the legs chain together (the second leg
spends what the first yields). Each leg is a plain Uniswap V2 Router02
``swapExactTokensForTokens`` sent from the tenant's wallet on that leg's chain, paid from the
inventory the wallet holds there, with ``amountOutMin`` the hop's expected output less the
tolerated slippage. No executor contract is involved: the wallet is both payer and recipient.

Realised profit is the profit token's net change across the legs (what the last leg received
minus what the first leg spent, the token being the same by symbol on both chains) minus the gas
of every transaction of every leg, each converted with its own chain's rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.registry import ChainConfig
from mevaas_execution.domain.planning import BPS, PlanError, gas_rate, in_profit_token

SWAP_EXACT_TOKENS = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
APPROVE = "approve(address,uint256)"
MAX_UINT = 2**256 - 1
SWAP_GAS = 300_000
APPROVE_GAS = 100_000
# The router's deadline: long enough for the leg's resubmission window, short enough to bound
# a transaction that lingers in a mempool.
ROUTER_DEADLINE_S = 600
TRANSFER_TOPIC = abi.keccak_hex(b"Transfer(address,address,uint256)")


@dataclass(frozen=True, slots=True)
class LegPlan:
    index: int
    chain_id: int
    dex: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out_min: int


def plan_legs(action: events_pb2.CrossChainAction, max_slippage_bps: int) -> list[LegPlan]:
    """One swap per leg, each on its own chain; the legs must chain (the next leg spends exactly
    what the previous one is expected to yield)."""
    legs = list(action.legs)
    if len(legs) < 2:
        raise PlanError(f"a cross-chain trade needs at least two legs, not {len(legs)}")
    if len({leg.chain_id for leg in legs}) != len(legs):
        raise PlanError("a cross-chain trade runs one leg per chain")
    plans: list[LegPlan] = []
    for index, leg in enumerate(legs):
        if len(leg.hops) != 1:
            raise PlanError(f"leg {index} has {len(leg.hops)} hops; a leg is one Router02 swap")
        hop = leg.hops[0]
        if not leg.chain_id or hop.chain_id not in (0, leg.chain_id):
            raise PlanError(f"leg {index} lacks its chain, or its hop is on another chain")
        if not hop.token_in or not hop.token_out or not hop.dex:
            raise PlanError(f"leg {index} lacks its DEX or tokens")
        try:
            amount_in, amount_out = int(leg.amount_in or 0), int(hop.amount_out or 0)
        except ValueError:
            raise PlanError(f"leg {index} has malformed amounts") from None
        if amount_in <= 0 or amount_out <= 0 or int(hop.amount_in or 0) != amount_in:
            raise PlanError(f"leg {index} has no amounts, or its hop does not spend the leg's input")
        if index and amount_in != int(legs[index - 1].hops[-1].amount_out):
            raise PlanError(f"leg {index} does not spend what leg {index - 1} yields")
        plans.append(
            LegPlan(
                index=index,
                chain_id=leg.chain_id,
                dex=hop.dex,
                token_in=hop.token_in,
                token_out=hop.token_out,
                amount_in=amount_in,
                amount_out_min=max(1, amount_out * (BPS - max_slippage_bps) // BPS),
            )
        )
    return plans


def size_to_inventory(plans: Sequence[LegPlan], balances: Sequence[int]) -> list[LegPlan]:
    """The legs scaled down to what the wallet holds of each leg's input on its chain (every leg
    is paid from inventory there). All legs scale by the same fraction, so they still chain; the
    minimum outputs scale with them, which is conservative on constant-product pools (a smaller
    trade gets a better price). Raises PlanError when some leg's input is not held at all."""
    short = [(plan, held) for plan, held in zip(plans, balances, strict=True) if held < plan.amount_in]
    if not short:
        return list(plans)
    plan, held = min(short, key=lambda pair: Fraction(pair[1], pair[0].amount_in))
    factor = Fraction(held, plan.amount_in)
    sized = [
        replace(p, amount_in=int(p.amount_in * factor), amount_out_min=max(1, int(p.amount_out_min * factor)))
        for p in plans
    ]
    if any(p.amount_in <= 0 for p in sized):
        raise PlanError(
            f"leg {plan.index} on chain {plan.chain_id}: the wallet holds {held} of {plan.token_in}, "
            f"the leg needs {plan.amount_in}"
        )
    return sized


def balance_call(token: str, owner: str) -> dict[str, str]:
    return {"to": token, "data": "0x" + abi.balance_of(owner).hex()}


def leg_gas_rate(opportunity: events_pb2.Opportunity, leg: LegPlan, chain: ChainConfig) -> tuple[int, int]:
    """Wei of gas on the leg's chain in profit-token units: 1:1 when the leg's side of the profit
    token (what the first leg spends, what the last leg receives) is the chain's wrapped native
    token; otherwise the rate the opportunity implies."""
    profit_side = leg.token_in if leg.index == 0 else leg.token_out
    if chain.wrapped_native and profit_side.lower() == chain.wrapped_native.lower():
        return 1, 1
    return gas_rate(opportunity, chain)


def swap_calldata(leg: LegPlan, wallet: str, deadline: int) -> bytes:
    return abi.encode_call(
        SWAP_EXACT_TOKENS, leg.amount_in, leg.amount_out_min, [leg.token_in, leg.token_out], wallet, deadline
    )


def approve_calldata(router: str) -> bytes:
    return abi.encode_call(APPROVE, router, MAX_UINT)


def allowance_call(owner: str, spender: str) -> bytes:
    return abi.encode_call("allowance(address,address)", owner, spender)


def received(receipt: Mapping[str, Any], token: str, wallet: str) -> int:
    """What ``wallet`` received of ``token`` in the transaction (its ERC20 Transfer logs)."""
    total = 0
    recipient = "0x" + wallet.lower().removeprefix("0x").rjust(64, "0")
    for log in receipt.get("logs") or ():
        topics = [str(t).lower() for t in log.get("topics") or ()]
        if (
            len(topics) == 3
            and topics[0] == TRANSFER_TOPIC
            and topics[2] == recipient
            and str(log.get("address", "")).lower() == token.lower()
        ):
            total += int(log["data"], 16)
    return total


def gas_paid(receipts: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(gas used, wei paid) over the transactions of one leg."""
    used = sum(int(r["gasUsed"], 16) for r in receipts)
    paid = sum(int(r["gasUsed"], 16) * int(r.get("effectiveGasPrice") or "0x0", 16) for r in receipts)
    return used, paid


@dataclass(frozen=True, slots=True)
class Settlement:
    """The execution's final facts once every leg is final."""

    status: str
    error: str
    gross_profit: int
    realized_profit: int
    gas_used: int
    gas_cost: int
    block_number: int


def settle(legs: Sequence[Mapping[str, Any]]) -> Settlement:
    """INCLUDED only when every leg landed; otherwise the legs that did not land are named (a
    leg that landed while another did not leaves inventory stranded on its chain)."""
    gas_used = sum(int(leg["gas_used"]) for leg in legs)
    gas_cost = sum(
        in_profit_token(int(leg["gas_cost"]), (int(leg["gas_rate_num"]), int(leg["gas_rate_den"])))
        for leg in legs
    )
    landed = [leg for leg in legs if leg["status"] == "included"]
    first, last = legs[0], legs[-1]
    spent = int(first["amount_in"]) if first["status"] == "included" else 0
    got = int(last["amount_out"] or 0) if last["status"] == "included" else 0
    gross = got - spent
    block = max((int(leg["block_number"]) for leg in legs), default=0)
    if len(landed) == len(legs):
        return Settlement("included", "", gross, gross - gas_cost, gas_used, gas_cost, block)
    failed = [leg for leg in legs if leg["status"] != "included"]
    described = "; ".join(
        f"leg {leg['leg_index']} on chain {leg['chain_id']} {leg['status']}"
        + (f" ({leg['error']})" if leg["error"] else "")
        for leg in failed
    )
    if not landed:
        statuses = {leg["status"] for leg in legs}
        status = (
            "reverted" if statuses == {"reverted"} else "dropped" if statuses == {"dropped"} else "failed"
        )
        return Settlement(status, described, gross, gross - gas_cost, gas_used, gas_cost, block)
    stranded = ", ".join(f"leg {leg['leg_index']} on chain {leg['chain_id']}" for leg in landed)
    return Settlement(
        "failed",
        f"{described}; {stranded} landed alone (inventory moved on one side only)",
        gross,
        gross - gas_cost,
        gas_used,
        gas_cost,
        block,
    )
