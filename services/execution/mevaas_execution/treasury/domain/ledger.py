"""Pure treasury rules: which movements a receipt books, and how a holding reconciles.

A holding is one (chain, holder, token) balance; the token '' is the chain's native coin. After a
receipt at block N the treasury reads every holding of the wallet and its executor at N-1 and N:
the difference is what that block moved, booked once per holding and block (two receipts in one
block share one delta, so nothing is counted twice). A holding seen for the first time opens with
its balance at N-1. The ledger of a holding is therefore its opening plus every booked block
delta, and ``chain - ledger`` is exactly what moved outside the platform's transactions (a hand
transfer, a reset devnet): that is the drift the reconciliation reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

NATIVE = ""


class HolderKind(StrEnum):
    WALLET = "wallet"
    EXECUTOR = "executor"


class MovementKind(StrEnum):
    OPENING = "opening"
    # What an action moved (an arbitrage's profit, a swap's legs), net of the wallet's gas.
    EXECUTION = "execution"
    GAS = "gas"
    WITHDRAWAL = "withdrawal"
    DEPOSIT = "deposit"


class Reconciliation(StrEnum):
    MATCHED = "matched"
    DRIFT = "drift"


# The action kinds whose block delta is not an execution's: the treasury's own transfers.
KIND_OF_ACTION: Mapping[str, MovementKind] = {
    "withdrawal": MovementKind.WITHDRAWAL,
    "deposit": MovementKind.DEPOSIT,
}


@dataclass(frozen=True, slots=True)
class Holding:
    chain_id: int
    holder_address: str
    holder_kind: HolderKind
    wallet_address: str
    token: str


@dataclass(frozen=True, slots=True)
class Movement:
    holding: Holding
    kind: MovementKind
    amount: int
    reference: str
    block_number: int


def receipt_movements(
    before: Mapping[Holding, int],
    after: Mapping[Holding, int],
    *,
    opened_at: Mapping[Holding, int],
    action_kind: str,
    gas_cost_wei: int,
    reference: str,
    block_number: int,
) -> list[Movement]:
    """The movements one receipt's block books: openings for holdings not seen before, the gas the
    wallet paid on its native balance, and the rest of each holding's delta. ``opened_at`` is the
    block each known holding opened at: a block at or before it is already in the opening (a later
    receipt was booked first), so it books nothing."""
    kind = KIND_OF_ACTION.get(action_kind, MovementKind.EXECUTION)
    out: list[Movement] = []
    for holding, balance in after.items():
        previous = before[holding]
        opened = opened_at.get(holding)
        if opened is None:
            out.append(Movement(holding, MovementKind.OPENING, previous, reference, block_number - 1))
        elif opened >= block_number:
            continue
        delta = balance - previous
        if holding.holder_kind is HolderKind.WALLET and holding.token == NATIVE and gas_cost_wei:
            out.append(Movement(holding, MovementKind.GAS, -gas_cost_wei, reference, block_number))
            delta += gas_cost_wei
        if delta:
            out.append(Movement(holding, kind, delta, reference, block_number))
    return out


def reconcile(chain_amount: int, ledger_amount: int) -> Reconciliation:
    return Reconciliation.MATCHED if chain_amount == ledger_amount else Reconciliation.DRIFT


def newly_drifted(previous: Reconciliation | None, now: Reconciliation) -> bool:
    """A drift alert is raised once, when a holding starts drifting, not at every check."""
    return now is Reconciliation.DRIFT and previous is not Reconciliation.DRIFT


def human_amount(amount: int, decimals: int) -> str:
    """An exact decimal string of base units (no float on the way)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals) if decimals else (abs(amount), 0)
    if not decimals or not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"
