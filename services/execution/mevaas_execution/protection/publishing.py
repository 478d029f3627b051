"""Events of protected transactions, written to the outbox in the transaction that changes the
record: ``exec.<tenant>.protected`` (recorded, and every later status; analytics bills and reports
from it) and ``exec.<tenant>.ordering`` (a fair-ordering receipt)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_chain.rawtx import RawTransactionError, decode_signed
from mevaas_core import outbox
from mevaas_core.sanctions import SanctionedAddress
from mevaas_execution.events import SCHEMA
from mevaas_execution.protection.domain.ordering import Entry


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def receipt_proto(entry: Entry) -> events_pb2.OrderingReceipt:
    return events_pb2.OrderingReceipt(
        chain_id=entry.chain_id,
        sequence=entry.sequence,
        tx_hash=entry.tx_hash,
        received_at_unix_nanos=entry.received_at_unix_nanos,
        prev_hash=entry.prev_hash,
        entry_hash=entry.entry_hash,
        signature=entry.signature,
        key_id=entry.key_id,
    )


def protected_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.protected"


def ordering_subject(tenant_id: str) -> str:
    return f"exec.{tenant_id}.ordering"


async def publish_protected(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    *,
    sanctioned: Sequence[SanctionedAddress] = (),
    receipt: Entry | None = None,
    refunded: bool = False,
    to: str | None = None,
) -> None:
    """``refunded``: the event of the backrun refund booked on ``row`` (its own message id, after
    the status events). ``to``: the recipient, when the caller has it decoded already (decoding
    recovers the signer, a signature check's CPU on every event otherwise)."""
    if to is None:
        try:
            to = decode_signed(bytes(row["raw_tx"])).to
        except RawTransactionError:  # recorded only after decoding: cannot happen
            to = ""
    to = to.lower()
    event = events_pb2.ProtectedTransactionEvent(
        event_id=str(uuid.uuid4()),
        tenant_id=row["tenant_id"],
        occurred_at=_ts(datetime.now(UTC)),
        protected_transaction_id=row["protected_transaction_id"],
        chain_id=row["chain_id"],
        tx_hash=row["tx_hash"].lower(),
        sender=row["sender"].lower(),
        to=to,
        fair_ordering=row["mode"] == execution_pb2.PROTECTION_MODE_FAIR_ORDERING,
        status=row["status"],
        error=row["error"],
        reason_code=events_pb2.RISK_REASON_CODE_SANCTIONED_COUNTERPARTY
        if sanctioned
        else events_pb2.RISK_REASON_CODE_UNSPECIFIED,
        sanctioned=[
            events_pb2.SanctionedParty(address=hit.address, list_name=hit.list_name, entity=hit.entity)
            for hit in sanctioned
        ],
        source=row["source"],
        block_number=row["block_number"],
        received_at=_ts(row["received_at"]),
    )
    if row["fee_currency"]:
        # Every event carries the fee recorded at acceptance: analytics bills that figure, not
        # the plan in force at invoice time, whichever of the events it sees first.
        event.protection_fee.CopyFrom(
            common_pb2.Money(
                currency_code=row["fee_currency"],
                amount=str(row["protection_fee"] + row["fair_ordering_fee"]),
            )
        )
        event.fair_ordering_fee.CopyFrom(
            common_pb2.Money(currency_code=row["fee_currency"], amount=str(row["fair_ordering_fee"]))
        )
    if receipt is not None:
        event.ordering_receipt.CopyFrom(receipt_proto(receipt))
    if refunded and row["backrun_tx_hash"]:
        event.refund_amount = str(row["refund_amount"])
        event.refund_token = row["refund_token"].lower()
        event.gas_refund_wei = str(row["gas_refund"])
        event.backrun_tx_hash = row["backrun_tx_hash"]
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=protected_subject(row["tenant_id"]),
        message=event,
        event_id=f"protected:{row['protected_transaction_id']}:{'refund' if refunded else row['status']}",
        tenant_id=row["tenant_id"],
    )


async def publish_receipt(conn: asyncpg.Connection, tenant_id: str, entry: Entry) -> None:
    event = events_pb2.OrderingEntryAppended(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        occurred_at=_ts(datetime.now(UTC)),
        receipt=receipt_proto(entry),
    )
    await outbox.enqueue(
        conn,
        SCHEMA,
        subject=ordering_subject(tenant_id),
        message=event,
        event_id=f"ordering:{entry.chain_id}:{entry.sequence}",
        tenant_id=tenant_id,
    )
