"""The `mevaas up` live view: per-tenant aggregation of the hot path's protobuf events."""

from __future__ import annotations

import uuid

from rich.console import Console

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_local.live_view import LiveView

WETH = common_pb2.Token(chain_id=31337, address="0x" + "a1" * 20, symbol="WETH", decimals=18)
USDC = common_pb2.Token(chain_id=31338, address="0x" + "b2" * 20, symbol="USDC", decimals=6)
ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())


def feed(view: LiveView, subject: str, message: object, msg_id: str | None = None) -> None:
    assert hasattr(message, "SerializeToString")
    view.observe(subject, message.SerializeToString(), {"Nats-Msg-Id": msg_id or str(uuid.uuid4())})


def opportunity(tenant: str, opportunity_id: str) -> events_pb2.Opportunity:
    return events_pb2.Opportunity(
        tenant_id=tenant,
        opportunity_id=opportunity_id,
        chain_id=31337,
        expected_profit_net_of_gas=str(5 * 10**16),
        profit_token=WETH,
        swap_cycle=events_pb2.SwapCycleAction(hops=[events_pb2.RouteHop(), events_pb2.RouteHop()]),
    )


def decision(tenant: str, opportunity_id: str, approved: bool) -> events_pb2.RiskDecision:
    return events_pb2.RiskDecision(
        tenant_id=tenant,
        opportunity_id=opportunity_id,
        outcome=events_pb2.RISK_DECISION_OUTCOME_APPROVED
        if approved
        else events_pb2.RISK_DECISION_OUTCOME_REJECTED,
        reason_code=events_pb2.RISK_REASON_CODE_WITHIN_LIMITS
        if approved
        else events_pb2.RISK_REASON_CODE_KILL_SWITCH_ENGAGED,
    )


def result(
    tenant: str, execution_id: str, status: int, profit: int = 0, token: common_pb2.Token = WETH
) -> events_pb2.ExecutionResult:
    return events_pb2.ExecutionResult(
        tenant_id=tenant,
        execution_id=execution_id,
        status=status,  # type: ignore[arg-type]
        realized_profit=str(profit),
        profit_token=token,
    )


def rendered(view: LiveView) -> str:
    console = Console(width=250, record=True)
    console.print(view.render())
    return console.export_text()


def test_counts_opportunities_and_decisions_per_tenant() -> None:
    view = LiveView()
    for n in range(3):
        feed(view, f"opp.{ALICE}.s1", opportunity(ALICE, f"o{n}"))
    feed(view, f"opp.{BOB}.s2", opportunity(BOB, "b0"))
    feed(view, f"risk.{ALICE}.decision", decision(ALICE, "o0", approved=True))
    feed(view, f"risk.{ALICE}.decision", decision(ALICE, "o1", approved=False))
    feed(view, f"risk.{ALICE}.decision", decision(ALICE, "o2", approved=True))

    alice, bob = view.tenants[ALICE], view.tenants[BOB]
    assert (alice.opportunities, alice.approved, alice.rejected) == (3, 2, 1)
    assert (bob.opportunities, bob.approved, bob.rejected) == (1, 0, 0)
    assert "risk rejected o1 (kill_switch_engaged)" in view.recent[-2]


def test_executions_by_latest_status_and_pnl_booked_once_per_token() -> None:
    view = LiveView()
    subject = f"exec.{ALICE}.result"
    feed(view, subject, result(ALICE, "e1", common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED))
    feed(view, subject, result(ALICE, "e2", common_pb2.EXECUTION_RESULT_STATUS_SUBMITTED))
    assert view.tenants[ALICE].executions() == {"submitted": 2}

    feed(view, subject, result(ALICE, "e1", common_pb2.EXECUTION_RESULT_STATUS_INCLUDED, 3 * 10**16))
    feed(view, subject, result(ALICE, "e2", common_pb2.EXECUTION_RESULT_STATUS_REVERTED, -2 * 10**15))
    feed(view, subject, result(ALICE, "e3", common_pb2.EXECUTION_RESULT_STATUS_INCLUDED, 1_500_000, USDC))
    # A later result for an already finished execution must not book its profit twice.
    feed(view, subject, result(ALICE, "e1", common_pb2.EXECUTION_RESULT_STATUS_INCLUDED, 3 * 10**16))

    alice = view.tenants[ALICE]
    assert alice.executions() == {"included": 2, "reverted": 1}
    assert dict(alice.pnl) == {"WETH@31337": 3 * 10**16 - 2 * 10**15, "USDC@31338": 1_500_000}
    text = rendered(view)
    assert "0.028 WETH@31337" in text and "1.5 USDC@31338" in text
    assert "included 2, reverted 1" in text


def test_republished_events_are_counted_once() -> None:
    view = LiveView()
    message = opportunity(ALICE, "o1")
    feed(view, f"opp.{ALICE}.s1", message, msg_id="opp:o1")
    feed(view, f"opp.{ALICE}.s1", message, msg_id="opp:o1")
    included = result(ALICE, "e1", common_pb2.EXECUTION_RESULT_STATUS_INCLUDED, 10)
    feed(view, f"exec.{ALICE}.result", included, msg_id="result:e1")
    feed(view, f"exec.{ALICE}.result", included, msg_id="result:e1")
    assert view.tenants[ALICE].opportunities == 1
    assert view.tenants[ALICE].pnl["WETH@31337"] == 10


def test_blocks_undecodable_payloads_and_other_subjects() -> None:
    view = LiveView()
    feed(view, "chain.31337.block", events_pb2.MarketUpdate(chain_id=31337, block_number=41))
    feed(view, "chain.31337.block", events_pb2.MarketUpdate(chain_id=31337, block_number=42))
    view.observe(f"opp.{ALICE}.s1", b"\xff\xff not protobuf", {})
    feed(view, f"risk.{ALICE}.breach", events_pb2.RiskBreach(tenant_id=ALICE))
    assert view.blocks == {31337: 42}
    assert view.unreadable == 1
    assert ALICE not in view.tenants
    text = rendered(view)
    assert "chain 31337: block 42" in text and "1 messages could not be decoded" in text


def test_recent_events_keep_the_latest_few() -> None:
    view = LiveView()
    for n in range(LiveView.RECENT_EVENTS + 4):
        feed(view, f"opp.{ALICE}.s1", opportunity(ALICE, f"opp-{n:04d}"))
    assert len(view.recent) == LiveView.RECENT_EVENTS
    assert "opportunity opp-0009: swap_cycle on chain 31337, net 0.05 WETH@31337" in view.recent[-1]
    assert "waiting" in rendered(LiveView())
