"""Inspector coverage beyond pool swaps, on synthetic blocks shaped like the real calls: calldata
encoded from each contract's real function signature (eth_abi), the call tree the contracts make
(the 0x Exchange Proxy's delegatecall into its feature, the token transferFroms, the proxy's
self-calls), and the transfers they move. 0x limit and RFQ orders, 1inch limit-order RFQ fills,
Mooniswap pools (ether on either side), and Cream ERC-20 markets named by their underlying."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from mevaas_inspector import inspect_block
from mevaas_inspector.markets import CREAM_MARKETS
from tests.unit.inspector.synth import Block, addr, calldata, transfer, transfer_from

ZEROX = "0xdef1c0ded9bec7f1a1670819833240f027b25eff"
NATIVE_ORDERS_FEATURE = addr(0xFEA7)
ONEINCH_V2 = "0x119c71d3bbac22029622cbaec24854d3d32d2828"
TAKER, MAKER, FEE_RECIPIENT = addr(0x7A1), addr(0x3A1), addr(0xFEE)
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
DAI = "0x6b175474e89094c44da98b954eedeac495271d0f"
ETH = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

LIMIT = "(address,address,uint128,uint128,uint128,address,address,address,address,bytes32,uint64,uint256)"
RFQ = "(address,address,uint128,uint128,address,address,address,bytes32,uint64,uint256)"
SIGNATURE = "(uint8,uint8,bytes32,bytes32)"


def call(signature: str, *args: object) -> str:
    """Calldata of `signature(args)`, encoded as the contract's ABI does."""
    _, types = signature.split("(", 1)
    arg_types = _split_types("(" + types)
    return "0x" + keccak(text=signature)[:4].hex() + encode(arg_types, list(args)).hex()


def _split_types(tuple_type: str) -> list[str]:
    inner, depth, part, out = tuple_type[1:-1], 0, "", []
    for ch in inner:
        if ch == "," and depth == 0:
            out.append(part)
            part = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        part += ch
    return [*out, part] if part else out


SIG = (2, 27, b"\x11" * 32, b"\x22" * 32)


def limit_order(maker_amount: int, taker_amount: int, fee: int) -> tuple[object, ...]:
    return (
        USDC,
        DAI,
        maker_amount,
        taker_amount,
        fee,
        MAKER,
        TAKER,
        addr(0),
        FEE_RECIPIENT,
        b"\0" * 32,
        2**40,
        7,
    )


def rfq_order(maker_amount: int, taker_amount: int) -> tuple[object, ...]:
    return (USDC, DAI, maker_amount, taker_amount, MAKER, addr(0), TAKER, b"\0" * 32, 2**40, 9)


def test_a_0x_limit_order_fill_is_the_takers_swap_at_the_amounts_that_moved() -> None:
    block = Block()
    data = call(
        f"fillLimitOrder({LIMIT},{SIGNATURE},uint128)",
        limit_order(2_000 * 10**6, 2_000 * 10**18, 3),
        SIG,
        10**21,
    )
    tx = block.tx(0).call([], TAKER, ZEROX, data)
    # The proxy runs the feature in its own context; the feature moves both legs and the fee.
    tx.call([0], ZEROX, NATIVE_ORDERS_FEATURE, data, call_type="delegatecall")
    tx.call([0, 0], ZEROX, DAI, transfer_from(TAKER, MAKER, 10**21))
    tx.call([0, 1], ZEROX, USDC, transfer_from(MAKER, TAKER, 1_000 * 10**6))
    tx.call([0, 2], ZEROX, DAI, transfer_from(TAKER, FEE_RECIPIENT, 1))
    (swap,) = inspect_block(block.raw()).swaps
    assert (swap.protocol, swap.abi_name, swap.contract_address) == ("zero_ex", "INativeOrdersFeature", ZEROX)
    assert (swap.from_address, swap.to_address) == (TAKER, TAKER)
    # A partial fill: half the order, what the transfers moved (the fee is not the trade).
    assert (swap.token_in_address, swap.token_in_amount) == (DAI, 10**21)
    assert (swap.token_out_address, swap.token_out_amount) == (USDC, 1_000 * 10**6)
    assert swap.error is None


def test_a_0x_rfq_fill_inside_transform_erc20_is_one_swap_paid_to_its_recipient() -> None:
    """transformERC20 fills an RFQ order through the proxy's self-call `_fillRfqOrder`, which
    names the taker (the flash wallet) and the recipient; the wrapper is not a second swap."""
    flash_wallet, recipient = addr(0xF1A5), addr(0x2EC1)
    block = Block()
    outer = call(
        "transformERC20(address,address,uint256,uint256,(uint32,bytes)[])", DAI, USDC, 5 * 10**20, 1, []
    )
    fill = call(
        f"_fillRfqOrder({RFQ},{SIGNATURE},uint128,address,bool,address)",
        rfq_order(500 * 10**6, 5 * 10**20),
        SIG,
        5 * 10**20,
        flash_wallet,
        False,
        recipient,
    )
    tx = block.tx(0).call([], TAKER, ZEROX, outer)
    tx.call([0], ZEROX, DAI, transfer_from(TAKER, flash_wallet, 5 * 10**20))
    tx.call([1], ZEROX, ZEROX, fill)
    tx.call([1, 0], ZEROX, NATIVE_ORDERS_FEATURE, fill, call_type="delegatecall")
    tx.call([1, 0, 0], ZEROX, DAI, transfer_from(flash_wallet, MAKER, 5 * 10**20))
    tx.call([1, 0, 1], ZEROX, USDC, transfer_from(MAKER, recipient, 499_990_000))
    (swap,) = inspect_block(block.raw()).swaps
    assert swap.abi_name == "INativeOrdersFeature" and swap.trace_address == (1,)
    assert (swap.from_address, swap.to_address) == (flash_wallet, recipient)
    assert (swap.token_in_address, swap.token_in_amount, swap.token_out_amount) == (
        DAI,
        5 * 10**20,
        499_990_000,
    )


