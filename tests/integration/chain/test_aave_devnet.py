"""Aave V3 on the devnet: the real protocol deployed from @aave/core-v3's artifacts, its reserves'
risk parameters, the simulated borrowers' positions, and the oracle driver moving the feeds."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from mevaas_chain import abi
from mevaas_chain.client import Call
from mevaas_local.devnet import Devnet, DevnetChain
from mevaas_local.devnet.aave import RESERVES, AaveMarket
from mevaas_local.devnet.lending_sim import Lending
from tests.fixtures.devnet import skew_pool

pytestmark = pytest.mark.asyncio(loop_scope="session")

WAD = 10**18


def lending(chain: DevnetChain) -> Lending:
    assert chain.lending is not None
    return chain.lending


async def account_data(chain: DevnetChain, market: AaveMarket, user: str) -> tuple[int, ...]:
    raw = await chain.client.call(market.pool, abi.encode_call("getUserAccountData(address)", user))
    return abi.decode_result(["uint256"] * 6, raw)


async def test_market_is_registered_on_both_chains(devnet: Devnet) -> None:
    for chain in devnet.chains:
        market = lending(chain).market
        contracts = chain.config.contracts
        assert contracts["aave_pool"] == market.pool
        provider = market.addresses_provider
        got = await chain.client.batch_call(
            [
                Call(provider, abi.encode_call(f"{f}()"))
                for f in ("getPool", "getPriceOracle", "getACLManager")
            ]
        )
        assert [abi.decode_address(g or b"") for g in got] == [market.pool, market.oracle, market.acl_manager]
        raw = await chain.client.call(market.pool, abi.encode_call("getReservesList()"))
        listed = abi.decode_result(["address[]"], raw)[0]
        assert [a.lower() for a in listed] == [r.asset.lower() for r in market.reserves]
        symbols = {t.symbol for t in chain.deployment.tokens}
        assert {r.symbol for r in market.reserves} == {s.symbol for s in RESERVES if s.symbol in symbols}


async def test_reserve_risk_parameters_are_the_specs(devnet: Devnet) -> None:
    chain = devnet.main
    market = lending(chain).market
    for reserve in market.reserves:
        raw = await chain.client.call(
            market.data_provider, abi.encode_call("getReserveConfigurationData(address)", reserve.asset)
        )
        decimals, ltv, threshold, bonus, factor, collateral, borrowing, stable, active, frozen = (
            abi.decode_result(["uint256"] * 5 + ["bool"] * 5, raw)
        )
        spec = reserve.spec
        assert (decimals, ltv, threshold, bonus, factor) == (
            reserve.decimals,
            spec.ltv_bps,
            spec.liquidation_threshold_bps,
            spec.liquidation_bonus_bps,
            spec.reserve_factor_bps,
        )
        assert (collateral, borrowing, stable, active, frozen) == (True, True, False, True, False)
        fee = await chain.client.call(
            market.data_provider, abi.encode_call("getLiquidationProtocolFee(address)", reserve.asset)
        )
        assert abi.decode_uint(fee) == spec.liquidation_protocol_fee_bps


async def test_borrowers_start_just_above_health_factor_one(devnet: Devnet) -> None:
    chain = devnet.main
    sim = lending(chain)
    assert len(sim.borrowers) == chain.spec.aave_borrowers
    factors = []
    for b in sim.borrowers:
        collateral, debt, _, _, _, hf = await account_data(chain, sim.market, b.address)
        assert collateral > 0 and debt > 0
        factors.append(Fraction(hf, WAD))
    assert all(1 < f < Fraction(135, 100) for f in factors)
    # A spread, with some close to the edge so ordinary moves cross it.
    assert min(factors) < Fraction(105, 100) and max(factors) > Fraction(12, 10)


async def test_a_price_drop_puts_borrowers_under_one(devnet: Devnet) -> None:
    chain = devnet.main
    sim = lending(chain)
    longs = [b for b in sim.borrowers if b.collateral == "WETH" and b.debt != "WETH"]
    assert longs
    before = {b.address: (await account_data(chain, sim.market, b.address))[5] for b in longs}
    price = Decimal(chain.spec.weth_usd_price)
    try:
        await sim.oracle.pin("WETH", price * Decimal("0.80"), chain.transact)
        after = {b.address: (await account_data(chain, sim.market, b.address))[5] for b in longs}
        # Collateral value fell 20%, debt did not move: every long's HF fell by that share.
        for address, hf in after.items():
            assert abs(Fraction(hf, before[address]) - Fraction(8, 10)) < Fraction(1, 1000)
        assert all(hf < WAD for hf in after.values())
    finally:
        await sim.oracle.pin("WETH", price, chain.transact)
        sim.oracle.unpin("WETH")


async def test_oracle_follows_the_dex_past_its_deviation_threshold(devnet: Devnet) -> None:
    chain = devnet.main
    sim = lending(chain)
    link = sim.market.reserve("LINK")
    pool = next(
        p
        for p in chain.deployment.pools
        if p.dex == "uniswap" and {p.token0, p.token1} == {link.asset, chain.deployment.weth}
    )
    raw = await chain.client.call(pool.address, abi.GET_RESERVES)
    reserve_link = abi.decode_reserves(raw)[0 if pool.token0 == link.asset else 1]
    before = (await sim.oracle.current_answers())[link.feed]
    # Donating 5% more LINK to the pool lowers LINK's price by ~5% (1/1.05 of it).
    await skew_pool(chain, pool.address, "LINK", reserve_link // 20)
    expected = (await sim.oracle.spot_answers())[link.feed]
    assert abs(Fraction(expected, before) - Fraction(100, 105)) < Fraction(1, 100)
    await chain.mine()
    feed = await chain.client.call(link.feed, abi.encode_call("latestAnswer()"))
    assert abi.decode_result(["int256"], feed)[0] == expected
    oracle_price = abi.decode_uint(
        await chain.client.call(sim.market.oracle, abi.encode_call("getAssetPrice(address)", link.asset))
    )
    assert oracle_price == expected
    # Below the deviation threshold nothing is sent.
    assert link.feed not in await sim.oracle.updates()
