"""A planned trade as the messages it travels in (pure): the ``RebalanceTradeAction`` the
``rebalance_trade`` executor runs, the ``Opportunity`` risk checks it in (on
``opp.<tenant>.rebalance``, under the tenant's limits: no strategy owns it) and the
``RebalanceTrade`` summary GetRebalance shows. A trade's opportunity id is derived from the
rebalance id and the trade's index, so every redelivery, replay or restart names the same trade
and risk and the pipeline (unique per opportunity) never decide or execute it twice."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_execution.domain.cross_chain import APPROVE_GAS, SWAP_GAS
from mevaas_execution.rebalancing.domain.planner import PlannedTrade

_NAMESPACE = uuid.UUID("6f1c7d0e-2b7a-4c5e-9a51-3d9e8f0b7c21")
ZERO_ADDRESS = "0x" + "00" * 20


def trade_opportunity_id(rebalance_id: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{rebalance_id}:{index}"))


def trade_subject(tenant_id: str) -> str:
    return f"opp.{tenant_id}.rebalance"


def trade_action(rebalance_id: str, index: int, trade: PlannedTrade) -> events_pb2.RebalanceTradeAction:
    return events_pb2.RebalanceTradeAction(
        rebalance_id=rebalance_id,
        trade_index=index,
        hops=[
            events_pb2.RouteHop(
                chain_id=trade.chain_id,
                pool=trade.pool,
                dex=trade.dex,
                token_in=trade.token_in,
                token_out=trade.token_out,
                amount_in=str(trade.amount_in),
                amount_out=str(trade.expected_out),
                fee_bps=trade.fee_bps,
            )
        ],
        amount_in=str(trade.amount_in),
        min_amount_out=str(trade.min_amount_out),
    )


def trade_summary(trade: PlannedTrade) -> events_pb2.RebalanceTrade:
    return events_pb2.RebalanceTrade(
        chain_id=trade.chain_id,
        token_in=trade.token_in,
        token_out=trade.token_out,
        amount_in=str(trade.amount_in),
        min_amount_out=str(trade.min_amount_out),
        dex=trade.dex,
    )


def trade_opportunity(
    tenant_id: str,
    action: events_pb2.RebalanceTradeAction,
    *,
    gas_token: str,
    head: int,
    gas_price: int,
    deadline_blocks: int,
    now: datetime,
) -> events_pb2.Opportunity:
    """The trade for risk's check. Not a trade for profit: expected profit 0, gas priced in the
    chain's (wrapped) native coin, so its realised profit is minus its gas."""
    chain_id = action.hops[0].chain_id
    at = Timestamp()
    at.FromDatetime(now)
    return events_pb2.Opportunity(
        event_id=trade_opportunity_id(action.rebalance_id, action.trade_index),
        tenant_id=tenant_id,
        opportunity_id=trade_opportunity_id(action.rebalance_id, action.trade_index),
        strategy_id="",
        chain_id=chain_id,
        chain_ids=[chain_id],
        rebalance_trade=action,
        expected_profit="0",
        expected_profit_net_of_gas="0",
        profit_token=common_pb2.Token(chain_id=chain_id, address=gas_token or ZERO_ADDRESS, decimals=18),
        gas_estimate=SWAP_GAS + APPROVE_GAS,
        gas_price=str(gas_price),
        detected_block=head,
        occurred_at=at,
        detected_at=at,
        deadline_block=head + deadline_blocks,
        submission_mode=common_pb2.SUBMISSION_MODE_PUBLIC_MEMPOOL,
    )
