"""Calldata and event decoding for the repo's Executor contract (contracts/src/Executor.sol)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain.contracts import load_artifact

# Executor.Hop.kind: what the hop's pool is.
HOP_V2 = 0  # a Uniswap V2-style pair: paid up front, amounts from its reserves and fee_bps
HOP_V3 = 1  # a Uniswap V3 pool of an allowed V3 factory: paid in its swap callback, its own fee
HOP_KINDS = (HOP_V2, HOP_V3)

_HOPS = "(address,bool,uint16,uint8)[]"
EXECUTE_SIG = f"execute(address,uint256,{_HOPS[:-2]}[],uint256)"
EXECUTE_FLASH_SIG = f"executeFlash(address,address,uint256,{_HOPS[:-2]}[],uint256)"
EXECUTE_FLASH_LOAN_SIG = f"executeFlashLoan(address,address,uint256,{_HOPS[:-2]}[],uint256)"
EXECUTE_FLASH_V3_SIG = f"executeFlashV3(address,address,uint256,{_HOPS[:-2]}[],uint256)"
EXECUTE_FLASH_BALANCER_SIG = f"executeFlashBalancer(address,uint256,{_HOPS[:-2]}[],uint256)"
SET_BALANCER_VAULT_SIG = "setBalancerVault(address)"
EXECUTED_TOPIC = "0x" + keccak(text="Executed(address,uint256,uint256,bool)").hex()


SET_V3_FACTORY_SIG = "setV3Factory(address,bool)"


@dataclass(frozen=True)
class ExecutorHop:
    """One ``Executor.Hop``: ``pair`` is the V2 pair or V3 pool (``kind``); ``fee_bps`` matters
    for V2 only (a V3 pool charges its own fee)."""

    pair: str
    zero_for_one: bool
    fee_bps: int = 30
    kind: int = HOP_V2

    def __post_init__(self) -> None:
        if self.kind not in HOP_KINDS:
            raise ValueError(f"unknown executor hop kind {self.kind!r}")


@dataclass(frozen=True)
class Executed:
    token: str
    amount_in: int
    profit: int
    flash: bool


def _hops(hops: Sequence[ExecutorHop]) -> list[tuple[str, bool, int, int]]:
    return [(to_checksum_address(h.pair), h.zero_for_one, h.fee_bps, h.kind) for h in hops]


def encode_set_v3_factory(factory: str, allowed: bool) -> bytes:
    """``setV3Factory`` (owner only): allow or disallow the pools of a Uniswap V3 factory."""
    return keccak(text=SET_V3_FACTORY_SIG)[:4] + encode(["address", "bool"], [factory, allowed])


def encode_execute(token_in: str, amount_in: int, hops: Sequence[ExecutorHop], min_profit: int) -> bytes:
    """``execute``: cycle with the contract's own ``token_in``."""
    args = encode(["address", "uint256", _HOPS, "uint256"], [token_in, amount_in, _hops(hops), min_profit])
    return keccak(text=EXECUTE_SIG)[:4] + args


def encode_execute_flash(
    factory: str, token_in: str, amount_in: int, hops: Sequence[ExecutorHop], min_profit: int
) -> bytes:
    """``executeFlash``: capital-free cycle, flash-borrowing from the first hop's pair of ``factory``."""
    args = encode(
        ["address", "address", "uint256", _HOPS, "uint256"],
        [factory, token_in, amount_in, _hops(hops), min_profit],
    )
    return keccak(text=EXECUTE_FLASH_SIG)[:4] + args


def encode_execute_flash_loan(
    pool: str, token_in: str, amount_in: int, hops: Sequence[ExecutorHop], min_profit: int
) -> bytes:
    """``executeFlashLoan``: capital-free cycle financed by the Aave V3 ``pool``'s flashLoanSimple of
    ``amount_in`` of ``token_in``; the profit the contract keeps is net of the pool's premium."""
    args = encode(
        ["address", "address", "uint256", _HOPS, "uint256"],
        [pool, token_in, amount_in, _hops(hops), min_profit],
    )
    return keccak(text=EXECUTE_FLASH_LOAN_SIG)[:4] + args


def encode_execute_flash_v3(
    pool: str, token_in: str, amount_in: int, hops: Sequence[ExecutorHop], min_profit: int
) -> bytes:
    """``executeFlashV3``: capital-free cycle financed by the Uniswap V3 ``pool``'s flash of
    ``amount_in`` of ``token_in`` (a genuine pool of a factory the executor allows, none of the
    cycle's hops); the profit the contract keeps is net of the pool's fee."""
    args = encode(
        ["address", "address", "uint256", _HOPS, "uint256"],
        [to_checksum_address(pool), token_in, amount_in, _hops(hops), min_profit],
    )
    return keccak(text=EXECUTE_FLASH_V3_SIG)[:4] + args


def encode_set_balancer_vault(vault: str) -> bytes:
    """``setBalancerVault`` (owner only): the vault ``executeFlashBalancer`` borrows from and
    ``receiveFlashLoan`` accepts."""
    return keccak(text=SET_BALANCER_VAULT_SIG)[:4] + encode(["address"], [vault])


