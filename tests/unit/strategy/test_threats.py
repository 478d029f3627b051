"""Router calldata decoding, the pending-pool parsing, and threat assessment on exact reserves."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from mevaas_chain.amm.sandwich import VictimSwap, best_sandwich
from mevaas_chain.amm.v2 import SwapLeg, get_amount_out
from mevaas_chain.mempool import parse_rpc_transaction, txpool_transactions
from mevaas_chain.pool_index import Pool
from mevaas_chain.swaps import decode_router_swap
from mevaas_strategies.threats import PairBook, assess

ROUTER = "0x" + "11" * 20
A = "0x" + "0a" * 20
B = "0x" + "0b" * 20
C = "0x" + "0c" * 20
ME = "0x" + "ee" * 20


def _call(signature: str, types: list[str], args: list[object]) -> bytes:
    return keccak(text=signature)[:4] + encode(types, args)


def test_decodes_router_swaps_and_ignores_other_calls() -> None:
    data = _call(
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [1000, 900, [A, B], ME, 99],
    )
    swap = decode_router_swap(ROUTER, 0, data)
    assert swap is not None
    assert (swap.function, swap.exact_in, swap.amount, swap.bound, swap.deadline) == (
        "swapExactTokensForTokens",
        True,
        1000,
        900,
        99,
    )
    assert [p.lower() for p in swap.path] == [A, B] and swap.recipient.lower() == ME
    eth = _call(
        "swapExactETHForTokens(uint256,address[],address,uint256)",
        ["uint256", "address[]", "address", "uint256"],
        [777, [A, C], ME, 5],
    )
    swap = decode_router_swap(ROUTER, 10**18, eth)
    assert swap is not None and swap.eth_in and swap.amount == 10**18 and swap.bound == 777
    exact_out = _call(
        "swapETHForExactTokens(uint256,address[],address,uint256)",
        ["uint256", "address[]", "address", "uint256"],
        [50, [A, C], ME, 5],
    )
    swap = decode_router_swap(ROUTER, 10**18, exact_out)
    assert swap is not None and not swap.exact_in and (swap.amount, swap.bound) == (50, 10**18)
    # a transfer, truncated calldata, a one-token path: not swaps
    assert decode_router_swap(ROUTER, 0, keccak(text="transfer(address,uint256)")[:4] + b"\0" * 64) is None
    assert decode_router_swap(ROUTER, 0, data[:40]) is None
    one = _call(
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [1, 1, [A], ME, 1],
    )
    assert decode_router_swap(ROUTER, 0, one) is None


def test_txpool_content_is_read_by_sender_then_nonce() -> None:
    def tx(h: str, nonce: int) -> dict[str, str]:
        return {
            "hash": h,
            "from": ME,
            "to": ROUTER,
            "nonce": hex(nonce),
            "value": "0x0",
            "input": "0x",
            "gas": "0x5208",
            "gasPrice": "0x1",
        }

    content = {
        "pending": {ME: {"10": tx("0x02", 10), "9": tx("0x01", 9)}},
        "queued": {ME: {"12": tx("0x03", 12)}},
    }
    parsed = [parse_rpc_transaction(31337, t) for t in txpool_transactions(content)]
    assert [p.tx_hash for p in parsed] == ["0x01", "0x02", "0x03"]
    assert parsed[0].gas == 21000 and parsed[0].max_fee_per_gas == 1 and parsed[0].swap is None


def test_assess_names_the_exact_sandwich_and_a_safe_bound() -> None:
    pool_ab = Pool("0x" + "aa" * 20, "uni", A, B, 30, 1_000 * 10**18, 2_000_000 * 10**6)
    book = PairBook([pool_ab, Pool("0x" + "bb" * 20, "other", A, B, 30, 5, 5)])
    data = _call(
        "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [10 * 10**18, 0, [A, B], ME, 99],
    )
    expected = get_amount_out(10 * 10**18, pool_ab.reserve0, pool_ab.reserve1)
    loose = decode_router_swap(ROUTER, 0, data)
    assert loose is not None
    loose = type(loose)(**{**{f: getattr(loose, f) for f in loose.__slots__}, "bound": expected * 97 // 100})
    threat = assess(loose, book, {ROUTER: "uni"})
    assert threat is not None
    direct = best_sandwich(
        VictimSwap((SwapLeg(pool_ab.reserve0, pool_ab.reserve1),), loose.amount, loose.bound)
    )
    assert direct is not None
    assert threat.attacker_profit == direct.profit and threat.front_run_amount == direct.front_in
    assert threat.pool is pool_ab and threat.token == loose.path[0]
    assert threat.expected_amount == expected and threat.attacked_amount >= loose.bound
    assert threat.exposure == expected - threat.attacked_amount
    # tolerating nothing, 1 unit of slippage already pays a wei-sized sandwich (rounding)
    assert threat.safe_bound == expected and threat.safe_slippage_bps == 0
    # tolerating the attacker's gas (0.001 A), the advice is a real slippage
    costly = assess(loose, book, {ROUTER: "uni"}, tolerated=lambda _t: 10**15)
    assert costly is not None and costly.attacker_profit == threat.attacker_profit
    assert 0 < costly.safe_slippage_bps < 300 and costly.safe_bound < expected
    # at the advised bound nothing worth the gas is left to take; one unit looser there is
    safe = type(loose)(**{**{f: getattr(loose, f) for f in loose.__slots__}, "bound": costly.safe_bound})
    assert assess(safe, book, {ROUTER: "uni"}, tolerated=lambda _t: 10**15) is None
    looser = type(loose)(
        **{**{f: getattr(loose, f) for f in loose.__slots__}, "bound": costly.safe_bound - 1}
    )
    assert assess(looser, book, {ROUTER: "uni"}, tolerated=lambda _t: 10**15) is not None
    # unknown router, missing pool: no opinion
    assert assess(loose, book, {}) is None
    assert assess(loose, PairBook([]), {ROUTER: "uni"}) is None
