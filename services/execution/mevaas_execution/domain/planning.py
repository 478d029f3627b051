"""What to do with one approved decision, as pure functions: staleness, gas caps, the minimum
profit the executor must see (slippage), the executor call, and realised profit from a receipt."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain import abi
from mevaas_chain.executor import (
    HOP_V2,
    HOP_V3,
    ExecutorHop,
    decode_executed,
    encode_execute,
    encode_execute_flash,
    encode_execute_flash_balancer,
    encode_execute_flash_loan,
    encode_execute_flash_v3,
)
from mevaas_chain.registry import ChainConfig

BPS = 10_000
DEFAULT_PRIORITY_FEE_WEI = 10**9
# Executor gas limit: the strategy's estimate with headroom, never below what a 3-hop flash needs.
GAS_LIMIT_FLOOR = 600_000
GAS_LIMIT_MULTIPLIER = 2
MAX_EXECUTOR_HOPS = 3


class PlanError(ValueError):
    """The opportunity cannot be executed as described (bad route, unknown DEX...)."""


# RouteHop.pool_kind -> Executor.Hop.kind; unspecified is a V2 pair (hops written before kinds).
EXECUTOR_HOP_KINDS = {
    events_pb2.POOL_KIND_UNSPECIFIED: HOP_V2,
    events_pb2.POOL_KIND_UNISWAP_V2: HOP_V2,
    events_pb2.POOL_KIND_UNISWAP_V3: HOP_V3,
}


def executor_hop(hop: events_pb2.RouteHop, field: str) -> ExecutorHop:
    """One route hop as the executor's ``Hop``; ``field`` names it in errors."""
    kind = EXECUTOR_HOP_KINDS.get(hop.pool_kind)
    if kind is None:
        raise PlanError(f"{field}.pool_kind {hop.pool_kind} is not a pool kind the executor swaps")
    # Uniswap V2 and V3 both order a pool's tokens by address: token0 is the lower one.
    zero_for_one = int(hop.token_in, 16) < int(hop.token_out, 16)
    return ExecutorHop(hop.pool, zero_for_one, hop.fee_bps or 30, kind)


def require_v2_lender(hop: events_pb2.RouteHop, field: str) -> None:
    """A flash swap borrows from a V2 pair's ``swap`` callback, which a V3 pool does not have."""
    if EXECUTOR_HOP_KINDS.get(hop.pool_kind) != HOP_V2:
        raise PlanError(f"{field} lends through a V2 flash swap, but its pool is not a V2 pair")


@dataclass(frozen=True, slots=True)
class Limits:
    """The execution settings that apply to one decision (strategy settings merged with the
    effective risk limits risk decided against; the stricter wins)."""

    max_gas_price_wei: int | None
    max_slippage_bps: int
    min_profit: int
    execution_delay_ms: int
    retry_attempts: int
    submission_mode: common_pb2.SubmissionMode.ValueType


# Without a strategy's own settings a missed bundle is resent every block until the decision's
# deadline (the deadline check in the tracker bounds it; the column is a 32-bit integer).
RETRY_UNTIL_DEADLINE = 2**31 - 2


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None


def _stricter_cap(*values: int | None) -> int | None:
    present = [v for v in values if v is not None and v > 0]
    return min(present) if present else None


def merge_limits(
    settings: strategy_pb2.ExecutionSettings | None,
    decision: events_pb2.RiskDecision,
    default_mode: common_pb2.SubmissionMode.ValueType,
) -> Limits:
    limits = decision.limits
    opportunity = decision.opportunity
    slippage_values = [
        v for v in (limits.max_slippage_bps, settings.max_slippage_bps if settings else 0) if v
    ]
    mode = opportunity.submission_mode or (settings.submission_mode if settings else 0) or default_mode
    return Limits(
        max_gas_price_wei=_stricter_cap(
            _int_or_none(limits.max_gas_price_wei),
            _int_or_none(settings.max_gas_price_wei) if settings else None,
        ),
        max_slippage_bps=min(slippage_values) if slippage_values else 0,
        min_profit=max(
            _int_or_none(limits.min_profit) or 0,
            (_int_or_none(settings.min_profit_threshold) or 0) if settings else 0,
        ),
        execution_delay_ms=settings.execution_delay_ms if settings else 0,
        retry_attempts=settings.retry_attempts if settings else RETRY_UNTIL_DEADLINE,
        submission_mode=common_pb2.SubmissionMode.ValueType(
            mode or common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE
        ),
    )


