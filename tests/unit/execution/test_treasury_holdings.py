"""Wallet and executor readings side by side per token; executor liveness from its code."""

from __future__ import annotations

from mevaas.execution.v1 import execution_pb2
from mevaas_execution.contracts.liveness import RUNTIME_CODE
from mevaas_execution.treasury.domain.holdings import pair_readings
from mevaas_execution.treasury.domain.ledger import NATIVE, HolderKind, Holding
from mevaas_execution.treasury.holdings import liveness_of

W, E, T = "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20


def test_pairs_keep_wallet_and_executor_balances_apart() -> None:
    holdings = [
        Holding(1, W, HolderKind.WALLET, W, NATIVE),
        Holding(1, W, HolderKind.WALLET, W, T),
        Holding(1, E, HolderKind.EXECUTOR, W, NATIVE),
        Holding(1, E, HolderKind.EXECUTOR, W, T),
    ]
    readings = dict(zip(holdings, [1, 2, 3, 4], strict=True))
    pairs = pair_readings(holdings, readings, {(1, E, T): "drift", (1, W, T): "matched"})
    assert [(p.token, p.wallet_balance, p.executor_balance, p.total, p.executor_address) for p in pairs] == [
        (NATIVE, 1, 3, 4, E),
        (T, 2, 4, 6, E),
    ]
    assert (pairs[1].wallet_reconciliation, pairs[1].executor_reconciliation) == ("matched", "drift")
    assert (pairs[0].wallet_reconciliation, pairs[0].executor_reconciliation) == ("", "")


def test_a_wallet_without_an_executor_has_no_executor_address() -> None:
    holdings = [Holding(1, W, HolderKind.WALLET, W, T)]
    (pair,) = pair_readings(holdings, {holdings[0]: 9}, {})
    assert (pair.executor_address, pair.executor_balance, pair.total) == ("", 0, 9)


def test_liveness_names_missing_and_foreign_code() -> None:
    assert liveness_of(E, 1, RUNTIME_CODE) == (execution_pb2.EXECUTOR_LIVENESS_LIVE, "")
    missing = liveness_of(E, 1, "0x")
    assert missing[0] == execution_pb2.EXECUTOR_LIVENESS_MISSING and "no code" in missing[1]
    foreign = liveness_of(E, 1, "0x6001")
    assert foreign[0] == execution_pb2.EXECUTOR_LIVENESS_FOREIGN and E in foreign[1]
