"""An order-flow hint for a swap with a "never" deadline (type(uint256).max, what most wallets
send) must pass the bus's field rules, or every follower drops it and nothing backruns it."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from mevaas_chain.rawtx import DecodedTransaction
from mevaas_chain.swaps import decode_router_swap
from mevaas_core.message_rules import BIGINT_MAX, message_violations
from mevaas_execution.protection.auction import Lot, hint_message
from mevaas_strategy.pending import swap_message

ROUTER = "0x" + "11" * 20
PATH = ["0x" + "22" * 20, "0x" + "33" * 20]
SELECTOR = keccak(text="swapExactTokensForTokens(uint256,uint256,address[],address,uint256)")[:4]


def calldata(deadline: int) -> bytes:
    return SELECTOR + encode(
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [10**18, 1, PATH, "0x" + "44" * 20, deadline],
    )


def lot() -> Lot:
    return Lot(
        tenant_id="t",
        chain_id=31337,
        tx_hash="0x" + "ab" * 32,
        raw=b"",
        sender="0x" + "55" * 20,
        refund_bps=9_000,
        gas_used=120_000,
        max_fee=10**9,
        tip=10**8,
        gas_cost_wei=10**14,
        max_block=9,
    )


def swap_tx(deadline: int) -> DecodedTransaction:
    return DecodedTransaction(
        chain_id=31337,
        nonce=0,
        sender="0x" + "55" * 20,
        tx_hash="0x" + "ab" * 32,
        to=ROUTER,
        data=calldata(deadline),
    )


def test_a_never_deadline_hint_passes_the_bus_rules() -> None:
    message = hint_message(lot(), swap_tx(2**256 - 1), "amounts", ["0x" + "66" * 20])
    assert message.swap.deadline == BIGINT_MAX
    assert message_violations(message) == []


def test_an_ordinary_deadline_is_carried_as_is() -> None:
    assert hint_message(lot(), swap_tx(1_800_000_000), "amounts", []).swap.deadline == 1_800_000_000


def test_a_pending_swap_with_a_never_deadline_passes_the_bus_rules() -> None:
    swap = decode_router_swap(ROUTER, 0, calldata(2**256 - 1))
    assert swap is not None
    message = swap_message(swap)
    assert message.deadline == BIGINT_MAX and message_violations(message) == []