def is_stale(deadline_block: int, head: int) -> bool:
    """The next block is the earliest a submission can land; past the deadline it must not."""
    return deadline_block > 0 and head + 1 > deadline_block


def settled_without(last_block: int, head: int) -> bool:
    """Whether a transaction missing from the chain at ``head`` is missing for good, its window
    ending at ``last_block``. Not while ``last_block`` is the head: that block may still be
    rebuilt or reorged with the transaction in it (the devnet relay rebuilds a block without a
    failing bundle, and the tracker's head and receipt reads can straddle the rebuild), so a
    miss is final only once a later block has settled it."""
    return head > last_block


def settled(receipt: Mapping[str, Any], head: int, confirmations: int) -> bool:
    """Whether a receipt read *after* ``head`` may be booked: its block has ``confirmations``
    blocks on top. A receipt of a newer block may still vanish (a reorg, or the devnet relay
    rebuilding a block without a failing bundle, which is visible meanwhile); booking it would
    record a transaction the chain does not hold. Such a transaction waits for the next head."""
    return head - int(receipt["blockNumber"], 16) >= confirmations


def gas_price_refusal(base_fee: int, limits: Limits) -> str | None:
    """Why the decision must not execute at this base fee, or None."""
    cap = limits.max_gas_price_wei
    if cap is not None and base_fee > cap:
        return f"base fee {base_fee} wei is above max gas price {cap} wei"
    return None


def fee_caps(base_fee: int, limits: Limits, priority_fee: int = DEFAULT_PRIORITY_FEE_WEI) -> tuple[int, int]:
    """(max_fee_per_gas, max_priority_fee_per_gas) for an EIP-1559 transaction, within the cap."""
    max_fee = 2 * base_fee + priority_fee
    if limits.max_gas_price_wei is not None:
        max_fee = min(max_fee, limits.max_gas_price_wei)
    return max_fee, min(priority_fee, max(0, max_fee - base_fee))


def min_profit_on_chain(expected_gross_profit: int, limits: Limits) -> int:
    """The profit below which the executor reverts: the expected profit minus the slippage the
    strategy tolerates, never below 1 wei (a cycle must never lose)."""
    floor = expected_gross_profit * (BPS - limits.max_slippage_bps) // BPS
    return max(1, floor)


def executor_hops(hops: Sequence[events_pb2.RouteHop]) -> list[ExecutorHop]:
    if not 2 <= len(hops) <= MAX_EXECUTOR_HOPS:
        raise PlanError(f"the executor runs 2-{MAX_EXECUTOR_HOPS} hop cycles, not {len(hops)}")
    result = []
    for index, hop in enumerate(hops):
        if not hop.pool or not hop.token_in or not hop.token_out:
            raise PlanError(f"hop {index} lacks its pool or tokens")
        result.append(executor_hop(hop, f"swap_cycle.hops[{index}]"))
    if hops[0].token_in.lower() != hops[-1].token_out.lower():
        raise PlanError("the route does not end in the token it starts with")
    return result


@dataclass(frozen=True, slots=True)
class CycleCall:
    """A validated swap cycle on its way to the executor's calldata."""

    cycle: events_pb2.SwapCycleAction
    chain: ChainConfig
    token_in: str
    amount_in: int
    hops: list[ExecutorHop]
    min_profit: int


CycleEncoder = Callable[[CycleCall], bytes]
# SwapCycleAction.financing -> the executor entry point that finances the cycle that way.
CYCLE_FINANCING: dict[int, CycleEncoder] = {}


def cycle_financing(financing: int) -> Callable[[CycleEncoder], CycleEncoder]:
    def register(encoder: CycleEncoder) -> CycleEncoder:
        CYCLE_FINANCING[financing] = encoder
        return encoder

    return register


