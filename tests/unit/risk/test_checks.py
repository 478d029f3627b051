"""The pre-trade check, limit by limit, on hand-built contexts (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mevaas.events.v1 import events_pb2
from mevaas_risk.domain.checks import Exposure, OpportunityFacts, RiskContext, decide
from mevaas_risk.domain.limits import Limits, TokenKey

WETH = TokenKey.of(1, "0x" + "aa" * 20)
USDC = TokenKey.of(1, "0x" + "bb" * 20)
R = events_pb2


def opportunity(**overrides: object) -> OpportunityFacts:
    base = OpportunityFacts(
        strategy_id="s1",
        chain_ids=frozenset({1}),
        tokens=frozenset({WETH, USDC}),
        input_token=WETH,
        amount_in=100,
        profit_token=WETH,
        net_profit=10,
        gas_price_wei=5,
        detected_block=10,
        deadline_block=12,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def context(tenant: Limits | None = None, strategy: Limits | None = None, **overrides: object) -> RiskContext:
    base = RiskContext(
        tenant_limits=tenant or Limits(),
        strategy_limits=strategy or Limits(),
        plan_max_concurrent=0,
        tenant_exposure=Exposure(),
        strategy_exposure=Exposure(),
        tenant_pnl_today=0,
        strategy_pnl_today=0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_no_limits_approves() -> None:
    verdict = decide(opportunity(), context())
    assert verdict.approved
    assert verdict.reason_code == R.RISK_REASON_CODE_WITHIN_LIMITS


@pytest.mark.parametrize("switch", ["platform_kill_switch", "tenant_kill_switch", "strategy_kill_switch"])
def test_any_kill_switch_rejects_first(switch: str) -> None:
    # Even an opportunity that also breaks other limits reports the kill switch.
    overrides: dict[str, Any] = {switch: True}
    ctx = replace(context(Limits(max_gas_price_wei=1)), **overrides)
    verdict = decide(opportunity(gas_price_wei=10**30), ctx)
    assert not verdict.approved
    assert verdict.reason_code == R.RISK_REASON_CODE_KILL_SWITCH_ENGAGED


def test_suspended_tenant_rejected() -> None:
    assert (
        decide(opportunity(), context(tenant_suspended=True)).reason_code
        == R.RISK_REASON_CODE_TENANT_SUSPENDED
    )


def test_stale_when_current_block_past_deadline() -> None:
    assert decide(opportunity(detected_block=12, deadline_block=12), context()).approved
    verdict = decide(opportunity(detected_block=13, deadline_block=12), context())
    assert verdict.reason_code == R.RISK_REASON_CODE_STALE


def test_chain_and_token_allow_lists() -> None:
    only_chain_2 = Limits(allowed_chain_ids=frozenset({2}))
    assert decide(opportunity(), context(only_chain_2)).reason_code == R.RISK_REASON_CODE_CHAIN_NOT_ALLOWED
    only_weth = Limits(allowed_tokens=frozenset({WETH}))
    verdict = decide(opportunity(), context(only_weth))
    assert verdict.reason_code == R.RISK_REASON_CODE_TOKEN_NOT_ALLOWED
    assert USDC.address in verdict.reason
    assert decide(opportunity(tokens=frozenset({WETH})), context(only_weth)).approved


def test_gas_price_limit_inclusive() -> None:
    limits = Limits(max_gas_price_wei=5)
    assert decide(opportunity(gas_price_wei=5), context(limits)).approved
    verdict = decide(opportunity(gas_price_wei=6), context(limits))
    assert verdict.reason_code == R.RISK_REASON_CODE_MAX_GAS_PRICE
    assert verdict.breach is not None and verdict.breach.kind == R.BREACH_KIND_MAX_GAS_PRICE
    assert (verdict.breach.limit_value, verdict.breach.observed_value) == ("5", "6")


def test_min_profit_net_of_gas() -> None:
    limits = Limits(denomination=WETH, min_profit=10)
    assert decide(opportunity(net_profit=10), context(limits)).approved
    verdict = decide(opportunity(net_profit=9), context(limits))
    assert verdict.reason_code == R.RISK_REASON_CODE_MIN_PROFIT
    assert verdict.reason == "expected profit net of gas 9 < min_profit 10"
    # Profit in another token cannot be compared: rejected, not waved through.
    assert not decide(opportunity(profit_token=USDC, net_profit=10**9), context(limits)).approved


def test_strategy_min_profit_tightens_tenant() -> None:
    verdict = decide(
        opportunity(net_profit=15),
        context(Limits(denomination=WETH, min_profit=10), Limits(denomination=WETH, min_profit=20)),
    )
    assert verdict.reason_code == R.RISK_REASON_CODE_MIN_PROFIT


def test_daily_loss_limit_reached() -> None:
    limits = Limits(denomination=WETH, daily_loss_limit=50)
    assert decide(opportunity(), context(limits, tenant_pnl_today=-49)).approved
    verdict = decide(opportunity(), context(limits, tenant_pnl_today=-50))
    assert verdict.reason_code == R.RISK_REASON_CODE_DAILY_LOSS_LIMIT
    assert verdict.breach is not None and verdict.breach.observed_value == "50"
    # A strategy-level limit counts the strategy's own losses.
    strategy = Limits(denomination=WETH, daily_loss_limit=5)
    assert not decide(opportunity(), context(None, strategy, strategy_pnl_today=-5)).approved


def test_max_concurrent_counts_open_reservations() -> None:
    limits = Limits(max_concurrent_executions=2)
    assert decide(opportunity(), context(limits, tenant_exposure=Exposure(open_count=1))).approved
    verdict = decide(opportunity(), context(limits, tenant_exposure=Exposure(open_count=2)))
    assert verdict.reason_code == R.RISK_REASON_CODE_MAX_CONCURRENT_EXECUTIONS
    # The plan's cap applies when the tenant sets none, and caps a looser tenant limit.
    assert not decide(
        opportunity(), context(plan_max_concurrent=1, tenant_exposure=Exposure(open_count=1))
    ).approved
    loose = Limits(max_concurrent_executions=9)
    assert not decide(
        opportunity(), context(loose, plan_max_concurrent=3, tenant_exposure=Exposure(open_count=3))
    ).approved


def test_strategy_concurrency_counts_only_its_own() -> None:
    strategy = Limits(max_concurrent_executions=1)
    busy_tenant = context(None, strategy, tenant_exposure=Exposure(open_count=7))
    assert decide(opportunity(), busy_tenant).approved
    busy_strategy = context(None, strategy, strategy_exposure=Exposure(open_count=1))
    assert not decide(opportunity(), busy_strategy).approved


def test_max_position_includes_current_reservations() -> None:
    limits = Limits(denomination=WETH, max_position=250)
    reserved = Exposure(open_count=1, reserved={WETH: 150})
    assert decide(opportunity(amount_in=100), context(limits, tenant_exposure=reserved)).approved
    verdict = decide(opportunity(amount_in=101), context(limits, tenant_exposure=reserved))
    assert verdict.reason_code == R.RISK_REASON_CODE_MAX_POSITION
    assert verdict.reason == "position 251 after this trade > max_position 250"
    # Reservations in another token do not count against this one.
    other = Exposure(open_count=1, reserved={USDC: 10**30})
    assert decide(opportunity(amount_in=250), context(limits, tenant_exposure=other)).approved
    # An input in another token cannot be measured against a WETH limit.
    assert not decide(opportunity(input_token=USDC), context(limits)).approved


def test_zero_amount_rejected() -> None:
    assert not decide(opportunity(amount_in=0), context()).approved


def test_facts_from_opportunity_proto() -> None:
    opp = events_pb2.Opportunity(
        opportunity_id="o1",
        strategy_id="s1",
        chain_id=1,
        amount_in="1000000000000000000000",
        expected_profit="30",
        expected_profit_net_of_gas="20",
        gas_price="7",
        detected_block=5,
        deadline_block=6,
        hops=[
            events_pb2.RouteHop(
                chain_id=1, token_in=WETH.address.upper().replace("0X", "0x"), token_out=USDC.address
            ),
            events_pb2.RouteHop(chain_id=1, token_in=USDC.address, token_out=WETH.address),
        ],
    )
    opp.profit_token.chain_id = 1
    opp.profit_token.address = WETH.address
    facts = OpportunityFacts.from_proto(opp)
    assert facts.input_token == WETH  # addresses compare case-insensitively
    assert facts.amount_in == 10**21
    assert facts.net_profit == 20
    assert facts.gas_price_wei == 7
    assert facts.tokens == {WETH, USDC}
    assert facts.chain_ids == {1}
