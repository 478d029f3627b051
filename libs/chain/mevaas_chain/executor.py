"""Calldata and event decoding for the repo's Executor contract (contracts/src/Executor.sol)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain.contracts import load_artifact

_HOPS = "(address,bool,uint16)[]"
EXECUTE_SIG = f"execute(address,uint256,{_HOPS[:-2]}[],uint256)"
EXECUTE_FLASH_SIG = f"executeFlash(address,address,uint256,{_HOPS[:-2]}[],uint256)"
EXECUTED_TOPIC = "0x" + keccak(text="Executed(address,uint256,uint256,bool)").hex()


@dataclass(frozen=True)
class ExecutorHop:
    pair: str
    zero_for_one: bool
    fee_bps: int = 30


@dataclass(frozen=True)
class Executed:
    token: str
    amount_in: int
    profit: int
    flash: bool


def _hops(hops: Sequence[ExecutorHop]) -> list[tuple[str, bool, int]]:
    return [(to_checksum_address(h.pair), h.zero_for_one, h.fee_bps) for h in hops]


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