def executor_calldata(cycle: events_pb2.SwapCycleAction, chain: ChainConfig, min_profit: int) -> bytes:
    """The executor call of the cycle as its financing says (``CYCLE_FINANCING``): ``execute``
    (own capital), ``executeFlash`` (the first hop's pair), ``executeFlashLoan`` (the chain's Aave
    V3 pool), ``executeFlashV3`` (a configured V3 pool) or ``executeFlashBalancer`` (the vault)."""
    hops = executor_hops(cycle.hops)
    try:
        amount_in = int(cycle.amount_in or 0)
    except ValueError:
        raise PlanError(f"amount_in {cycle.amount_in!r} is not an integer") from None
    if amount_in <= 0:
        raise PlanError("amount_in must be positive")
    encoder = CYCLE_FINANCING.get(cycle.financing)
    if encoder is None:
        raise PlanError("the swap cycle names no financing")
    return encoder(CycleCall(cycle, chain, cycle.hops[0].token_in, amount_in, hops, min_profit))


@cycle_financing(events_pb2.FINANCING_INVENTORY)
def _from_inventory(c: CycleCall) -> bytes:
    return encode_execute(c.token_in, c.amount_in, c.hops, c.min_profit)


@cycle_financing(events_pb2.FINANCING_FLASH_SWAP)
def _flash_swap(c: CycleCall) -> bytes:
    require_v2_lender(c.cycle.hops[0], "swap_cycle.hops[0]")
    try:
        factory = c.chain.dex(c.cycle.hops[0].dex).factory
    except KeyError as exc:
        raise PlanError(str(exc)) from None
    return encode_execute_flash(factory, c.token_in, c.amount_in, c.hops, c.min_profit)


@cycle_financing(events_pb2.FINANCING_FLASH_LOAN)
def _aave_flash_loan(c: CycleCall) -> bytes:
    # The executor approves the lender to pull the loan back: only the chain's own market.
    pool = c.chain.contracts.get("aave_pool")
    if pool is None:
        raise PlanError(f"chain {c.chain.chain_id} has no Aave pool to flash-borrow from")
    return encode_execute_flash_loan(pool, c.token_in, c.amount_in, c.hops, c.min_profit)


def _configured_lenders(chain: ChainConfig, kind: str) -> set[str]:
    return {f.address.lower() for f in chain.flash_lenders if f.kind == kind}


@cycle_financing(events_pb2.FINANCING_FLASH_V3)
def _v3_flash(c: CycleCall) -> bytes:
    # The contract checks the pool is genuine; only the chain's configured pools are borrowed from.
    lender = c.cycle.flash_lender
    if lender.lower() not in _configured_lenders(c.chain, "uniswap_v3"):
        raise PlanError(
            f"swap_cycle.flash_lender {lender!r} is no Uniswap V3 flash pool of chain {c.chain.chain_id}"
        )
    if any(h.pair.lower() == lender.lower() for h in c.hops):
        raise PlanError(f"swap_cycle.flash_lender {lender} is also one of the cycle's hops")
    return encode_execute_flash_v3(lender, c.token_in, c.amount_in, c.hops, c.min_profit)


@cycle_financing(events_pb2.FINANCING_FLASH_BALANCER)
def _balancer_flash_loan(c: CycleCall) -> bytes:
    # The executor borrows from the vault it is configured with (setBalancerVault).
    if not _configured_lenders(c.chain, "balancer_v2"):
        raise PlanError(f"chain {c.chain.chain_id} has no Balancer vault to flash-borrow from")
    return encode_execute_flash_balancer(c.token_in, c.amount_in, c.hops, c.min_profit)


def gas_limit(opportunity: events_pb2.Opportunity) -> int:
    return max(GAS_LIMIT_FLOOR, opportunity.gas_estimate * GAS_LIMIT_MULTIPLIER)


