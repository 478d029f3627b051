"""The treasury's alert and metric: ``exec.<tenant>.treasury`` TreasuryDrift through the outbox
(in the transaction that recorded the drifting reading; Nats-Msg-Id
``treasury:<chain>:<holder>:<token>:<block>``), and the Prometheus gauge of drifting holdings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter, Gauge

from mevaas.execution.v1 import execution_pb2
from mevaas_core import outbox
from mevaas_execution import convert
from mevaas_execution.events import SCHEMA
from mevaas_execution.treasury.domain.ledger import Holding

DRIFTING = Gauge(
    "mevaas_treasury_drifting_holdings",
    "Holdings (a wallet's or executor's token on a chain) whose chain balance differs from the ledger",
    ["chain_id", "holder_kind"],
)
DRIFTS = Counter(
    "mevaas_treasury_drift_total",
    "Holdings that started to drift from the ledger",
    ["chain_id", "holder_kind"],
)


def treasury_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.treasury"


async def publish_drift(
    conn: asyncpg.Connection,
    tenant_id: str,
    holding: Holding,
    *,
    chain_amount: int,
    ledger_amount: int,
    block_number: int,
) -> None:
    occurred = Timestamp()
    occurred.FromDatetime(datetime.now(UTC))
    event = execution_pb2.TreasuryDrift(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        occurred_at=occurred,
        chain_id=holding.chain_id,
        holder_address=convert.checksum(holding.holder_address),
        holder_kind=holding.holder_kind.value,
        wallet_address=convert.checksum(holding.wallet_address),
        token_address=convert.checksum(holding.token) if holding.token else "",
        chain_amount=str(chain_amount),
        ledger_amount=str(ledger_amount),
        drift=str(chain_amount - ledger_amount),
        block_number=block_number,
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=treasury_subject(tenant_id),
        message=event,
        event_id=f"treasury:{holding.chain_id}:{holding.holder_address}:{holding.token}:{block_number}",
        tenant_id=tenant_id,
    )
    DRIFTS.labels(str(holding.chain_id), holding.holder_kind.value).inc()
