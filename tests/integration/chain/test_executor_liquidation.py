"""The Executor's liquidations against the real Aave V3 devnet market and Uniswap V2 pairs: an ETH
drop puts borrowers under HF 1, the liquidation plugin sizes them, and the contract's three
financings (inventory, the pool's flashLoanSimple, a V2 flash swap on the route's last pair)
each realise the profit the strategy's exact math predicts, to the wei; aTokens can be received
instead; the callbacks refuse strangers; a healthy position reverts with Aave's own reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
import pytest_asyncio
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.executor import (
    ExecutorHop,
    ExecutorLiquidation,
    Liquidated,
    decode_liquidated,
    encode_liquidate,
)
from mevaas_chain.lending.index import LendingMarket
from mevaas_chain.lending.math import percent_mul, ray_div, ray_mul
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import deploy_executor, mint_tokens
from mevaas_strategies.actions import Liquidation
from mevaas_strategies.liquidation import LiquidationStrategy, flash_swap_profit
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.plugins import Candidate
from tests.fixtures.devnet import call_error, send
from tests.fixtures.lending import WETH_DROP, liquidation_market, liquidation_spec, weth_dropped

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BLOCK_TIME = 12


@dataclass
class Market:
    chain: DevnetChain
    market: LendingMarket
    executor: str
    owner: str


@pytest_asyncio.fixture(loop_scope="session")
async def market(devnet: Devnet) -> AsyncIterator[Market]:
    chain = devnet.main
    assert chain.lending is not None
    lending = LendingMarket.from_contracts(chain.config.contracts)
    assert lending is not None
    owner = chain.demo_wallets[3]
    executor = await deploy_executor(
        chain.client, chain.transact, owner=owner, factories=[d.factory for d in chain.deployment.dexes]
    )
    async with weth_dropped(chain):
        yield Market(chain, lending, executor, owner)


async def _candidates(m: Market) -> tuple[list[Liquidation], ChainMarket, int]:
    """The plugin's liquidations (flash-financed: the base token is no debt asset) on the chain
    as it is now, the market it saw, and the next block's time."""
    found, view, now = await found_liquidations(m)
    return [c.action for c in found if isinstance(c.action, Liquidation)], view, now


async def found_liquidations(m: Market) -> tuple[list[Candidate], ChainMarket, int]:
    """The plugin's candidates, most profitable first, with the market and next block's time."""
    chain = m.chain
    view, lending = await liquidation_market(chain, m.market, BLOCK_TIME)
    strategy = LiquidationStrategy(liquidation_spec(chain.config.chain_id, chain.deployment.weth))
    found = sorted(
        strategy.on_market_update(MarketView({chain.config.chain_id: view}), None),
        key=lambda c: -c.net_profit,
    )
    assert found, "no borrower under HF 1 after the drop"
    assert all(isinstance(c.action, Liquidation) and c.action.financing != "inventory" for c in found)
    return found, view, lending.head_timestamp + BLOCK_TIME


def _call(action: Liquidation, *, min_profit: int = 1, receive_a_token: bool = False) -> ExecutorLiquidation:
    hops = () if receive_a_token else action.collateral_swap
    return ExecutorLiquidation(
        pool=action.pool,
        collateral=action.collateral_asset,
        debt=action.debt_asset,
        borrower=action.borrower,
        debt_to_cover=action.debt_to_cover,
        receive_a_token=receive_a_token,
        swap=tuple(ExecutorHop(h.pool, int(h.token_in, 16) < int(h.token_out, 16), h.fee_bps) for h in hops),
        min_profit=min_profit,
    )


async def _balance(chain: DevnetChain, token: str, holder: str) -> int:
    return abi.decode_uint(await chain.client.call(token, abi.balance_of(holder)))


async def _run(m: Market, data: bytes, at: int) -> Liquidated:
    await m.chain.client.request("evm_setNextBlockTimestamp", [at])
    receipt = await send(m.chain, m.owner, m.executor, data, gas=3_000_000)
    assert int(receipt["status"], 16) == 1
    event = decode_liquidated(receipt, m.executor)
    assert event is not None
    return event