def gas_rate(opportunity: events_pb2.Opportunity, chain: ChainConfig) -> tuple[int, int]:
    """How many base units of the profit token one wei of gas costs, as (numerator, denominator).

    The native token (or its wrapped form) is 1:1. Otherwise the rate the strategy used is implied
    by the opportunity: (expected_profit - expected_profit_net_of_gas) / (gas_estimate * gas_price).
    """
    token = opportunity.profit_token.address.lower()
    if token in ("", "0x" + "0" * 40) or (chain.wrapped_native and token == chain.wrapped_native.lower()):
        return 1, 1
    gross = int(opportunity.expected_profit or 0)
    net = int(opportunity.expected_profit_net_of_gas or gross)
    gas_wei = opportunity.gas_estimate * int(opportunity.gas_price or 0)
    if gas_wei <= 0:
        return 0, 1
    return gross - net, gas_wei


def in_profit_token(wei: int, rate: tuple[int, int]) -> int:
    """``wei`` of gas in profit-token base units, rounded up (costs are never understated)."""
    num, den = rate
    return -((-wei * num) // den)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final facts of an included transaction."""

    success: bool
    block_number: int
    gas_used: int
    effective_gas_price: int
    gas_cost: int
    gross_profit: int
    realized_profit: int
    # The executor emitted its Executed event (a successful call to code-less address does not).
    executed: bool


def outcome_from_receipt(receipt: Mapping[str, Any], executor_address: str, rate: tuple[int, int]) -> Outcome:
    """Realised profit net of gas: the executor's ``Executed`` profit minus the gas paid (in the
    profit token); a reverted transaction realises minus its gas."""
    gas_used = int(receipt["gasUsed"], 16)
    price = int(receipt.get("effectiveGasPrice") or "0x0", 16)
    gas_cost = gas_used * price
    success = int(receipt["status"], 16) == 1
    executed = decode_executed(dict(receipt), executor_address) if success else None
    gross = executed.profit if executed is not None else 0
    return Outcome(
        success=success,
        block_number=int(receipt["blockNumber"], 16),
        gas_used=gas_used,
        effective_gas_price=price,
        gas_cost=gas_cost,
        gross_profit=gross,
        realized_profit=gross - in_profit_token(gas_cost, rate),
        executed=executed is not None,
    )


def next_base_fee(block: Mapping[str, Any]) -> int:
    """EIP-1559 base fee of the block after ``block`` (elasticity 2, max change 1/8)."""
    base = int(block.get("baseFeePerGas") or "0x0", 16)
    gas_used = int(block["gasUsed"], 16)
    target = int(block["gasLimit"], 16) // 2
    if target in (0, gas_used):
        return base
    if gas_used > target:
        return base + max(1, base * (gas_used - target) // target // 8)
    return base - base * (target - gas_used) // target // 8


# Why the executor reverted, by custom-error selector, with what the tenant can do about it.
_EXECUTOR_ERRORS = {
    abi.selector("BadPath()").hex(): "BadPath: the route is not a cycle the executor accepts",
    abi.selector(
        "FactoryNotAllowed()"
    ).hex(): "FactoryNotAllowed: the DEX factory (V2 at deployment, V3 by setV3Factory) is not allowed",
    abi.selector(
        "InsufficientProfit(uint256,uint256)"
    ).hex(): "InsufficientProfit: the gap closed below the minimum profit",
    abi.selector("NotGenuinePair()").hex(): "NotGenuinePair: a flash callback came from a non-pair",
    abi.selector("NotGenuinePool()").hex(): (
        "NotGenuinePool: a V3 hop's pool is not its factory's pool, or a callback came from another"
    ),
    abi.selector("NotOwner()").hex(): "NotOwner: the wallet does not own this executor contract",
    abi.selector("TransferFailed()").hex(): "TransferFailed",
}


def explain_revert(data: object, cycle: events_pb2.SwapCycleAction, executor: str) -> str:
    """A readable reason for an executor revert (``data`` is the node's revert data, hex)."""
    text = str(data or "").lower().removeprefix("0x")
    reason = _EXECUTOR_ERRORS.get(text[:8], "")
    if reason == "TransferFailed" and cycle.financing == events_pb2.FINANCING_INVENTORY:
        token = cycle.hops[0].token_in if cycle.hops else "the input token"
        return (
            f"TransferFailed: executor {executor} holds less than {cycle.amount_in} of {token} "
            "(an inventory-financed cycle spends the executor's own balance; deposit into it first)"
        )
    return reason
