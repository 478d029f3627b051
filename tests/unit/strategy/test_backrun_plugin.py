"""The backrun strategy's bid from an order-flow hint: exact sizing on the post-victim state."""

from __future__ import annotations

from mevaas.common.v1 import common_pb2
from mevaas_chain.amm.arbitrage import optimize
from mevaas_chain.amm.v2 import SwapLeg, get_amount_out
from mevaas_chain.pool_index import Pool
from mevaas_chain.swaps import RouterSwap
from mevaas_strategies.actions import Backrun
from mevaas_strategies.backrun import BackrunStrategy, Hint
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import StrategySpec, TokenRef

WETH = "0x" + "0a" * 20
USDC = "0x" + "0b" * 20
ROUTER = "0x" + "11" * 20
P = Pool("0x" + "aa" * 20, "uni", WETH, USDC, 30, 1_000 * 10**18, 2_000_000 * 10**6)
Q = Pool("0x" + "bb" * 20, "sushi", WETH, USDC, 30, 800 * 10**18, 1_600_000 * 10**6)


def _view() -> MarketView:
    market = ChainMarket(
        chain_id=1,
        block_number=10,
        block_hash="0x" + "00" * 32,
        base_fee=10**9,
        priority_fee=10**9,
        pools={P.address: P, Q.address: Q},
        wrapped_native=WETH,
    )
    return MarketView(chains={1: market})


def _spec(**overrides: object) -> StrategySpec:
    values: dict[str, object] = dict(
        strategy_id="s",
        tenant_id="t",
        version=1,
        type=common_pb2.STRATEGY_TYPE_BACKRUN,
        chain_ids=(1,),
        tokens=(TokenRef(1, WETH),),
        dexes=frozenset(),
        base_token=TokenRef(1, WETH),
        allocation=10**22,
        max_position=10**22,
        max_hops=2,
        min_profit=0,
        max_slippage_bps=0,
        max_gas_price_wei=0,
        execution_delay_ms=0,
        retry_attempts=1,
        submission_mode=common_pb2.SUBMISSION_MODE_PRIVATE_BUNDLE,
    )
    values.update(overrides)
    return StrategySpec(**values)  # type: ignore[arg-type]


def _hint(amount: int, level: str = "amounts") -> Hint:
    swap = RouterSwap(
        ROUTER, "swapExactTokensForTokens", (USDC, WETH), True, amount, 0, "0x" + "ee" * 20, 99, False
    )
    return Hint(1, "0x" + "cd" * 32, level, swap if level == "amounts" else None, 9_000, 2 * 10**14, 20)


def test_the_bid_is_the_exact_optimum_on_the_state_after_the_user_s_swap() -> None:
    amount = 40_000 * 10**6  # the user sells USDC into P: WETH becomes dear in P
    (bid,) = BackrunStrategy(_spec()).on_hint(_view(), _hint(amount), {ROUTER: "uni"})
    action = bid.action
    assert isinstance(action, Backrun) and action.target_tx_hash == "0x" + "cd" * 32
    out = get_amount_out(amount, P.reserve1, P.reserve0)
    # P after the user: less WETH, more USDC; the backrun sells WETH there and buys it back on Q
    best = optimize([SwapLeg(P.reserve0 - out, P.reserve1 + amount), SwapLeg(Q.reserve1, Q.reserve0)])
    assert best is not None
    assert [h.pool for h in action.cycle.hops] == [P.address, Q.address]
    assert action.cycle.amount_in == best.amount_in and action.refund_bps == 9_000
    profit = best.amount_out - best.amount_in
    kept = profit - profit * 9_000 // 10_000
    assert action.gas_refund == 2 * 10**14 and bid.expected_profit == kept - 2 * 10**14
    assert bid.net_profit == bid.expected_profit - bid.gas_cost > 0


def test_no_bid_without_amounts_or_when_the_refund_leaves_nothing() -> None:
    plugin = BackrunStrategy(_spec())
    assert plugin.on_hint(_view(), _hint(40_000 * 10**6, level="pool"), {ROUTER: "uni"}) == []
    assert plugin.on_hint(_view(), _hint(40_000 * 10**6), {}) == []
    # a tiny swap opens a gap smaller than the searcher's gas
    assert plugin.on_hint(_view(), _hint(10 * 10**6), {ROUTER: "uni"}) == []
    # beyond the inventory the bid is capped at max_position, priced exactly there
    plugin = BackrunStrategy(_spec(max_position=10**18))
    (capped,) = plugin.on_hint(_view(), _hint(40_000 * 10**6), {ROUTER: "uni"})
    assert isinstance(capped.action, Backrun) and capped.action.cycle.amount_in == 10**18
    hops = capped.action.cycle.hops
    out = get_amount_out(40_000 * 10**6, P.reserve1, P.reserve0)
    mid = get_amount_out(10**18, P.reserve0 - out, P.reserve1 + 40_000 * 10**6)
    assert hops[0].amount_out == mid and hops[1].amount_out == get_amount_out(mid, Q.reserve1, Q.reserve0)
