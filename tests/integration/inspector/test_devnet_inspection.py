"""The inspector on devnet blocks: a staged sandwich through the router and an executor arbitrage
through both DEXes are found with the profits the pairs' own Swap events imply."""

from __future__ import annotations

import pytest

from mevaas_inspector import inspect_rpc_block
from mevaas_local.devnet import Devnet
from tests.fixtures.mev_staging import stage_arbitrage, stage_sandwich

pytestmark = pytest.mark.integration


async def test_staged_sandwich_is_found_with_its_exact_profit(devnet: Devnet) -> None:
    chain = devnet.main
    staged = await stage_sandwich(devnet)
    assert {int(r["blockNumber"], 16) for r in (staged.victim, staged.back)} == {staged.block}
    assert [int(r["transactionIndex"], 16) for r in (staged.front, staged.victim, staged.back)] == [0, 1, 2]

    found = await inspect_rpc_block(chain.relay.url, staged.block)
    (sandwich,) = found.sandwiches
    assert sandwich.sandwicher_address == staged.attacker.lower()
    assert sandwich.frontrun_swap.transaction_hash == staged.front["transactionHash"]
    assert sandwich.backrun_swap.transaction_hash == staged.back["transactionHash"]
    assert [s.transaction_hash for s in sandwich.sandwiched_swaps] == [staged.victim["transactionHash"]]
    assert sandwich.frontrun_swap.token_out_amount == sandwich.backrun_swap.token_in_amount == staged.bought
    assert sandwich.profit_token_address == chain.deployment.token("WETH").address.lower()
    assert sandwich.profit_amount == sandwich.unprorated_profit_amount == staged.profit
    assert sandwich.frontrun_gas is not None
    assert sandwich.frontrun_gas.gas_used == int(staged.front["gasUsed"], 16)
    assert sandwich.frontrun_gas.gas_price == int(staged.front["effectiveGasPrice"], 16)
    assert found.arbitrages == ()


async def test_executor_cycle_through_both_dexes_is_an_arbitrage_with_exact_profit(devnet: Devnet) -> None:
    chain = devnet.main
    staged = await stage_arbitrage(devnet)
    assert staged.weth_in == staged.result.amount_in
    assert staged.executed.profit == staged.result.profit

    found = await inspect_rpc_block(chain.relay.url, staged.block)
    (arbitrage,) = found.arbitrages
    assert arbitrage.transaction_hash == staged.receipt["transactionHash"]
    assert arbitrage.account_address == staged.executor.lower()
    assert arbitrage.profit_token_address == chain.deployment.token("WETH").address.lower()
    assert (arbitrage.start_amount, arbitrage.end_amount) == (staged.weth_in, staged.weth_out)
    assert arbitrage.profit_amount == arbitrage.gross_profit_amount == staged.weth_out - staged.weth_in
    assert arbitrage.profit_amount == staged.executed.profit
    assert [s.contract_address for s in arbitrage.swaps] == [h.pool.address.lower() for h in staged.hops]
    assert arbitrage.gas is not None and arbitrage.gas.gas_used == int(staged.receipt["gasUsed"], 16)
    assert found.sandwiches == ()
