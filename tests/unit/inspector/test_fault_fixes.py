"""The reference inspector's known faults, each shown on a minimal synthetic trace set: the
baseline (bench/bench_inspector.py, which follows the reference's rules) gets it wrong, the
inspector gets it right."""

from __future__ import annotations

from types import ModuleType

import pytest

from mevaas_inspector import inspect_block
from tests.unit.inspector.synth import WETH, Block, addr, calldata, transfer, transfer_from

EOA = addr(0xE0A)
BOT = addr(0xB07)
VICTIM = addr(0x71C)
POOL_P, POOL_Q, POOL_R = addr(0x1001), addr(0x1002), addr(0x1003)
TOKEN_X, TOKEN_Y = addr(0x2001), addr(0x2002)


@pytest.mark.parametrize(
    ("sold", "received", "prorated", "baseline"),
    [
        # Backrun sells half of what the frontrun bought: half the frontrun's cost is charged.
        (500, 6_000, 6_000 - 5_000, 6_000 - 10_000),
        # Backrun sells twice as much (inventory too): only the matched half of its proceeds count.
        (2_000, 24_000, 12_000 - 10_000, 24_000 - 10_000),
    ],
)
def test_sandwich_profit_prorated_when_backrun_size_differs(
    naive_baseline: ModuleType, sold: int, received: int, prorated: int, baseline: int
) -> None:
    block = Block()
    block.tx(0).call([], EOA, BOT, "0x12345678").v2_swap([0], BOT, POOL_P, WETH, 10_000, TOKEN_X, 1_000)
    block.tx(1).call([], EOA, VICTIM, "0x12345678").v2_swap([0], VICTIM, POOL_P, WETH, 5_000, TOKEN_X, 400)
    block.tx(2).call([], EOA, BOT, "0x12345678").v2_swap([0], BOT, POOL_P, TOKEN_X, sold, WETH, received)

    result = inspect_block(block.raw())
    [sandwich] = result.sandwiches
    assert sandwich.sandwicher_address == BOT
    assert [v.from_address for v in sandwich.sandwiched_swaps] == [VICTIM]
    assert sandwich.profit_token_address == WETH
    assert sandwich.profit_amount == prorated
    assert sandwich.unprorated_profit_amount == baseline

    [naive] = naive_baseline.naive_inspect(block.raw()).sandwiches
    assert naive["profit"] == baseline != prorated


def test_swaps_in_and_out_of_the_same_pool_are_not_an_arbitrage(naive_baseline: ModuleType) -> None:
    # WETH -> X on P, X -> Y -> X in and out of Q (losing 5%), X -> WETH on R.
    block = Block()
    tx = block.tx(0).call([], EOA, BOT, "0x12345678")
    tx.v2_swap([0], BOT, POOL_P, WETH, 100, TOKEN_X, 200)
    tx.v2_swap([2], BOT, POOL_Q, TOKEN_X, 200, TOKEN_Y, 50)
    tx.v2_swap([4], BOT, POOL_Q, TOKEN_Y, 50, TOKEN_X, 190)
    tx.v2_swap([6], BOT, POOL_R, TOKEN_X, 190, WETH, 103)

    result = inspect_block(block.raw())
    assert len(result.swaps) == 4
    assert result.arbitrages == ()

    [naive] = naive_baseline.naive_inspect(block.raw()).arbitrages
    assert [s.pool for s in naive["swaps"]] == [POOL_P, POOL_Q, POOL_Q, POOL_R]


def test_distinct_pools_still_make_an_arbitrage() -> None:
    block = Block()
    tx = block.tx(0).call([], EOA, BOT, "0x12345678")
    tx.v2_swap([0], BOT, POOL_P, WETH, 100, TOKEN_X, 200)
    tx.v2_swap([2], BOT, POOL_Q, TOKEN_X, 200, TOKEN_Y, 50)
    tx.v2_swap([4], BOT, POOL_R, TOKEN_Y, 50, WETH, 103)
    [arb] = inspect_block(block.raw()).arbitrages
    assert arb.profit_amount == 3 and len(arb.swaps) == 3