async def test_each_financing_realises_the_predicted_profit_to_the_wei(market: Market) -> None:
    m, chain = market, market.chain
    actions, view, now = await _candidates(m)
    assert view.lending is not None and view.lending.flash_loan_premium == 5

    # Inventory: the executor pays the debt from its own balance.
    action = actions[0]
    debt_symbol = view.symbols[action.debt_asset]
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=m.executor,
        amounts={debt_symbol: action.debt_to_cover},
    )
    before = await _balance(chain, action.debt_asset, m.executor)
    event = await _run(m, encode_liquidate(_call(action), "inventory"), now)
    assert event.debt_repaid == action.debt_to_cover
    assert event.collateral_received == action.expected_collateral
    assert event.profit == action.collateral_swap[-1].amount_out - action.debt_to_cover
    assert await _balance(chain, action.debt_asset, m.executor) - before == event.profit
    assert event.financing == 0

    # Aave flash loan: no debt token held; the premium is percentMul(amount, 5).
    actions, view, now = await _candidates(m)
    action = actions[0]
    held = await _balance(chain, action.debt_asset, m.executor)
    if held:
        await send(chain, m.owner, m.executor, _withdraw(action.debt_asset, m.owner, held))
    event = await _run(m, encode_liquidate(_call(action), "flash_loan"), now)
    premium = percent_mul(action.debt_to_cover, 5)
    assert event.profit == action.collateral_swap[-1].amount_out - action.debt_to_cover - premium
    assert event.collateral_received == action.expected_collateral and event.financing == 1
    assert await _balance(chain, action.debt_asset, m.executor) == event.profit

    # V2 flash swap on the route's last pair, repaid in its other token.
    actions, view, now = await _candidates(m)
    action = actions[0]
    factory = chain.config.dex(action.collateral_swap[-1].dex).factory
    held = await _balance(chain, action.debt_asset, m.executor)
    expected = flash_swap_profit(
        view, action.collateral_swap, action.expected_collateral, action.debt_to_cover
    )
    assert expected is not None
    event = await _run(m, encode_liquidate(_call(action), "flash_swap", factory), now)
    assert event.profit == expected and event.financing == 2
    assert await _balance(chain, action.debt_asset, m.executor) - held == expected


def _withdraw(token: str, to: str, amount: int) -> bytes:
    return abi.encode_call("withdraw(address,address,uint256)", token, to, amount)


async def test_receive_a_token_keeps_the_collateral_as_atokens(market: Market) -> None:
    m, chain = market, market.chain
    actions, view, now = await _candidates(m)
    action = actions[0]
    assert view.lending is not None
    reserve = view.lending.reserves[action.collateral_asset]
    await mint_tokens(
        chain.client,
        chain.transact,
        chain.deployment,
        deployer=chain.deployer,
        to=m.executor,
        amounts={view.symbols[action.debt_asset]: action.debt_to_cover},
    )
    a_before = await _balance(chain, reserve.a_token, m.executor)
    assert a_before == 0
    call = _call(action, receive_a_token=True, min_profit=action.expected_collateral)
    event = await _run(m, encode_liquidate(call, "inventory"), now)
    received = await _balance(chain, reserve.a_token, m.executor) - a_before
    # AToken.transferOnLiquidation moves the amount as scaled units at the block's index.
    index = reserve.normalized_income(now)
    assert received == ray_mul(ray_div(action.expected_collateral, index), index)
    assert event.collateral_received == received and event.profit == -action.debt_to_cover
    # Selling aTokens along a V2 route is refused before anything moves.
    bad = replace(_call(action), receive_a_token=True)
    assert "BadPath" in _error_name(
        await call_error(chain, m.owner, m.executor, encode_liquidate(bad, "inventory"))
    )


def _error_name(message: str | None) -> str:
    assert message is not None, "the call did not revert"
    for name in ("BadPath()", "NotOwner()", "NotGenuineLender()", "NotGenuinePair()"):
        if "0x" + keccak(text=name)[:4].hex() in message:
            return name
    return message


async def test_callbacks_and_entry_points_refuse_strangers(market: Market) -> None:
    m, chain = market, market.chain
    actions, _view, _now = await _candidates(m)
    action = actions[0]
    stranger = chain.demo_wallets[1]
    call = _call(action)
    # Only the owner liquidates.
    assert _error_name(
        await call_error(chain, stranger, m.executor, encode_liquidate(call, "flash_loan"))
    ) == ("NotOwner()")
    # executeOperation from anyone but the pool mid-loan (even naming the executor as initiator).
    callback = abi.encode_call(
        "executeOperation(address,uint256,uint256,address,bytes)", action.debt_asset, 1, 0, m.executor, b""
    )
    assert _error_name(await call_error(chain, stranger, m.executor, callback)) == "NotGenuineLender()"
    assert _error_name(await call_error(chain, m.market.pool, m.executor, callback)) == "NotGenuineLender()"
    # A flash swap callback outside liquidateFlashSwap.
    swap_callback = abi.encode_call(
        "uniswapV2Call(address,uint256,uint256,bytes)", m.executor, 1, 0, b"\x00" * 32
    )
    pair = action.collateral_swap[-1].pool
    assert _error_name(await call_error(chain, pair, m.executor, swap_callback)) == "NotGenuinePair()"


async def test_a_healthy_position_reverts_with_aaves_reason(market: Market) -> None:
    m, chain = market, market.chain
    actions, _view, _now = await _candidates(m)
    action = actions[0]
    price = Decimal(chain.spec.weth_usd_price)
    assert chain.lending is not None
    await chain.lending.oracle.pin("WETH", price * 2, chain.transact)
    try:
        message = await call_error(chain, m.owner, m.executor, encode_liquidate(_call(action), "flash_loan"))
    finally:
        await chain.lending.oracle.pin("WETH", price * WETH_DROP, chain.transact)
    assert message is not None
    # Error(string) "45": HEALTH_FACTOR_NOT_BELOW_THRESHOLD, bubbled up through the flash loan.
    assert "08c379a0" in message and (b"45".hex() in message)
