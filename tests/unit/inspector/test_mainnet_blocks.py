"""Every result the fixtures README lists, reproduced exactly from the real mainnet blocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mevaas_inspector import WETH_TOKEN, BlockInspection, Swap

USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
MIDDLE_TOKEN = "0x25f8087ead173b73d6e8b84329989a8eea16cf73"
Inspect = Callable[[int], BlockInspection]


def test_12914944_swaps_and_exactly_two_arbitrages(inspect_fixture: Inspect) -> None:
    result = inspect_fixture(12914944)
    # The reference's 51, plus a 1inch limit-order fill (v1 protocol) it does not decode: a
    # reverted one, recorded with its error like a reverted pool swap, in no arbitrage.
    fills = [s for s in result.swaps if s.protocol == "one_inch"]
    assert len(result.swaps) == 52 and len(fills) == 1
    (fill,) = fills
    assert (fill.transaction_hash, fill.trace_address, fill.error) == (
        "0xbed169bbaa27a36ac84b937db896a7c89ab4197e5e621fc5698b904065106302",
        (2, 2, 2),
        "Reverted",
    )
    assert fill.contract_address == "0x3ef51736315f52d568d6d2cf289419b9cfffe782"
    assert (fill.token_in_address, fill.token_in_amount) == (MIDDLE_TOKEN, 2800 * 10**18)
    assert (fill.token_out_address, fill.token_out_amount) == (USDC, 4675999999)
    assert fill.from_address == fill.to_address == "0xfd3dfb524b2da40c8a6d703c62be36b5d8540626"
    expected = {
        "0x448245bf1a507b73516c4eeee01611927dada6610bf26d403012f2e66800d8f0": 750005273675102326,
        "0xfcf4558f6432689ea57737fe63124a5ec39fd6ba6aaf198df13a825dd599bffc": 53560707941943273628,
    }
    assert {a.transaction_hash: a.profit_amount for a in result.arbitrages} == expected
    for arb in result.arbitrages:
        assert len(arb.swaps) == 3
        assert arb.profit_token_address == WETH_TOKEN
        assert arb.gross_profit_amount == arb.profit_amount
        assert arb.end_amount - arb.start_amount == arb.profit_amount
        assert (arb.swaps[1].token_in_address, arb.swaps[1].token_out_address) == (MIDDLE_TOKEN, USDC)
        assert arb.error is None
        assert arb.gas is not None and arb.gas.gas_cost == arb.gas.gas_used * arb.gas.gas_price


def test_12914944_no_sandwich_is_attributed_to_a_pool(inspect_fixture: Inspect) -> None:
    result = inspect_fixture(12914944)
    pools = {s.contract_address for s in result.swaps}
    assert all(s.sandwicher_address not in pools for s in result.sandwiches)


def _swap_dict(swap: Swap) -> dict[str, Any]:
    return {
        "transaction_hash": swap.transaction_hash,
        "transaction_position": swap.transaction_position,
        "trace_address": list(swap.trace_address),
        "contract_address": swap.contract_address,
        "from_address": swap.from_address,
        "to_address": swap.to_address,
        "token_in_address": swap.token_in_address,
        "token_in_amount": swap.token_in_amount,
        "token_out_address": swap.token_out_address,
        "token_out_amount": swap.token_out_amount,
        "protocol": swap.protocol,
        "abi_name": swap.abi_name,
        "error": swap.error,
    }


def test_12775690_sandwich_in_full(inspect_fixture: Inspect, mainnet_blocks_dir: Path) -> None:
    result = inspect_fixture(12775690)
    assert len(result.swaps) == 21
    expected = json.loads((mainnet_blocks_dir / "12775690.expected-sandwiches.json").read_text())
    assert len(result.sandwiches) == len(expected) == 1
    got, want = result.sandwiches[0], expected[0]
    keys = set(_swap_dict(got.frontrun_swap))

    def pick(raw: dict[str, Any]) -> dict[str, Any]:
        return {k: raw[k] for k in keys}

    assert got.sandwicher_address == want["sandwicher_address"]
    assert _swap_dict(got.frontrun_swap) == pick(want["frontrun_swap"])
    assert _swap_dict(got.backrun_swap) == pick(want["backrun_swap"])
    assert [_swap_dict(s) for s in got.sandwiched_swaps] == [pick(s) for s in want["sandwiched_swaps"]]
    assert [s.transaction_position for s in got.sandwiched_swaps] == [3, 4, 5, 6]
    assert got.profit_token_address == want["profit_token_address"] == WETH_TOKEN
    assert got.profit_amount == want["profit_amount"] == 49991481915322274
    assert got.unprorated_profit_amount == got.profit_amount
    assert got.frontrun_gas is not None and got.backrun_gas is not None


def test_13244807_aave_liquidation(inspect_fixture: Inspect) -> None:
    result = inspect_fixture(13244807)
    assert len(result.liquidations) == 1
    li = result.liquidations[0]
    assert li.transaction_hash == "0xb7575eedc9d8cfe82c4a11cd1a851221f2eafb93d738301995ac7103ffe877f7"
    assert li.protocol == "aave"
    assert li.liquidated_user == "0xd16404ca0a74a15e66d8ad7c925592fb02422ffe"
    assert li.liquidator_user == "0x19256c009781bc2d1545db745af6dfd30c7e9cfa"
    assert li.debt_token_address == "0xdac17f958d2ee523a2206206994597c13d831ec7"
    assert li.debt_purchase_amount == 26503300291
    assert li.received_token_address == WETH_TOKEN
    assert li.received_amount == 8182733924513576561
    assert li.trace_address == (1, 1, 6)
    # Paid the miner by direct transfer at zero priority fee (post-London, base fee known).
    assert li.gas is not None and li.gas.priority_fee == 0 and li.gas.miner_payment > 0


def test_13234998_compound_liquidation(inspect_fixture: Inspect) -> None:
    result = inspect_fixture(13234998)
    assert len(result.liquidations) == 1
    li = result.liquidations[0]
    assert li.transaction_hash == "0x78f7e67391c2bacde45e5057241f8b9e21a59330bce4332eecfff8fac279d090"
    assert li.protocol == "compound_v2"
    assert li.liquidated_user == "0xb5535a3681cf8d5431b8acfd779e2f79677ecce9"
    assert li.liquidator_user == "0xe0090ec6895c087a393f0e45f1f85098a6c33bef"
    assert li.debt_token_address == "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
    assert li.debt_purchase_amount == 268066492249420078
    assert li.received_token_address == "0x39aa39c021dfbae8fac545936693ac917d5e7563"
    assert li.received_amount == 4747650169097
    assert li.trace_address == (1,)


def test_15049646_reverted_liquidation_not_reported(inspect_fixture: Inspect) -> None:
    result = inspect_fixture(15049646)
    reverted_tx = "0x6dd0d8be8a77651f64ef399b47fbc87011bd796b43349c3164ff7da965e0b345"
    assert all(li.transaction_hash != reverted_tx for li in result.liquidations)
    assert result.liquidations == ()


def test_15049646_fee_on_transfer_token_selling_its_tax(inspect_fixture: Inspect) -> None:
    # The token's transferFrom (to the pool) itself sells the collected tax on the same pool.
    # Each swap is paid by its own transfer: the tax sale by the token contract's inner
    # transfer, the user's swap by the user's transfer, never the user's transfer twice.
    result = inspect_fixture(15049646)
    tx = "0x61797b0b8500950f0dbc04b5cd403dcfb8d4227b3205479221c9f6c881370508"
    tax_sale, user_swap = [s for s in result.swaps if s.transaction_hash == tx]
    assert tax_sale.trace_address == (0, 0, 1, 3)
    assert tax_sale.from_address == tax_sale.token_in_address == "0xf6e5a064c6ece573377b8fddfce88e1445a64e54"
    assert (tax_sale.token_in_amount, tax_sale.token_out_amount) == (277710846023280438, 10180677752923743)
    assert user_swap.from_address == user_swap.to_address == "0x3467eba885767d3ac9e754380036ab04d275942a"
    assert (user_swap.token_in_amount, user_swap.token_out_amount) == (2251487314901965745, 79808099671633973)
