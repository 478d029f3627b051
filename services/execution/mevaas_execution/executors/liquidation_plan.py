"""The liquidation executor's pure part: the action checked and turned into the executor
contract's call (``Executor.liquidate`` / ``liquidateFlashLoan`` / ``liquidateFlashSwap``), and
why a simulation reverted, told apart by who can do something about it."""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import decode
from eth_utils.address import is_address, to_checksum_address

from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.executor import ExecutorHop, ExecutorLiquidation, encode_liquidate
from mevaas_chain.registry import ChainConfig
from mevaas_execution.domain import planning
from mevaas_execution.domain import statuses as st
from mevaas_execution.domain.planning import BPS, Limits, PlanError

FINANCING_NAMES = {
    events_pb2.FINANCING_INVENTORY: "inventory",
    events_pb2.FINANCING_FLASH_LOAN: "flash_loan",
    events_pb2.FINANCING_FLASH_SWAP: "flash_swap",
}
MAX_SWAP_HOPS = 3
ERROR_STRING = bytes.fromhex("08c379a0")

# Aave V3 (Errors.sol) reasons that mean the position is no longer there to liquidate: someone
# repaid, topped up or liquidated it first, or prices moved it back over 1. Nobody's fault.
POSITION_GONE = {
    "45": "health factor not below threshold",
    "46": "the collateral cannot be liquidated",
    "47": "the borrower has no debt in this asset",
    "34": "the borrower's collateral balance is 0",
}


@dataclass(frozen=True, slots=True)
class LiquidationPlan:
    call: ExecutorLiquidation
    financing: str
    factory: str
    calldata: bytes
    # When the collateral is kept (no swap): realised profit cannot be told in one token.
    keeps_collateral: bool


def _int(text: str, field: str) -> int:
    try:
        value = int(text or "0")
    except ValueError:
        raise PlanError(f"liquidation.{field} {text!r} is not an integer") from None
    if value <= 0:
        raise PlanError(f"liquidation.{field} must be positive")
    return value


def _address(text: str, field: str) -> str:
    if not is_address(text):
        raise PlanError(f"liquidation.{field} {text!r} is not an address")
    return to_checksum_address(text)


def swap_hops(action: events_pb2.LiquidationAction) -> tuple[ExecutorHop, ...]:
    """The collateral's route as executor hops: 1-3 pools from the collateral to the debt asset."""
    hops = action.collateral_swap
    if len(hops) > MAX_SWAP_HOPS:
        raise PlanError(f"liquidation.collateral_swap has {len(hops)} hops, at most {MAX_SWAP_HOPS}")
    token = action.collateral_asset.address.lower()
    out: list[ExecutorHop] = []
    for index, hop in enumerate(hops):
        if not is_address(hop.pool) or hop.token_in.lower() != token or not is_address(hop.token_out):
            raise PlanError(f"liquidation.collateral_swap[{index}] does not continue the route")
        out.append(planning.executor_hop(hop, f"liquidation.collateral_swap[{index}]"))
        token = hop.token_out.lower()
    if hops and token != action.debt_asset.address.lower():
        raise PlanError("liquidation.collateral_swap does not end in the debt asset")
    return tuple(out)


def min_profit(opportunity: events_pb2.Opportunity, expected_gross: int, limits: Limits, keeps: bool) -> int:
    """The executor's floor: selling, the expected profit less the tolerated slippage (at least 1
    wei: a liquidation must never lose); keeping, the expected collateral less the slippage."""
    if keeps:
        expected = int(opportunity.liquidation.expected_collateral or 0)
        return max(1, expected * (BPS - limits.max_slippage_bps) // BPS)
    return planning.min_profit_on_chain(expected_gross, limits)


def plan_call(
    opportunity: events_pb2.Opportunity, chain: ChainConfig, expected_gross: int, limits: Limits
) -> LiquidationPlan:
    action = opportunity.liquidation
    pool = _address(action.pool, "pool")
    configured = chain.contracts.get("aave_pool")
    if configured is None or configured.lower() != pool.lower():
        # The executor approves the pool to pull the debt: only the chain's own market may.
        raise PlanError(f"liquidation.pool {pool} is not chain {chain.chain_id}'s Aave pool ({configured})")
    financing = FINANCING_NAMES.get(action.financing)
    if financing is None:
        raise PlanError("liquidation.financing must be INVENTORY, FLASH_LOAN or FLASH_SWAP")
    hops = swap_hops(action)
    if action.receive_a_token and hops:
        raise PlanError("liquidation.receive_a_token keeps aTokens, which collateral_swap cannot sell")
    if financing != "inventory" and not hops:
        raise PlanError(f"a {financing}-financed liquidation needs a collateral_swap to repay it")
    factory = ""
    if financing == "flash_swap":
        planning.require_v2_lender(
            action.collateral_swap[-1], f"liquidation.collateral_swap[{len(hops) - 1}]"
        )
        try:
            factory = chain.dex(action.collateral_swap[-1].dex).factory
        except KeyError as exc:
            raise PlanError(str(exc)) from None
    keeps = not hops
    call = ExecutorLiquidation(
        pool=pool,
        collateral=_address(action.collateral_asset.address, "collateral_asset"),
        debt=_address(action.debt_asset.address, "debt_asset"),
        borrower=_address(action.borrower, "borrower"),
        debt_to_cover=_int(action.debt_to_cover, "debt_to_cover"),
        receive_a_token=action.receive_a_token,
        swap=hops,
        min_profit=min_profit(opportunity, expected_gross, limits, keeps),
    )
    if call.collateral == call.debt:
        raise PlanError("liquidation.collateral_asset is the debt asset")
    return LiquidationPlan(call, financing, factory, encode_liquidate(call, financing, factory), keeps)


def _aave_reason(data: bytes) -> str | None:
    if data[:4] != ERROR_STRING:
        return None
    try:
        (text,) = decode(["string"], data[4:])
    except Exception:
        return None
    return str(text)


_EXECUTOR_ERRORS = {
    abi.selector("BadPath()"): "BadPath: the route does not lead from the collateral to the debt asset",
    abi.selector("FactoryNotAllowed()"): "FactoryNotAllowed: the DEX factory was not allowed at deployment",
    abi.selector("NotGenuinePair()"): "NotGenuinePair: a flash callback came from a non-pair",
    abi.selector("NotGenuineLender()"): "NotGenuineLender: a flash-loan callback came from elsewhere",
    abi.selector("NotOwner()"): "NotOwner: the wallet does not own this executor contract",
    abi.selector("TransferFailed()"): "TransferFailed",
}
_INSUFFICIENT_PROFIT = abi.selector("InsufficientProfit(uint256,uint256)")


def explain_revert(data: object, borrower: str) -> tuple[str, str, bool]:
    """(status, reason, is the tenant's to fix) for a reverted liquidation simulation."""
    text = str(data or "").lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    reason = _aave_reason(raw)
    if reason is not None and reason in POSITION_GONE:
        return (
            st.DROPPED,
            f"borrower {borrower} is no longer liquidatable: {POSITION_GONE[reason]} (Aave error {reason})",
            False,
        )
    if raw[:4] == _INSUFFICIENT_PROFIT:
        profit, floor = decode(["uint256", "uint256"], raw[4:68])
        return st.DROPPED, f"InsufficientProfit: the liquidation would make {profit}, below {floor}", False
    if reason is not None:
        return st.FAILED, f"simulation reverted: Aave error {reason}", True
    known = _EXECUTOR_ERRORS.get(raw[:4])
    return st.FAILED, f"simulation reverted: {known or '0x' + text}", True
