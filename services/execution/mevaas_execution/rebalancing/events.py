"""A rebalance's outgoing events, through the transactional outbox (written in the transaction of
the change they describe):

* ``exec.<tenant>.rebalance_status`` execution.v1.RebalanceUpdated at every change, Nats-Msg-Id
  ``<rebalance_id>:<sequence>`` (analytics' PortfolioService shows the same status);
* ``opp.<tenant>.rebalance`` the Opportunity of the trade to execute next, Nats-Msg-Id its
  opportunity id, for risk's check (risk's decision then reaches the pipeline as any other).
"""

from __future__ import annotations

import uuid

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.portfolio.v1 import portfolio_pb2
from mevaas_core import outbox
from mevaas_execution import convert
from mevaas_execution.events import SCHEMA
from mevaas_execution.rebalancing.domain import states
from mevaas_execution.rebalancing.domain.trades import trade_subject


def status_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.rebalance_status"


def result(row: asyncpg.Record) -> portfolio_pb2.RebalanceResult:
    command = events_pb2.RebalanceCommand.FromString(bytes(row["command"]))
    return portfolio_pb2.RebalanceResult(
        rebalance_id=row["rebalance_id"],
        status=states.TO_PROTO[row["state"]],
        targets=command.targets,
        trades=[events_pb2.RebalanceTrade.FromString(bytes(t)) for t in row["trade_summaries"]],
        execution_ids=list(row["execution_ids"]),
        reason=row["reason"],
        created_at=convert.timestamp(row["created_at"]),
        updated_at=convert.timestamp(row["updated_at"]),
    )


async def publish_status(conn: asyncpg.Connection, row: asyncpg.Record) -> None:
    event = execution_pb2.RebalanceUpdated(
        event_id=str(uuid.uuid4()),
        tenant_id=row["tenant_id"],
        occurred_at=convert.timestamp(row["updated_at"]),
        sequence=row["sequence"],
        result=result(row),
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=status_subject(row["tenant_id"]),
        message=event,
        event_id=f"{row['rebalance_id']}:{row['sequence']}",
        tenant_id=row["tenant_id"],
    )


async def publish_trade(conn: asyncpg.Connection, opportunity: events_pb2.Opportunity) -> None:
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=trade_subject(opportunity.tenant_id),
        message=opportunity,
        event_id=opportunity.opportunity_id,
        tenant_id=opportunity.tenant_id,
    )
