"""The pre-trade check, limit by limit, on hand-built contexts (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mevaas.events.v1 import events_pb2
from mevaas_risk.domain.actions import ActionFacts, facts_of
from mevaas_risk.domain.checks import Exposure, OpportunityFacts, RiskContext, decide
from mevaas_risk.domain.limits import Limits, TokenKey

WETH = TokenKey.of(1, "0x" + "aa" * 20)
USDC = TokenKey.of(1, "0x" + "bb" * 20)
R = events_pb2


def opportunity(input_token: TokenKey = WETH, amount_in: int = 100, **overrides: object) -> OpportunityFacts:
    base = OpportunityFacts(
        strategy_id="s1",
        action=ActionFacts("swap_cycle", frozenset({1}), frozenset({WETH, USDC}), input_token, amount_in),
        chain_ids=frozenset({1}),
        tokens=frozenset({WETH, USDC}),
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
        expected_profit="30",
        expected_profit_net_of_gas="20",
        gas_price="7",
        detected_block=5,
        deadline_block=6,
        swap_cycle=events_pb2.SwapCycleAction(
            hops=[
                events_pb2.RouteHop(
                    chain_id=1, token_in=WETH.address.upper().replace("0X", "0x"), token_out=USDC.address
                ),
                events_pb2.RouteHop(chain_id=1, token_in=USDC.address, token_out=WETH.address),
            ],
            amount_in="1000000000000000000000",
            financing=events_pb2.FINANCING_INVENTORY,
        ),
    )
    opp.profit_token.chain_id = 1
    opp.profit_token.address = WETH.address
    facts = OpportunityFacts.from_proto(opp)
    assert facts.exposure_token == WETH  # addresses compare case-insensitively
    assert facts.exposure_amount == 10**21
    assert facts.net_profit == 20
    assert facts.gas_price_wei == 7
    assert facts.tokens == {WETH, USDC}
    assert facts.chain_ids == {1}


def test_an_opportunity_without_action_is_refused_not_measured_as_zero() -> None:
    facts = OpportunityFacts.from_proto(
        events_pb2.Opportunity(opportunity_id="o1", strategy_id="s1", chain_id=1)
    )
    assert facts.action is None
    verdict = decide(facts, context())
    assert not verdict.approved
    assert verdict.reason_code == R.RISK_REASON_CODE_UNSUPPORTED_ACTION


def test_cross_chain_exposure_is_the_first_legs_input_on_its_chain() -> None:
    other = "0x" + "cc" * 20
    opp = events_pb2.Opportunity(
        chain_id=1,
        cross_chain=events_pb2.CrossChainAction(
            legs=[
                events_pb2.CrossChainLeg(
                    chain_id=1,
                    hops=[events_pb2.RouteHop(chain_id=1, token_in=WETH.address, token_out=USDC.address)],
                    amount_in="500",
                ),
                events_pb2.CrossChainLeg(
                    chain_id=2,
                    hops=[events_pb2.RouteHop(token_in=other, token_out=WETH.address)],
                    amount_in="9",
                ),
            ]
        ),
    )
    facts = facts_of(opp)
    assert facts is not None
    assert facts.exposure_token == WETH and facts.exposure_amount == 500
    assert facts.chain_ids == {1, 2}
    assert TokenKey.of(2, other) in facts.tokens and TokenKey.of(2, WETH.address) in facts.tokens


def test_liquidation_exposes_the_debt_repaid_and_screens_the_borrower() -> None:
    borrower = "0x" + "Dd" * 20
    opp = events_pb2.Opportunity(
        chain_id=1,
        liquidation=events_pb2.LiquidationAction(
            borrower=borrower,
            debt_asset=USDC.to_proto(),
            collateral_asset=WETH.to_proto(),
            debt_to_cover="2500",
        ),
    )
    facts = facts_of(opp)
    assert facts is not None
    assert (facts.exposure_token, facts.exposure_amount) == (USDC, 2500)
    assert facts.counterparties == {borrower.lower()}
    assert facts.tokens == {WETH, USDC}


def test_withdrawal_exposes_its_amount_and_names_its_destination() -> None:
    destination = "0x" + "ee" * 20
    opp = events_pb2.Opportunity(
        chain_id=1,
        withdrawal=events_pb2.WithdrawalAction(token=WETH.to_proto(), amount="7", destination=destination),
    )
    facts = facts_of(opp)
    assert facts is not None
    assert (facts.exposure_token, facts.exposure_amount, facts.counterparties) == (
        WETH,
        7,
        frozenset({destination}),
    )


def test_rebalance_trade_exposes_what_it_spends_and_every_token_of_its_route() -> None:
    dai = "0x" + "da" * 20
    opp = events_pb2.Opportunity(
        chain_id=1,
        rebalance_trade=events_pb2.RebalanceTradeAction(
            rebalance_id="r1",
            hops=[
                events_pb2.RouteHop(token_in=WETH.address, token_out=USDC.address),
                events_pb2.RouteHop(chain_id=1, token_in=USDC.address, token_out=dai),
            ],
            amount_in="4200",
            min_amount_out="1",
        ),
    )
    facts = facts_of(opp)
    assert facts is not None
    assert facts.kind == "rebalance_trade"
    assert (facts.exposure_token, facts.exposure_amount) == (WETH, 4200)
    assert facts.tokens == {WETH, USDC, TokenKey.of(1, dai)} and facts.chain_ids == {1}


def test_a_sanctioned_counterparty_is_refused_naming_it() -> None:
    from mevaas_core.sanctions import SanctionsList, parse

    pool = "0x" + "cc" * 20
    listed = SanctionsList(parse(pool + ",OFAC-SDN"))
    facts = opportunity(
        action=ActionFacts(
            "swap_cycle", frozenset({1}), frozenset({WETH, USDC}), WETH, 100, counterparties=frozenset({pool})
        )
    )
    assert decide(facts, context()).approved
    verdict = decide(facts, context(), listed)
    assert verdict.reason_code == R.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY
    assert pool in verdict.reason and "OFAC-SDN" in verdict.reason
    assert verdict.breach is not None and verdict.breach.kind == R.BREACH_KIND_SANCTIONED_COUNTERPARTY


def test_every_pool_and_token_of_a_route_is_a_counterparty() -> None:
    opp = events_pb2.Opportunity(chain_id=1)
    opp.swap_cycle.hops.add(pool="0x" + "01" * 20, token_in=WETH.address, token_out=USDC.address)
    opp.swap_cycle.amount_in = "5"
    facts = facts_of(opp)
    assert facts is not None
    assert facts.counterparties == {"0x" + "01" * 20, WETH.address.lower(), USDC.address.lower()}


def deleverage_facts(**overrides: object) -> OpportunityFacts:
    """A deleverage as risk sees it: repays 2500 USDC-units, earns nothing and costs its gas."""
    opp = events_pb2.Opportunity(
        chain_id=1,
        strategy_id="protection-1",
        profit_token=USDC.to_proto(),
        expected_profit="0",
        expected_profit_net_of_gas="-40",
        gas_price="5",
        detected_block=10,
        deadline_block=12,
        deleverage=events_pb2.DeleverageAction(
            account="0x" + "cc" * 20,
            debt_asset=USDC.to_proto(),
            collateral_asset=WETH.to_proto(),
            repay_amount="2500",
            collateral_amount="1",
            emergency=True,
        ),
    )
    return replace(OpportunityFacts.from_proto(opp), **overrides)  # type: ignore[arg-type]


def test_a_deleverage_is_protective_and_exposes_the_debt_it_repays() -> None:
    facts = deleverage_facts()
    assert facts.action is not None and facts.action.protective
    assert (facts.exposure_token, facts.exposure_amount) == (USDC, 2500)
    assert facts.tokens == {WETH, USDC}
    # Every other kind is not protective.
    assert opportunity().action is not None and not opportunity().action.protective  # type: ignore[union-attr]


def test_profit_loss_position_and_concurrency_limits_do_not_stop_a_protective_action() -> None:
    tight = Limits(
        denomination=WETH,  # not the deleverage's token either
        min_profit=1,
        daily_loss_limit=10,
        max_position=1,
        max_concurrent_executions=1,
    )
    busy = Exposure(open_count=5, reserved={WETH: 10})
    ctx = context(tight, tight, tenant_exposure=busy, strategy_exposure=busy, tenant_pnl_today=-(10**9))
    # The same limits refuse an ordinary trade.
    assert not decide(opportunity(net_profit=-40), ctx).approved
    verdict = decide(deleverage_facts(), ctx)
    assert verdict.approved, verdict.reason
    assert verdict.reason_code == R.RISK_REASON_CODE_WITHIN_LIMITS
    assert verdict.reason.startswith("protective action")


@pytest.mark.parametrize("switch", ["platform_kill_switch", "tenant_kill_switch", "strategy_kill_switch"])
def test_every_kill_switch_stops_even_an_emergency_deleverage(switch: str) -> None:
    overrides: dict[str, Any] = {switch: True}
    verdict = decide(deleverage_facts(), replace(context(), **overrides))
    assert not verdict.approved
    assert verdict.reason_code == R.RISK_REASON_CODE_KILL_SWITCH_ENGAGED


def test_allow_lists_gas_price_staleness_and_suspension_still_hold_for_a_deleverage() -> None:
    assert (
        decide(deleverage_facts(), context(Limits(allowed_chain_ids=frozenset({2})))).reason_code
        == R.RISK_REASON_CODE_CHAIN_NOT_ALLOWED
    )
    assert (
        decide(deleverage_facts(), context(Limits(allowed_tokens=frozenset({USDC})))).reason_code
        == R.RISK_REASON_CODE_TOKEN_NOT_ALLOWED
    )
    assert (
        decide(deleverage_facts(), context(Limits(max_gas_price_wei=4))).reason_code
        == R.RISK_REASON_CODE_MAX_GAS_PRICE
    )
    assert decide(deleverage_facts(detected_block=13), context()).reason_code == R.RISK_REASON_CODE_STALE
    assert (
        decide(deleverage_facts(), context(tenant_suspended=True)).reason_code
        == R.RISK_REASON_CODE_TENANT_SUSPENDED
    )
    assert not decide(deleverage_facts(), context(tenant_suspended=True)).approved
