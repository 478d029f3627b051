"""Pure rules of the treasury's own transfers: which call moves the funds, and which destinations
a withdrawal may use."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from mevaas_chain import abi
from mevaas_execution.treasury.domain.ledger import NATIVE

# Plenty for an ERC-20 transfer or the executor's withdraw (~30-60k); unused gas is not paid.
TRANSFER_GAS = 150_000


@dataclass(frozen=True, slots=True)
class TransferCall:
    to: str
    data: bytes
    value: int


def withdrawal_call(executor: str, token: str, destination: str, amount: int) -> TransferCall:
    """Executor.withdraw (a token) or withdrawETH (native), both onlyOwner: the wallet signs."""
    if token == NATIVE:
        return TransferCall(executor, abi.encode_call("withdrawETH(address,uint256)", destination, amount), 0)
    return TransferCall(
        executor, abi.encode_call("withdraw(address,address,uint256)", token, destination, amount), 0
    )


def deposit_call(executor: str, token: str, amount: int) -> TransferCall:
    """An ERC-20 transfer from the wallet to its executor, or plain value (the executor receives)."""
    if token == NATIVE:
        return TransferCall(executor, b"", amount)
    return TransferCall(token, abi.encode_call("transfer(address,uint256)", executor, amount), 0)


def destination_allowed(destination: str, wallet: str, allowlist: Set[str]) -> bool:
    """The wallet itself always; any other address only when the tenant's risk limits list it."""
    return destination.lower() == wallet.lower() or destination.lower() in allowlist
