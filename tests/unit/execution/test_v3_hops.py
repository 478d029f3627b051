"""A Uniswap V3 hop keeps its pool kind from the strategy's action, over the wire, into the
executor call execution encodes; hops written before kinds existed stay V2 pairs."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode

from mevaas.events.v1 import events_pb2
from mevaas_chain.executor import HOP_V2, HOP_V3
from mevaas_chain.registry import ChainConfig, DexConfig
from mevaas_execution.domain import planning
from mevaas_execution.executors.liquidation_plan import swap_hops
from mevaas_strategies.actions import Hop, PoolKind, SwapCycle

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
V2_PAIR = "0x" + "aa" * 20
V3_POOL = "0x" + "bb" * 20
CHAIN = ChainConfig(
    chain_id=31337,
    name="anvil",
    rpc_url="http://127.0.0.1:1",
    wrapped_native=WETH,
    dexes=[DexConfig(name="uni", factory="0x" + "f0" * 20, init_code_hash="0x" + "00" * 32)],
)
EXECUTE_ARGS = ["address", "uint256", "(address,bool,uint16,uint8)[]", "uint256"]


def _cycle(first: PoolKind, second: PoolKind) -> events_pb2.SwapCycleAction:
    action = SwapCycle(
        hops=(
            Hop(31337, V3_POOL, "uni_v3", WETH, USDC, 1000, 2000, 0, first),
            Hop(31337, V2_PAIR, "uni", USDC, WETH, 2000, 1010, 30, second),
        ),
        amount_in=1000,
    )
    # Over the wire, as the opportunity travels from the engine to execution.
    return events_pb2.SwapCycleAction.FromString(action.to_proto().SerializeToString())


def test_a_v3_hop_reaches_the_executor_call_as_a_v3_hop() -> None:
    cycle = _cycle(PoolKind.UNISWAP_V3, PoolKind.UNISWAP_V2)
    assert [h.pool_kind for h in cycle.hops] == [
        events_pb2.POOL_KIND_UNISWAP_V3,
        events_pb2.POOL_KIND_UNISWAP_V2,
    ]
    cycle.financing = events_pb2.FINANCING_INVENTORY
    data = planning.executor_calldata(cycle, CHAIN, 5)
    token_in, amount_in, hops, min_profit = decode(EXECUTE_ARGS, data[4:])
    assert (token_in.lower(), amount_in, min_profit) == (WETH, 1000, 5)
    # WETH (0x11..) < USDC (0x22..): the V3 hop sells token0.
    assert [(h[0].lower(), h[1], h[3]) for h in hops] == [(V3_POOL, True, HOP_V3), (V2_PAIR, False, HOP_V2)]


def test_a_hop_without_a_kind_is_a_v2_pair_and_an_unknown_kind_is_refused() -> None:
    legacy = events_pb2.RouteHop(pool=V2_PAIR, token_in=WETH, token_out=USDC, fee_bps=25)
    assert planning.executor_hop(legacy, "h").kind == HOP_V2
    assert planning.executor_hop(legacy, "h").fee_bps == 25
    legacy.pool_kind = 7  # type: ignore[assignment]
    with pytest.raises(planning.PlanError, match=r"swap_cycle\.hops\[0\]\.pool_kind 7"):
        planning.executor_hops([legacy, events_pb2.RouteHop(pool=V2_PAIR, token_in=USDC, token_out=WETH)])


def test_a_flash_swap_cannot_borrow_from_a_v3_pool() -> None:
    cycle = _cycle(PoolKind.UNISWAP_V3, PoolKind.UNISWAP_V2)
    cycle.financing = events_pb2.FINANCING_FLASH_SWAP
    cycle.hops[0].dex = "uni"
    with pytest.raises(planning.PlanError, match=r"swap_cycle\.hops\[0\] lends through a V2 flash swap"):
        planning.executor_calldata(cycle, CHAIN, 5)
    # The same cycle borrowing from its V2 first hop encodes.
    flipped = _cycle(PoolKind.UNISWAP_V2, PoolKind.UNISWAP_V3)
    flipped.financing = events_pb2.FINANCING_FLASH_SWAP
    flipped.hops[0].dex = "uni"
    assert planning.executor_calldata(flipped, CHAIN, 5)


def test_a_liquidation_sells_collateral_through_a_v3_pool() -> None:
    action = events_pb2.LiquidationAction(
        collateral_swap=[Hop(31337, V3_POOL, "uni_v3", WETH, USDC, 10, 20, 0, PoolKind.UNISWAP_V3).to_proto()]
    )
    action.collateral_asset.address = WETH
    action.debt_asset.address = USDC
    (hop,) = swap_hops(action)
    assert (hop.pair.lower(), hop.zero_for_one, hop.kind) == (V3_POOL, True, HOP_V3)
