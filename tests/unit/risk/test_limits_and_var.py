"""Limit validation, field masks, merging, and VaR against hand-computed values."""

from __future__ import annotations

import math

import pytest

from mevaas.common.v1 import common_pb2
from mevaas_core.validation import Validator
from mevaas_risk.domain.limits import (
    Limits,
    TokenKey,
    apply_mask,
    validate_limits,
    validate_mask,
    validate_tightens,
)
from mevaas_risk.domain.var import NotEnoughHistory, historical_var, horizon_series, parametric_var

WETH = common_pb2.Token(chain_id=1, address="0x" + "aa" * 20)


def violations(limits: common_pb2.RiskLimits) -> list[str]:
    v = Validator()
    validate_limits(limits, v)
    return [f.field for f in v.violations]


def test_valid_limits_have_no_violations() -> None:
    limits = common_pb2.RiskLimits(
        denomination=WETH,
        max_position="1000",
        max_slippage_bps=50,
        max_gas_price_wei="100000000000",
        min_profit="0",
        daily_loss_limit="10",
        max_concurrent_executions=3,
        allowed_chain_ids=[1, 10],
        allowed_tokens=[WETH],
    )
    assert violations(limits) == []


def test_each_bad_field_is_named() -> None:
    limits = common_pb2.RiskLimits(
        max_position="-5",
        max_slippage_bps=10_001,
        max_gas_price_wei="1.5",
        daily_loss_limit="0",
        allowed_chain_ids=[1, 0, 1],
        allowed_tokens=[common_pb2.Token(chain_id=0, address="0xnope"), WETH, WETH],
    )
    assert violations(limits) == [
        "limits.max_position",
        "limits.daily_loss_limit",
        "limits.denomination",
        "limits.max_slippage_bps",
        "limits.max_gas_price_wei",
        "limits.allowed_chain_ids[1]",
        "limits.allowed_chain_ids[2]",
        "limits.allowed_tokens[0].chain_id",
        "limits.allowed_tokens[0].address",
        "limits.allowed_tokens[2]",
    ]


def test_mask_paths_checked() -> None:
    v = Validator()
    validate_mask([], v)
    validate_mask(["max_position", "bogus"], v)
    assert [f.field for f in v.violations] == ["update_mask", "update_mask.paths[1]"]


def test_apply_mask_touches_only_named_fields() -> None:
    current = common_pb2.RiskLimits(denomination=WETH, max_position="10", allowed_chain_ids=[1, 2])
    update = common_pb2.RiskLimits(max_position="20", allowed_chain_ids=[3], max_slippage_bps=9)
    merged = apply_mask(current, update, ["max_position", "allowed_chain_ids"])
    assert merged.max_position == "20"
    assert list(merged.allowed_chain_ids) == [3]
    assert merged.max_slippage_bps == 0
    assert merged.denomination == WETH
    assert apply_mask(current, update, ["*"]) == update


def test_stricter_merge_and_round_trip() -> None:
    token = TokenKey.from_proto(WETH)
    tenant = Limits(denomination=token, max_position=100, min_profit=5, allowed_chain_ids=frozenset({1, 2}))
    strategy = Limits(
        max_position=50, min_profit=1, max_concurrent_executions=4, allowed_chain_ids=frozenset({2, 3})
    )
    merged = strategy.stricter(tenant)
    assert merged.max_position == 50
    assert merged.min_profit == 5
    assert merged.max_concurrent_executions == 4
    assert merged.allowed_chain_ids == frozenset({2})
    assert merged.capped(2).max_concurrent_executions == 2
    assert Limits.from_proto(merged.to_proto()) == merged


def test_strategy_may_only_tighten() -> None:
    token = TokenKey.from_proto(WETH)
    tenant = Limits(denomination=token, max_position=100, min_profit=5, allowed_chain_ids=frozenset({1}))
    v = Validator()
    validate_tightens(
        Limits(denomination=token, max_position=101, min_profit=4, allowed_chain_ids=frozenset({1, 2})),
        tenant,
        v,
    )
    assert [f.field for f in v.violations] == [
        "limits.max_position",
        "limits.min_profit",
        "limits.allowed_chain_ids",
    ]
    ok = Validator()
    validate_tightens(Limits(denomination=token, max_position=100, min_profit=5), tenant, ok)
    assert ok.violations == []


# VaR: daily PnL -50, -20, -10, 0, 5, 10, 20, 30, 40, 75 (n = 10), sorted already.
DAILY = [30, -20, 5, -50, 40, 10, 0, 75, -10, 20]


def test_historical_var_hand_computed() -> None:
    # 95 %: k = ceil(0.05 * 10) - 1 = 0 -> worst day -50; ES = mean of {-50} = 50.
    result = historical_var(DAILY, 0.95)
    assert (result.value_at_risk, result.expected_shortfall, result.observations) == (50, 50, 10)
    # 80 %: k = ceil(0.2 * 10) - 1 = 1 -> -20; ES = mean(-50, -20) = 35.
    result = historical_var(DAILY, 0.80)
    assert (result.value_at_risk, result.expected_shortfall) == (20, 35)
    # 70 %: k = 2 -> -10; ES = mean(-50, -20, -10) = 80/3 = 26.67 -> 27 (rounded towards the loss).
    result = historical_var(DAILY, 0.70)
    assert (result.value_at_risk, result.expected_shortfall) == (10, 27)
    # 50 %: k = 4 -> +5, a gain: VaR 0; ES = mean(-50,-20,-10,0,5) = -15 -> 15.
    result = historical_var(DAILY, 0.50)
    assert (result.value_at_risk, result.expected_shortfall) == (0, 15)


def test_historical_var_horizon_uses_overlapping_sums() -> None:
    assert horizon_series([1, -2, 3, -4], 2) == [-1, 1, -1]
    # two-day sums of DAILY: 10,-15,-45,-10,50,10,75,65,10 -> worst -45.
    assert historical_var(DAILY, 0.95, horizon=2).value_at_risk == 45


def test_parametric_var_hand_computed() -> None:
    # mean = 100 / 10 = 10; deviations 20,-30,-5,-60,30,0,-10,65,-20,10 -> squares sum 10650;
    # sample variance = 10650 / 9; sigma = 34.4005...; z(0.05) = -1.6448536...
    sigma = math.sqrt(10650 / 9)
    z = -1.6448536269514729
    assert math.ceil(-(10 + z * sigma)) == 47  # 46.58 -> 47
    result = parametric_var(DAILY, 0.95)
    assert result.value_at_risk == 47
    # ES = -(mu - sigma * pdf(z) / 0.05) = -(10 - 34.4005 * 0.1031356 / 0.05) = 60.96 -> 61
    assert result.expected_shortfall == 61
    # Horizon 4: -(4 * 10 + z * sigma * 2) = 73.17 -> 74.
    assert parametric_var(DAILY, 0.95, horizon=4).value_at_risk == 74


def test_var_needs_two_observations() -> None:
    with pytest.raises(NotEnoughHistory):
        historical_var([5], 0.95)
    with pytest.raises(NotEnoughHistory):
        parametric_var([5], 0.95)
    with pytest.raises(NotEnoughHistory):
        historical_var([5, 6], 0.95, horizon=2)


def test_var_exact_on_wei_scale_amounts() -> None:
    wei = [x * 10**18 + 1 for x in DAILY]
    assert historical_var(wei, 0.95).value_at_risk == 50 * 10**18 - 1
