"""A flash cycle financed by a Uniswap V3 pool or the Balancer V2 vault, from the strategy's action
through its proto to the executor's calldata: the financing and the lending pool survive the trip
and select `executeFlashV3(pool, ...)` / `executeFlashBalancer(...)` through the financing
registry; a lender the chain does not configure, or one on the route, is a PlanError naming the
field; a chain configures at most one vault."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode
from eth_utils.crypto import keccak
from pydantic import ValidationError

from mevaas.events.v1 import events_pb2
from mevaas_chain.executor import (
    EXECUTE_FLASH_BALANCER_SIG,
    EXECUTE_FLASH_V3_SIG,
    ExecutorHop,
    encode_execute_flash_balancer,
    encode_execute_flash_v3,
)
from mevaas_chain.registry import ChainConfig, FlashLenderConfig
from mevaas_execution.domain import planning
from mevaas_strategies.actions import Hop, SwapCycle
from tests.unit.execution.test_planning import CHAIN, POOL_A, POOL_B, USDC, WETH

V3_POOL = "0x" + "3a" * 20
VAULT = "0x" + "ba" * 20
LENDING_CHAIN = CHAIN.model_copy(
    update={
        "flash_lenders": [
            FlashLenderConfig(kind="uniswap_v3", address=V3_POOL),
            FlashLenderConfig(kind="balancer_v2", address=VAULT),
        ]
    }
)
HOPS = (
    Hop(31337, POOL_A, "uni", WETH, USDC, 1000, 2000, 30),
    Hop(31337, POOL_B, "uni", USDC, WETH, 2000, 1100, 30),
)
EXECUTOR_HOPS = [ExecutorHop(POOL_A, True, 30), ExecutorHop(POOL_B, False, 30)]


def cycle(provider: str, lender: str = "") -> events_pb2.SwapCycleAction:
    return SwapCycle(HOPS, 1000, True, provider, 7, lender).to_proto()


def test_a_v3_flash_action_becomes_execute_flash_v3_on_its_pool() -> None:
    proto = cycle("uniswap_v3", V3_POOL)
    assert proto.financing == events_pb2.FINANCING_FLASH_V3
    assert (proto.flash_provider, proto.flash_fee, proto.flash_lender) == ("uniswap_v3", "7", V3_POOL)
    data = planning.executor_calldata(proto, LENDING_CHAIN, 9)
    assert data == encode_execute_flash_v3(V3_POOL, WETH, 1000, EXECUTOR_HOPS, 9)
    assert data[:4] == keccak(text=EXECUTE_FLASH_V3_SIG)[:4]
    pool, token, amount, hops, min_profit = decode(
        ["address", "address", "uint256", "(address,bool,uint16,uint8)[]", "uint256"], data[4:]
    )
    assert (pool.lower(), token.lower(), amount, len(hops), min_profit) == (V3_POOL, WETH, 1000, 2, 9)


def test_a_balancer_flash_action_becomes_execute_flash_balancer() -> None:
    proto = cycle("balancer_v2", VAULT)
    assert proto.financing == events_pb2.FINANCING_FLASH_BALANCER
    data = planning.executor_calldata(proto, LENDING_CHAIN, 9)
    assert data[:4] == keccak(text=EXECUTE_FLASH_BALANCER_SIG)[:4]
    assert data == encode_execute_flash_balancer(WETH, 1000, EXECUTOR_HOPS, 9)


@pytest.mark.parametrize(
    ("provider", "lender", "chain", "message"),
    [
        ("uniswap_v3", "", LENDING_CHAIN, "swap_cycle.flash_lender '' is no Uniswap V3 flash pool"),
        ("uniswap_v3", "0x" + "3b" * 20, LENDING_CHAIN, "is no Uniswap V3 flash pool of chain 31337"),
        ("uniswap_v3", V3_POOL, CHAIN, "is no Uniswap V3 flash pool of chain 31337"),
        (
            "uniswap_v3",
            POOL_A,
            CHAIN.model_copy(
                update={"flash_lenders": [FlashLenderConfig(kind="uniswap_v3", address=POOL_A)]}
            ),
            "also one of the cycle's hops",
        ),
        ("balancer_v2", VAULT, CHAIN, "has no Balancer vault"),
    ],
)
def test_a_lender_the_chain_does_not_offer_is_refused(
    provider: str, lender: str, chain: ChainConfig, message: str
) -> None:
    with pytest.raises(planning.PlanError, match=message):
        planning.executor_calldata(cycle(provider, lender), chain, 9)


def test_a_chain_configures_one_vault_and_each_lender_once() -> None:
    vault = FlashLenderConfig(kind="balancer_v2", address=VAULT)
    with pytest.raises(ValidationError, match="more than one Balancer vault"):
        ChainConfig.model_validate(
            {
                **CHAIN.model_dump(),
                "flash_lenders": [vault.model_dump(), {"kind": "balancer_v2", "address": V3_POOL}],
            }
        )
    with pytest.raises(ValidationError, match="duplicate flash lenders"):
        ChainConfig.model_validate({**CHAIN.model_dump(), "flash_lenders": [vault.model_dump()] * 2})