def encode_execute_flash_balancer(
    token_in: str, amount_in: int, hops: Sequence[ExecutorHop], min_profit: int
) -> bytes:
    """``executeFlashBalancer``: capital-free cycle financed by a flashLoan of ``amount_in`` of
    ``token_in`` from the Balancer V2 vault the executor is configured with (``setBalancerVault``);
    the profit the contract keeps is net of the vault's fee."""
    args = encode(["address", "uint256", _HOPS, "uint256"], [token_in, amount_in, _hops(hops), min_profit])
    return keccak(text=EXECUTE_FLASH_BALANCER_SIG)[:4] + args


def decode_executed(receipt: dict[str, Any], executor: str) -> Executed | None:
    """The ``Executed`` event the executor at ``executor`` emitted in ``receipt``, if any."""
    executor = executor.lower()
    for log in receipt.get("logs", []):
        if log["address"].lower() == executor and log["topics"] and log["topics"][0] == EXECUTED_TOPIC:
            token = to_checksum_address(bytes.fromhex(log["topics"][1][2:])[12:])
            amount_in, profit, flash = decode(["uint256", "uint256", "bool"], bytes.fromhex(log["data"][2:]))
            return Executed(token, int(amount_in), int(profit), bool(flash))
    return None


def executor_abi() -> list[dict[str, Any]]:
    return load_artifact("Executor").abi


# --- liquidations ------------------------------------------------------------------------------

_LIQUIDATION = f"(address,address,address,address,uint256,bool,{_HOPS},uint256)"
LIQUIDATE_SIG = f"liquidate({_LIQUIDATION})"
LIQUIDATE_FLASH_LOAN_SIG = f"liquidateFlashLoan({_LIQUIDATION})"
LIQUIDATE_FLASH_SWAP_SIG = f"liquidateFlashSwap(address,{_LIQUIDATION})"
LIQUIDATED_TOPIC = (
    "0x" + keccak(text="Liquidated(address,address,address,uint256,uint256,int256,uint8)").hex()
)
# The Liquidated event's financing codes.
FINANCING_CODES = {"inventory": 0, "flash_loan": 1, "flash_swap": 2}


@dataclass(frozen=True)
class ExecutorLiquidation:
    """One ``Executor.Liquidation``: ``liquidationCall`` on ``pool`` and the collateral's sale
    along ``swap`` (empty: kept); ``min_profit`` is in the debt token when selling, the minimum
    collateral received when keeping it."""

    pool: str
    collateral: str
    debt: str
    borrower: str
    debt_to_cover: int
    receive_a_token: bool
    swap: tuple[ExecutorHop, ...]
    min_profit: int

    def _tuple(self) -> tuple[Any, ...]:
        return (
            to_checksum_address(self.pool),
            to_checksum_address(self.collateral),
            to_checksum_address(self.debt),
            to_checksum_address(self.borrower),
            self.debt_to_cover,
            self.receive_a_token,
            _hops(self.swap),
            self.min_profit,
        )


@dataclass(frozen=True)
class Liquidated:
    borrower: str
    collateral: str
    debt: str
    debt_repaid: int
    collateral_received: int
    # The executor's debt-token balance change (negative when the collateral is kept).
    profit: int
    financing: int


def encode_liquidate(liquidation: ExecutorLiquidation, financing: str, factory: str = "") -> bytes:
    """``liquidate`` (inventory), ``liquidateFlashLoan`` (the pool's flashLoanSimple) or
    ``liquidateFlashSwap`` (a flash swap on the last hop's pair of ``factory``)."""
    if financing == "inventory":
        return keccak(text=LIQUIDATE_SIG)[:4] + encode([_LIQUIDATION], [liquidation._tuple()])
    if financing == "flash_loan":
        return keccak(text=LIQUIDATE_FLASH_LOAN_SIG)[:4] + encode([_LIQUIDATION], [liquidation._tuple()])
    if financing == "flash_swap":
        args = encode(["address", _LIQUIDATION], [to_checksum_address(factory), liquidation._tuple()])
        return keccak(text=LIQUIDATE_FLASH_SWAP_SIG)[:4] + args
    raise ValueError(f"unknown liquidation financing {financing!r}")


def decode_liquidated(receipt: dict[str, Any], executor: str) -> Liquidated | None:
    """The ``Liquidated`` event the executor at ``executor`` emitted in ``receipt``, if any."""
    executor = executor.lower()
    for log in receipt.get("logs", []):
        if log["address"].lower() == executor and log["topics"] and log["topics"][0] == LIQUIDATED_TOPIC:
            borrower, collateral, debt = (
                to_checksum_address(bytes.fromhex(topic[2:])[12:]) for topic in log["topics"][1:4]
            )
            repaid, received, profit, financing = decode(
                ["uint256", "uint256", "int256", "uint8"], bytes.fromhex(log["data"][2:])
            )
            return Liquidated(
                borrower, collateral, debt, int(repaid), int(received), int(profit), int(financing)
            )
    return None