def test_flash_loan_fee_is_charged_against_arbitrage_profit(naive_baseline: ModuleType) -> None:
    lending_pool, a_weth = addr(0xAA7E), addr(0xAA7F)
    loan, premium = 1_000_000, 900
    block = Block()
    tx = block.tx(0).call([], EOA, BOT, "0x12345678")
    tx.call([0], BOT, lending_pool, calldata("0xab9c4b5d", BOT, 0xE0, 0x120, 0x160, BOT, 0x1A0, 0))
    tx.call([0, 0], a_weth, WETH, transfer(BOT, loan))
    tx.call([0, 1], lending_pool, BOT, "0x920f5c84")
    tx.v2_swap([0, 1, 0], BOT, POOL_P, WETH, loan, TOKEN_X, 500)
    tx.v2_swap([0, 1, 2], BOT, POOL_Q, TOKEN_X, 500, WETH, 1_010_000)
    tx.call([0, 2], lending_pool, WETH, transfer_from(BOT, a_weth, loan + premium))

    result = inspect_block(block.raw())
    [flash] = result.flash_loans
    assert (flash.lender, flash.borrower, flash.token_address) == (a_weth, BOT, WETH)
    assert (flash.amount, flash.fee) == (loan, premium)
    [arb] = result.arbitrages
    assert arb.gross_profit_amount == 10_000
    assert arb.flash_loan_fee == premium
    assert arb.profit_amount == 10_000 - premium

    [naive] = naive_baseline.naive_inspect(block.raw()).arbitrages
    assert naive["profit"] == 10_000 > arb.profit_amount


def _compound_liquidation_block(top_level_error: str | None) -> Block:
    c_ether = "0x4ddc2d193948926d02f9b1fe9e1daa0718270ed5"
    c_usdc = "0x39aa39c021dfbae8fac545936693ac917d5e7563"
    borrower = addr(0xD0D0)
    block = Block()
    tx = block.tx(0).call([], EOA, BOT, "0x12345678", error=top_level_error)
    tx.call([0], BOT, c_ether, calldata("0xaae40a2a", borrower, c_usdc), value=5 * 10**17)
    tx.call([0, 0], c_ether, c_usdc, calldata("0xb2a02ff1", BOT, borrower, 777))
    return block


def test_reverted_liquidation_is_not_a_liquidation(naive_baseline: ModuleType) -> None:
    # The node marks only the top frame "Reverted"; the liquidation inside it was undone too.
    block = _compound_liquidation_block("Reverted")
    assert inspect_block(block.raw()).liquidations == ()
    assert len(naive_baseline.naive_inspect(block.raw()).liquidations) == 1


def test_successful_liquidation_of_the_same_shape_is_reported() -> None:
    [li] = inspect_block(_compound_liquidation_block(None).raw()).liquidations
    assert (li.liquidator_user, li.debt_purchase_amount, li.received_amount) == (BOT, 5 * 10**17, 777)
    assert li.protocol == "compound_v2"


AAVE_V3_POOL = "0x87870bca3f3fd6335c3f4ce8392d69350b4fa4e2"
A_WETH = addr(0xAE7)
TREASURY = addr(0x7E5)


def _aave_liquidation_block(*, receive_a_token: bool, pays_eth: bool) -> Block:
    """BOT liquidates a WETH-collateral position repaying 1_000 of TOKEN_X."""
    borrower = addr(0xD0D1)
    block = Block()
    tx = block.tx(0).call([], EOA, BOT, "0x12345678")
    tx.call(
        [0], BOT, AAVE_V3_POOL, calldata("0x00a718a9", WETH, TOKEN_X, borrower, 1_000, int(receive_a_token))
    )
    tx.call([0, 0], AAVE_V3_POOL, TOKEN_X, transfer_from(BOT, addr(0xAE8), 1_000))
    if receive_a_token:
        # transferOnLiquidation(from, to, value): the fee to the treasury first, then the liquidator.
        tx.call([0, 1], AAVE_V3_POOL, A_WETH, calldata("0xf866c319", borrower, TREASURY, 5))
        tx.call([0, 2], AAVE_V3_POOL, A_WETH, calldata("0xf866c319", borrower, BOT, 1_045))
    elif pays_eth:
        tx.call([0, 1], AAVE_V3_POOL, BOT, "0x", value=1_045)
    else:
        tx.call([0, 1], A_WETH, WETH, transfer(BOT, 1_045))
    return block


@pytest.mark.parametrize(
    ("receive_a_token", "pays_eth", "token"),
    [
        (False, False, WETH),
        (False, True, "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"),
        (True, False, A_WETH),
    ],
)
def test_aave_liquidation_received_in_underlying_eth_or_atokens(
    receive_a_token: bool, pays_eth: bool, token: str
) -> None:
    [li] = inspect_block(
        _aave_liquidation_block(receive_a_token=receive_a_token, pays_eth=pays_eth).raw()
    ).liquidations
    assert (li.debt_token_address, li.debt_purchase_amount) == (TOKEN_X, 1_000)
    assert (li.received_token_address, li.received_amount) == (token, 1_045)
