"""Config validation: every violation names its StrategyConfig field and a reason."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_strategy.domain.plans import PlanLimits, limits_for_tier
from mevaas_strategy.domain.validation import validate_config
from tests.fixtures.strategy import registry_of, strategy_config
from tests.unit.strategy.synthetic import E18, WETH, chain_config

ALPHA = chain_config(1, "alpha")
BETA = chain_config(2, "beta")
REGISTRY = registry_of(ALPHA, BETA)
PLAN = PlanLimits(5, Decimal("100000"), "plan")


def eth_at_3000(chain_id: int, token: str) -> Fraction | None:
    return Fraction(3000, E18) if token.lower() == WETH else Fraction(1, 10**6)


def check(config: strategy_pb2.StrategyConfig, plan: PlanLimits = PLAN) -> dict[str, str]:
    return {v.field: v.reason for v in validate_config(config, REGISTRY, plan, eth_at_3000)}


def valid(**kwargs: object) -> strategy_pb2.StrategyConfig:
    return strategy_config(ALPHA, symbols=("WETH", "USDC", "LINK"), **kwargs)  # type: ignore[arg-type]


def test_a_valid_config_has_no_violations() -> None:
    assert check(valid()) == {}
    assert check(valid(type_=common_pb2.STRATEGY_TYPE_FLASH_ARBITRAGE)) == {}
    cross = strategy_config(
        ALPHA,
        symbols=("WETH", "USDC"),
        extra_chains=(BETA,),
        type_=common_pb2.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE,
    )
    assert check(cross) == {}


def test_unknown_chain_token_and_dex_are_named() -> None:
    config = valid()
    config.parameters.chain_ids.append(99)
    config.parameters.tokens.add(chain_id=1, address="0x" + "99" * 20)
    config.parameters.dexes.append("nope")
    assert check(config) == {
        "parameters.chain_ids[1]": "UNKNOWN_CHAIN",
        "parameters.tokens[3].address": "UNKNOWN_TOKEN",
        "parameters.dexes[0]": "UNKNOWN_DEX",
    }


def test_limits_out_of_range() -> None:
    config = valid(max_position=20 * E18, allocation=10 * E18)
    s = config.parameters.execution_settings
    s.max_slippage_bps = 6000
    s.min_profit_threshold = "-1"
    s.max_gas_price_wei = "0"
    s.execution_delay_ms = 70_000
    s.retry_attempts = 11
    config.parameters.max_hops = 7
    config.risk_limits.max_slippage_bps = 10_001
    config.risk_limits.max_position = "5"
    assert check(config) == {
        "parameters.max_position": "OUT_OF_RANGE",
        "parameters.execution_settings.max_slippage_bps": "OUT_OF_RANGE",
        "parameters.execution_settings.min_profit_threshold": "OUT_OF_RANGE",
        "parameters.execution_settings.max_gas_price_wei": "OUT_OF_RANGE",
        "parameters.execution_settings.execution_delay_ms": "OUT_OF_RANGE",
        "parameters.execution_settings.retry_attempts": "OUT_OF_RANGE",
        "parameters.max_hops": "OUT_OF_RANGE",
        "risk_limits.max_slippage_bps": "OUT_OF_RANGE",
        "risk_limits.denomination": "REQUIRED",
    }


def test_allocation_above_the_plan_and_unpriced_tokens() -> None:
    # 40 WETH at 3000 USD = 120000 USD > 100000.
    assert check(valid(allocation=40 * E18, max_position=E18)) == {"allocation.amount": "EXCEEDS_PLAN"}
    assert check(valid(allocation=40 * E18, max_position=E18), PlanLimits(5, None, "plan")) == {}
    no_price = validate_config(valid(), REGISTRY, PLAN, lambda c, t: None)
    assert [(v.field, v.reason) for v in no_price] == [("allocation.token", "UNPRICED")]


def test_required_fields_and_type_rules() -> None:
    assert check(strategy_pb2.StrategyConfig()) == {
        "name": "REQUIRED",
        "type": "REQUIRED",
        "parameters": "REQUIRED",
        "allocation": "REQUIRED",
    }
    custom = valid(type_=common_pb2.STRATEGY_TYPE_CUSTOM)
    assert check(custom) == {"custom": "REQUIRED"}
    custom.custom.plugin = "not-registered"
    assert check(custom) == {"custom.plugin": "UNKNOWN_PLUGIN"}
    sandwich = valid(type_=common_pb2.STRATEGY_TYPE_SANDWICH_PROTECTION)
    assert check(sandwich) == {"type": "UNSUPPORTED"}
    one_chain_cross = valid(type_=common_pb2.STRATEGY_TYPE_CROSS_CHAIN_ARBITRAGE)
    assert check(one_chain_cross) == {"parameters.chain_ids": "OUT_OF_RANGE"}


def test_tier_fallback_limits() -> None:
    assert limits_for_tier("professional").max_strategies == 25
    assert limits_for_tier("unknown") == limits_for_tier("starter")
