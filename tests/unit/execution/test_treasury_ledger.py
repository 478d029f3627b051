"""The treasury's pure ledger rules: what a receipt books, and when a holding drifts."""

from __future__ import annotations

from mevaas_execution.treasury.domain.ledger import (
    NATIVE,
    HolderKind,
    Holding,
    MovementKind,
    Reconciliation,
    human_amount,
    newly_drifted,
    receipt_movements,
    reconcile,
)

WALLET = "0x" + "aa" * 20
EXECUTOR = "0x" + "ee" * 20
WETH = "0x" + "11" * 20
W_NATIVE = Holding(1, WALLET, HolderKind.WALLET, WALLET, NATIVE)
X_WETH = Holding(1, EXECUTOR, HolderKind.EXECUTOR, WALLET, WETH)


def test_first_receipt_opens_at_the_previous_block_and_books_gas_and_profit() -> None:
    movements = receipt_movements(
        {W_NATIVE: 10_000, X_WETH: 500},
        {W_NATIVE: 9_000, X_WETH: 800},
        opened_at={},
        action_kind="swap_cycle",
        gas_cost_wei=1_000,
        reference="e1",
        block_number=7,
    )
    got = {(m.holding, m.kind): (m.amount, m.block_number) for m in movements}
    assert got == {
        (W_NATIVE, MovementKind.OPENING): (10_000, 6),
        (W_NATIVE, MovementKind.GAS): (-1_000, 7),
        (X_WETH, MovementKind.OPENING): (500, 6),
        (X_WETH, MovementKind.EXECUTION): (300, 7),
    }
    # opening + movements = the balance after, per holding, to the unit
    for holding, after in ((W_NATIVE, 9_000), (X_WETH, 800)):
        assert sum(m.amount for m in movements if m.holding == holding) == after


def test_wallet_native_residual_beyond_gas_is_the_execution_delta() -> None:
    movements = receipt_movements(
        {W_NATIVE: 10_000},
        {W_NATIVE: 9_500},
        opened_at={W_NATIVE: 3},
        action_kind="swap_cycle",
        gas_cost_wei=1_000,
        reference="e2",
        block_number=9,
    )
    assert [(m.kind, m.amount) for m in movements] == [
        (MovementKind.GAS, -1_000),
        (MovementKind.EXECUTION, 500),
    ]


def test_a_block_already_inside_the_opening_books_nothing() -> None:
    movements = receipt_movements(
        {X_WETH: 1},
        {X_WETH: 2},
        opened_at={X_WETH: 9},
        action_kind="swap_cycle",
        gas_cost_wei=0,
        reference="late",
        block_number=9,
    )
    assert movements == []


def test_withdrawals_and_deposits_are_booked_as_such() -> None:
    for kind, expected in (("withdrawal", MovementKind.WITHDRAWAL), ("deposit", MovementKind.DEPOSIT)):
        (movement,) = receipt_movements(
            {X_WETH: 800},
            {X_WETH: 0},
            opened_at={X_WETH: 1},
            action_kind=kind,
            gas_cost_wei=0,
            reference="w",
            block_number=5,
        )
        assert (movement.kind, movement.amount) == (expected, -800)


def test_reconciliation_and_alert_once() -> None:
    assert reconcile(5, 5) is Reconciliation.MATCHED
    assert reconcile(6, 5) is Reconciliation.DRIFT
    assert newly_drifted(None, Reconciliation.DRIFT)
    assert newly_drifted(Reconciliation.MATCHED, Reconciliation.DRIFT)
    assert not newly_drifted(Reconciliation.DRIFT, Reconciliation.DRIFT)
    assert not newly_drifted(Reconciliation.MATCHED, Reconciliation.MATCHED)


def test_human_amount_is_exact() -> None:
    assert human_amount(22_700_000_000_000_000_001, 18) == "22.700000000000000001"
    assert human_amount(10**18, 18) == "1"
    assert human_amount(-1_500_000, 6) == "-1.5"
    assert human_amount(42, 0) == "42"