def test_a_fill_whose_maker_leg_is_missing_is_no_swap() -> None:
    block = Block()
    data = call(f"fillRfqOrder({RFQ},{SIGNATURE},uint128)", rfq_order(10**6, 10**18), SIG, 10**18)
    tx = block.tx(0).call([], TAKER, ZEROX, data)
    tx.call([0], ZEROX, DAI, transfer_from(TAKER, MAKER, 10**18))
    # USDC from someone other than the order's maker: not this order's leg.
    tx.call([1], ZEROX, USDC, transfer_from(addr(0xBAD), TAKER, 10**6))
    assert inspect_block(block.raw()).swaps == ()


def test_a_1inch_rfq_fill() -> None:
    block = Block()
    order = (1, USDC, DAI, MAKER, addr(0), 300 * 10**6, 300 * 10**18)
    data = call(
        "fillOrderRFQ((uint256,address,address,address,address,uint256,uint256),bytes,uint256,uint256)",
        order,
        b"\x01" * 65,
        0,
        300 * 10**18,
    )
    tx = block.tx(0).call([], TAKER, ONEINCH_V2, data)
    tx.call([0], ONEINCH_V2, USDC, transfer_from(MAKER, TAKER, 300 * 10**6))
    tx.call([1], ONEINCH_V2, DAI, transfer_from(TAKER, MAKER, 300 * 10**18))
    (swap,) = inspect_block(block.raw()).swaps
    assert (swap.protocol, swap.contract_address, swap.from_address) == ("one_inch", ONEINCH_V2, TAKER)
    assert (swap.token_in_address, swap.token_in_amount) == (DAI, 300 * 10**18)
    assert (swap.token_out_address, swap.token_out_amount) == (USDC, 300 * 10**6)


def test_mooniswap_pools_in_both_directions_with_ether() -> None:
    pool, receiver = addr(0x3001), addr(0x4EC)
    block = Block()
    # ETH in (src 0, paid as the call's value), USDC out to the caller.
    data = call("swap(address,address,uint256,uint256,address)", addr(0), USDC, 10**18, 1, addr(0))
    tx = block.tx(0).call([], TAKER, pool, data, value=10**18)
    tx.call([0], pool, USDC, transfer(TAKER, 1_900 * 10**6))
    # USDC in (pulled from the caller), ETH out to the receiver swapFor names.
    data = call(
        "swapFor(address,address,uint256,uint256,address,address)", USDC, addr(0), 10**9, 1, addr(0), receiver
    )
    tx2 = block.tx(1).call([], TAKER, pool, data)
    tx2.call([0], pool, USDC, transfer_from(TAKER, pool, 10**9))
    tx2.call([1], pool, receiver, "0x", value=5 * 10**17)
    first, second = inspect_block(block.raw()).swaps
    assert (first.protocol, first.contract_address) == ("mooniswap", pool)
    assert (first.token_in_address, first.token_in_amount) == (ETH, 10**18)
    assert (first.token_out_address, first.token_out_amount, first.to_address) == (USDC, 1_900 * 10**6, TAKER)
    assert (second.token_in_address, second.token_in_amount) == (USDC, 10**9)
    assert (second.token_out_address, second.token_out_amount, second.to_address) == (
        ETH,
        5 * 10**17,
        receiver,
    )


def test_a_cream_erc20_market_liquidation_is_labelled_cream_with_its_underlying() -> None:
    cr_usdc = "0x44fbebd2f576670a6c33f6fc0b00aa8c5753b322"
    cr_yfi = "0xcbae0a83f4f9926997c8339545fb8ee32edc6b76"
    assert CREAM_MARKETS[cr_usdc] == USDC
    bot, borrower = addr(0xB07), addr(0xD0D1)
    block = Block()
    tx = block.tx(0).call([], bot, cr_usdc, calldata("0xf5e3c462", borrower, 5_000 * 10**6, cr_yfi))
    tx.call([0], cr_usdc, USDC, transfer_from(bot, cr_usdc, 5_000 * 10**6))
    tx.call([1], cr_usdc, cr_yfi, calldata("0xb2a02ff1", bot, borrower, 123_456))
    (li,) = inspect_block(block.raw()).liquidations
    assert li.protocol == "cream"
    assert (li.debt_token_address, li.debt_purchase_amount) == (USDC, 5_000 * 10**6)
    assert (li.received_token_address, li.received_amount) == (cr_yfi, 123_456)
    assert (li.liquidator_user, li.liquidated_user) == (bot, borrower)
