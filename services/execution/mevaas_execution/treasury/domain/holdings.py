"""Pure: a wallet's and its executor's readings of one token, side by side.

Positions show, per (chain, wallet, token), what the wallet holds and what its executor contract
holds separately (profit accrues in the executor), each exactly as read from the chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mevaas_execution.treasury.domain.ledger import HolderKind, Holding


@dataclass(frozen=True, slots=True)
class HoldingPair:
    chain_id: int
    wallet_address: str
    # "" when the wallet has no executor on the chain.
    executor_address: str
    token: str
    wallet_balance: int
    executor_balance: int
    wallet_reconciliation: str
    executor_reconciliation: str

    @property
    def total(self) -> int:
        return self.wallet_balance + self.executor_balance


def pair_readings(
    holdings: Sequence[Holding],
    readings: Mapping[Holding, int],
    statuses: Mapping[tuple[int, str, str], str],
) -> list[HoldingPair]:
    """One pair per (chain, wallet, token) of ``holdings``, in their order; ``statuses`` maps
    (chain, holder, token) to the ledger's reconciliation ("" where the ledger has not opened it)."""
    out: dict[tuple[int, str, str], HoldingPair] = {}
    for holding in holdings:
        key = (holding.chain_id, holding.wallet_address, holding.token)
        pair = out.get(key) or HoldingPair(
            holding.chain_id, holding.wallet_address, "", holding.token, 0, 0, "", ""
        )
        status = statuses.get((holding.chain_id, holding.holder_address, holding.token), "")
        if holding.holder_kind is HolderKind.WALLET:
            pair = HoldingPair(
                pair.chain_id,
                pair.wallet_address,
                pair.executor_address,
                pair.token,
                readings[holding],
                pair.executor_balance,
                status,
                pair.executor_reconciliation,
            )
        else:
            pair = HoldingPair(
                pair.chain_id,
                pair.wallet_address,
                holding.holder_address,
                pair.token,
                pair.wallet_balance,
                readings[holding],
                pair.wallet_reconciliation,
                status,
            )
        out[key] = pair
    return list(out.values())
