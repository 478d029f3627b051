"""The Executor's deleverage against the real Aave V3 devnet market and Uniswap V2 pairs: a
WETH-collateralised USDC debt pushed under its trigger by an oracle drop is sized by the pure
module (mevaas_strategies.protection / deleverage) and repaid with its own collateral through a
flash loan; the health factor the pool reports afterwards is the one Aave's math predicts to the
wei and at least the target; the scaled balances move as the tokens burn them. Failure paths: a
minimum health factor above what the plan reaches, and an account that did not approve its
aToken, revert and move nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
import pytest_asyncio
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevaas_chain import abi
from mevaas_chain.executor import ExecutorDeleverage, ExecutorHop, decode_deleveraged, encode_deleverage
from mevaas_chain.lending.index import LendingIndex, LendingMarket
from mevaas_chain.lending.math import MAX_UINT, WAD, account_data, ray_div
from mevaas_chain.pool_index import PoolIndex
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.deploy import deploy_executor
from mevaas_strategies.actions import Deleverage
from mevaas_strategies.deleverage import after_deleverage
from mevaas_strategies.market import ChainMarket, LendingState
from mevaas_strategies.protection import ProtectionRule, evaluate
from tests.fixtures.devnet import call_error, send

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BLOCK_TIME = 12
TRIGGER, TARGET = 12 * WAD // 10, 14 * WAD // 10


@dataclass
class Protected:
    chain: DevnetChain
    market: LendingMarket
    account: str
    executor: str
    weth: str
    usdc: str
    a_weth: str


async def _hf(chain: DevnetChain, pool: str, account: str) -> int:
    raw = await chain.client.call(pool, abi.encode_call("getUserAccountData(address)", account))
    return int(abi.decode_result(["uint256"] * 6, raw)[5])


@pytest_asyncio.fixture(loop_scope="session")
async def protected(devnet: Devnet) -> AsyncIterator[Protected]:
    chain = devnet.main
    assert chain.lending is not None
    market = LendingMarket.from_contracts(chain.config.contracts)
    assert market is not None
    weth, usdc = chain.lending.market.reserve("WETH"), chain.lending.market.reserve("USDC")
    account = to_checksum_address(keccak(text="deleverage-test-account")[-20:])
    await chain.client.request("anvil_setBalance", [account, hex(100 * 10**18)])
    await chain.client.request("anvil_impersonateAccount", [account])
    pool = market.pool
    deposit = "0x" + abi.encode_call("deposit()").hex()
    await chain.producer.transact(
        [{"from": account, "to": weth.asset, "data": deposit, "value": hex(10 * 10**18), "gas": hex(100_000)}]
    )
    await send(chain, account, weth.asset, abi.encode_call("approve(address,uint256)", pool, MAX_UINT))
    await send(
        chain,
        account,
        pool,
        abi.encode_call("supply(address,uint256,address,uint16)", weth.asset, 10 * 10**18, account, 0),
    )
    price = abi.decode_uint(await chain.client.call(weth.feed, abi.encode_call("latestAnswer()")))
    # HF 1.3 at today's price: debt = collateral * 83% / 1.3, in USDC (6 decimals).
    borrow = 10 * price * 83 * 10**6 * 10 // (100 * 13 * 10**8)
    await send(
        chain,
        account,
        pool,
        abi.encode_call("borrow(address,uint256,uint256,uint16,address)", usdc.asset, borrow, 2, 0, account),
        gas=1_500_000,
    )
    executor = await deploy_executor(
        chain.client, chain.transact, owner=account, factories=[d.factory for d in chain.deployment.dexes]
    )
    # The wallet lets its executor pull its aWETH (what a tenant does once when protecting).
    await send(chain, account, weth.a_token, abi.encode_call("approve(address,uint256)", executor, MAX_UINT))
    # An oracle drop to HF ~1.15, under the trigger.
    usd = Decimal(price) / 10**8 * Decimal("1.15") / Decimal("1.3")
    await chain.lending.oracle.pin("WETH", usd, chain.transact)
    try:
        yield Protected(chain, market, account, executor, weth.asset, usdc.asset, weth.a_token)
    finally:
        await chain.lending.oracle.pin("WETH", Decimal(price) / 10**8, chain.transact)
        chain.lending.oracle.unpin("WETH")


async def _view(p: Protected) -> tuple[ChainMarket, LendingIndex]:
    chain = p.chain
    lending, pools = LendingIndex(chain.client, p.market), PoolIndex(chain.client, chain.config.dexes)
    await lending.load()
    await pools.load()
    assert lending.head == pools.head
    view = ChainMarket(
        chain_id=chain.config.chain_id,
        block_number=lending.head[0],
        block_hash=lending.head[1],
        base_fee=0,
        priority_fee=10**9,
        pools=pools.pools,
        wrapped_native=chain.deployment.weth,
        block_time_s=BLOCK_TIME,
        lending=LendingState(
            "aave_v3",
            p.market.pool,
            lending.head_timestamp,
            lending.reserves,
            lending.positions,
            lending.prices,
            lending.flash_loan_premium,
        ),
    )
    return view, lending


def _rule(p: Protected) -> ProtectionRule:
    return ProtectionRule("prot-1", "t1", p.chain.config.chain_id, p.account, TRIGGER, TARGET, WAD, False)


def _call(action: Deleverage, min_hf: int) -> ExecutorDeleverage:
    return ExecutorDeleverage(
        pool=action.pool,
        account=action.account,
        collateral=action.collateral_asset,
        debt=action.debt_asset,
        repay=action.repay_amount,
        collateral_amount=action.collateral_amount,
        swap=tuple(
            ExecutorHop(h.pool, int(h.token_in, 16) < int(h.token_out, 16), h.fee_bps)
            for h in action.collateral_swap
        ),
        min_health_factor=min_hf,
    )


async def test_deleverage_reaches_the_target_exactly_as_aave_computes(protected: Protected) -> None:
    p, chain = protected, protected.chain
    view, index = await _view(p)
    at = index.head_timestamp + BLOCK_TIME
    trigger = evaluate(_rule(p), view, at)
    assert trigger is not None and trigger.action is not None, trigger
    action = trigger.action
    assert (action.collateral_asset, action.debt_asset) == (p.weth, p.usdc)
    assert action.health_factor < TRIGGER <= TARGET <= action.expected_health_factor
    assert action.flash_loan_premium == (action.repay_amount * 5 + 5_000) // 10_000
    assert view.lending is not None
    before = view.lending.positions[p.account]

    # Failure paths first: nothing moves.
    too_high = encode_deleverage(_call(action, action.expected_health_factor + 10**15))
    assert "0x" + keccak(text="HealthFactorTooLow(uint256,uint256)")[:4].hex() in str(
        await call_error(chain, p.account, p.executor, too_high)
    )
    stranger = chain.demo_wallets[1]
    assert "0x" + keccak(text="NotOwner()")[:4].hex() in str(
        await call_error(chain, stranger, p.executor, encode_deleverage(_call(action, TARGET)))
    )
    await send(chain, p.account, p.a_weth, abi.encode_call("approve(address,uint256)", p.executor, 0))
    assert await call_error(chain, p.account, p.executor, encode_deleverage(_call(action, TARGET)))
    await send(chain, p.account, p.a_weth, abi.encode_call("approve(address,uint256)", p.executor, MAX_UINT))

    # Sized again for the block it lands in (the approvals above mined blocks).
    view, index = await _view(p)
    at = index.head_timestamp + BLOCK_TIME
    trigger = evaluate(_rule(p), view, at)
    assert trigger is not None and trigger.action is not None
    action = trigger.action
    assert view.lending is not None
    before = view.lending.positions[p.account]
    await chain.client.request("evm_setNextBlockTimestamp", [at])
    receipt = await send(
        chain, p.account, p.executor, encode_deleverage(_call(action, TARGET)), gas=3_000_000
    )
    assert int(receipt["status"], 16) == 1
    event = decode_deleveraged(receipt, p.executor)
    assert event is not None
    block = int(receipt["blockNumber"], 16)
    assert block == index.head[0] + 1
    assert event.repaid == action.repay_amount
    assert abs(event.collateral_withdrawn - action.collateral_amount) <= 1
    # The pool's figure, the event's and Aave's math on the state the transaction met agree.
    onchain = await _hf(chain, p.market.pool, p.account)
    assert event.health_factor == onchain == action.expected_health_factor
    assert onchain >= TARGET
    predicted = after_deleverage(
        before,
        view.lending.reserves,
        at,
        collateral_asset=action.collateral_asset,
        collateral=action.collateral_amount,
        debt_asset=action.debt_asset,
        repay=action.repay_amount,
    )
    assert account_data(predicted, view.lending.reserves, view.lending.prices, at).health_factor == onchain
    # The scaled balances burnt at the block's indexes, and the index's own view agrees.
    await index.sync()
    after = index.positions[p.account]
    debt_index = view.lending.reserves[p.usdc].normalized_debt(at)
    income = view.lending.reserves[p.weth].normalized_income(at)
    assert after.scaled_debt[p.usdc] == before.scaled_debt[p.usdc] - ray_div(action.repay_amount, debt_index)
    assert after.scaled_collateral[p.weth] == before.scaled_collateral[p.weth] - ray_div(
        action.collateral_amount, income
    )
    # The surplus of the sale (a few wei of USDC) went to the account, nothing stays behind.
    usdc_left = abi.decode_uint(await chain.client.call(p.usdc, abi.balance_of(p.executor)))
    assert usdc_left == 0
    # Above the trigger now: nothing more to do.
    view, index = await _view(p)
    assert evaluate(_rule(p), view, index.head_timestamp + BLOCK_TIME) is None
    # With a trigger above it, the position is triggered again (the rule, not the state, decides).
    assert evaluate(replace(_rule(p), trigger_health_factor=MAX_UINT), view, index.head_timestamp) is not None
