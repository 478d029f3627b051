"""The backtest replays the strategy service's own plugin over recorded history: the candidate it
executes is exactly what the plugin finds on the same market, the recorded base fee prices gas,
blocks before the range only build state, and the assumptions map as documented."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

from eth_utils.address import to_checksum_address

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_analytics.backtest_replay import Settings, correlation, run_replay
from mevaas_analytics.domain.backtest import MarketRecorder, PoolInfo
from mevaas_chain.pool_index import Pool
from mevaas_strategies.arbitrage import FlashArbitrage
from mevaas_strategies.market import MarketView
from mevaas_strategies.model import StrategySpec
from tests.fixtures.strategy import strategy_config
from tests.unit.strategy.synthetic import E18, USDC, WETH, chain_config, market

UNI = PoolInfo("0x" + "a1" * 20, "uni", WETH, USDC, 30)
SUSHI = PoolInfo("0x" + "b1" * 20, "sushi", WETH, USDC, 30)
BASE_FEE = {100: 7 * 10**9, 101: 9 * 10**9, 102: 8 * 10**9}


def spec() -> StrategySpec:
    config = strategy_config(
        chain_config(), type_=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE, symbols=("WETH", "USDC")
    )
    return StrategySpec.from_config(config, strategy_id="s", tenant_id="t", version=3)


def history(tmp_path: Path) -> Path:
    recorder = MarketRecorder(1)
    recorder.add(
        100,
        1_700_000_000,
        [(UNI, 1000 * E18, 3_000_000 * 10**6), (SUSHI, 1000 * E18, 3_000_000 * 10**6)],
        BASE_FEE[100],
    )
    recorder.add(101, 1_700_000_012, [(SUSHI, 1000 * E18, 3_100_000 * 10**6)], BASE_FEE[101])
    recorder.add(102, 1_700_000_024, [], BASE_FEE[102])
    path = recorder.write(tmp_path)
    assert path is not None
    return path


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "win_share": 1.0,
        "latency_blocks": 0,
        "priority_fee": 10**9,
        "gas_price": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_the_replay_executes_what_the_plugin_finds_on_the_same_market(tmp_path: Path) -> None:
    result, blocks = run_replay(spec(), chain_config(), [history(tmp_path)], 101, 102, settings())
    assert [b.block_number for b in blocks] == [100, 101, 102]
    assert result.blocks_replayed == 2
    ((block, executed),) = result.candidates
    assert block == 102

    # The live engine's view of block 101 (pools keyed by checksummed address, as the pool index
    # keys them): both pools, 101's base fee, 1 gwei priority fee.
    live = market(
        [
            Pool(to_checksum_address(UNI.address), "uni", WETH, USDC, 30, 1000 * E18, 3_000_000 * 10**6),
            Pool(to_checksum_address(SUSHI.address), "sushi", WETH, USDC, 30, 1000 * E18, 3_100_000 * 10**6),
        ],
        base_fee=BASE_FEE[101],
        block=101,
    )
    (expected,) = FlashArbitrage(spec()).on_market_update(MarketView(chains={1: live}), None)
    assert executed == expected
    assert executed.gas_price == BASE_FEE[101] + 10**9
    assert result.executed == [(102, expected.route_key, expected.net_profit)]
    assert result.performance.total_pnl == expected.net_profit


def test_blocks_before_the_range_only_build_state(tmp_path: Path) -> None:
    # From 102 (nothing changed in it) the plugin still sees everything once, at 102's base fee.
    result, _ = run_replay(spec(), chain_config(), [history(tmp_path)], 102, 102, settings())
    ((block, executed),) = result.candidates
    assert block == 103 and executed.gas_price == BASE_FEE[102] + 10**9
    # Range before the gap: nothing to find.
    quiet, _ = run_replay(spec(), chain_config(), [history(tmp_path)], 100, 100, settings())
    assert quiet.candidates == [] and quiet.blocks_replayed == 1


def test_assumptions_gas_price_and_inclusion(tmp_path: Path) -> None:
    flat, _ = run_replay(spec(), chain_config(), [history(tmp_path)], 101, 102, settings(gas_price=3 * 10**9))
    ((_, executed),) = flat.candidates
    assert executed.gas_price == 3 * 10**9
    never, _ = run_replay(spec(), chain_config(), [history(tmp_path)], 101, 102, settings(win_share=0.0))
    assert never.candidates == [] and never.opportunities_found == 1

    mapped = Settings.of(
        strategy_pb2.BacktestAssumptions(
            inclusion_probability_percent=common_pb2.Decimal(value="37.5"),
            latency_blocks=2,
            gas_price_wei="5",
        )
    )
    assert mapped == Settings(
        win_share=float(Decimal("0.375")), latency_blocks=2, priority_fee=10**9, gas_price=5
    )
    assert Settings.of(strategy_pb2.BacktestAssumptions()) == settings()


def test_daily_pnl_correlation() -> None:
    assert correlation([1, 2, 3], [2, 4, 6]) == 1.0
    assert correlation([1, 2, 3], [3, 2, 1]) == -1.0
    assert math.isnan(correlation([1], [1])) and math.isnan(correlation([1, 1], [2, 3]))