# --- leverage protection -----------------------------------------------------------------------

_DELEVERAGE = f"(address,address,address,address,uint256,uint256,{_HOPS},uint256)"
DELEVERAGE_SIG = f"deleverage({_DELEVERAGE})"
DELEVERAGED_TOPIC = (
    "0x" + keccak(text="Deleveraged(address,address,address,uint256,uint256,uint256,uint256)").hex()
)


@dataclass(frozen=True)
class ExecutorDeleverage:
    """One ``Executor.Deleverage``: a flash loan of ``repay`` of ``debt`` repays ``account``'s debt,
    ``collateral_amount`` of its aTokens (approved to the executor) are withdrawn and sold along
    ``swap`` (empty only when the collateral is the debt asset) to repay the loan; the account's
    health factor must end at or above ``min_health_factor`` (WAD)."""

    pool: str
    account: str
    collateral: str
    debt: str
    repay: int
    collateral_amount: int
    swap: tuple[ExecutorHop, ...]
    min_health_factor: int

    def _tuple(self) -> tuple[Any, ...]:
        return (
            to_checksum_address(self.pool),
            to_checksum_address(self.account),
            to_checksum_address(self.collateral),
            to_checksum_address(self.debt),
            self.repay,
            self.collateral_amount,
            _hops(self.swap),
            self.min_health_factor,
        )


@dataclass(frozen=True)
class Deleveraged:
    account: str
    collateral: str
    debt: str
    repaid: int
    collateral_withdrawn: int
    # What the sale brought beyond the loan and its premium (sent to the account).
    surplus: int
    # The account's health factor after, as the pool's getUserAccountData reported it.
    health_factor: int


def encode_deleverage(deleverage: ExecutorDeleverage) -> bytes:
    return keccak(text=DELEVERAGE_SIG)[:4] + encode([_DELEVERAGE], [deleverage._tuple()])


def decode_deleveraged(receipt: dict[str, Any], executor: str) -> Deleveraged | None:
    """The ``Deleveraged`` event the executor at ``executor`` emitted in ``receipt``, if any."""
    executor = executor.lower()
    for log in receipt.get("logs", []):
        if log["address"].lower() == executor and log["topics"] and log["topics"][0] == DELEVERAGED_TOPIC:
            account, collateral, debt = (
                to_checksum_address(bytes.fromhex(topic[2:])[12:]) for topic in log["topics"][1:4]
            )
            repaid, withdrawn, surplus, hf = decode(
                ["uint256", "uint256", "uint256", "uint256"], bytes.fromhex(log["data"][2:])
            )
            return Deleveraged(account, collateral, debt, int(repaid), int(withdrawn), int(surplus), int(hf))
    return None


BACKRUN_SIG = f"backrun(address,uint256,{_HOPS[:-2]}[],uint256,(address,uint16,uint256,uint256,uint256))"
BACKRUN_TOPIC = "0x" + keccak(text="Backrun(address,address,uint256,uint256,uint256)").hex()


@dataclass(frozen=True)
class Backrun:
    token: str
    refund_to: str
    profit: int
    # What refund_to received: its share of the profit plus gas_refund.
    refund: int
    gas_refund: int


@dataclass(frozen=True)
class BackrunRefund:
    """Who a backrun refunds: ``bps`` of its profit, and (gasless, when the cycle's token is the
    wrapped native coin) the user's ``gas_used`` at min(max_fee, basefee + tip) of the block."""

    to: str
    bps: int
    gas_used: int = 0
    max_fee: int = 0
    tip: int = 0


def encode_backrun(
    token_in: str, amount_in: int, hops: Sequence[ExecutorHop], min_profit: int, refund: BackrunRefund
) -> bytes:
    """``backrun``: a cycle from inventory right after a user's transaction, refunding the user in
    ``token_in`` in the same transaction."""
    args = encode(
        ["address", "uint256", _HOPS, "uint256", "(address,uint16,uint256,uint256,uint256)"],
        [
            token_in,
            amount_in,
            _hops(hops),
            min_profit,
            (to_checksum_address(refund.to), refund.bps, refund.gas_used, refund.max_fee, refund.tip),
        ],
    )
    return keccak(text=BACKRUN_SIG)[:4] + args


def decode_backrun(receipt: dict[str, Any], executor: str) -> Backrun | None:
    """The ``Backrun`` event the executor at ``executor`` emitted in ``receipt``, if any."""
    executor = executor.lower()
    for log in receipt.get("logs", []):
        if log["address"].lower() == executor and log["topics"] and log["topics"][0] == BACKRUN_TOPIC:
            token = to_checksum_address(bytes.fromhex(log["topics"][1][2:])[12:])
            refund_to = to_checksum_address(bytes.fromhex(log["topics"][2][2:])[12:])
            profit, refund, gas = decode(["uint256", "uint256", "uint256"], bytes.fromhex(log["data"][2:]))
            return Backrun(token, refund_to, int(profit), int(refund), int(gas))
    return None
