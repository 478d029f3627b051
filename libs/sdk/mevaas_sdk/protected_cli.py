"""`mevaas protected`: the tenant's protected transactions (ExecutionService.
ListProtectedTransactions, every page unless `--limit`) and one of them in full
(GetProtectedTransaction, by id or hash). The fee is the API's decimal money; a backrun refund is
shown in whole tokens with its symbol and its exact base units (only base units and the address
when the chain registry does not know the token: the API then gives no symbol or decimals), the
gas part of it likewise; ids and hashes are printed whole."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_sdk.cli_support import JsonOption, console, emit, enum_name, fail, run_call, table
from mevaas_sdk.client import MevaasClient
from mevaas_sdk.units import format_units

app = typer.Typer(help="Protected transactions: list (filtered), show one.", no_args_is_help=True)
PAGE_SIZE = 200
STATUSES = ", ".join(
    enum_name(execution_pb2.ProtectedTransactionStatus, v)
    for v in execution_pb2.ProtectedTransactionStatus.values()[1:]
)
TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _status(text: str) -> execution_pb2.ProtectedTransactionStatus.ValueType:
    if not text:
        return execution_pb2.PROTECTED_TRANSACTION_STATUS_UNSPECIFIED
    try:
        return execution_pb2.ProtectedTransactionStatus.Value(f"PROTECTED_TRANSACTION_STATUS_{text.upper()}")
    except ValueError:
        raise fail(f"--status: {text!r} is not one of {STATUSES}") from None


def _time(text: str, option: str) -> Timestamp | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{option}: {text!r} is not an ISO 8601 time (2026-12-01T00:00:00Z)") from None
    if when.tzinfo is None:
        raise fail(f"{option}: {text!r} needs a time zone (Z or +00:00)")
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def refund_text(t: execution_pb2.ProtectedTransaction) -> str:
    if not t.HasField("refund"):
        return ""
    r = t.refund
    if not r.token.symbol:
        return f"{r.amount} base units of unknown token {r.token.address} ({r.gas_refund} of them for gas)"
    # gas_refund is part of amount, in the same token.
    whole, gas = (format_units(v, r.token.decimals) for v in (r.amount, r.gas_refund))
    return f"{whole} {r.token.symbol} ({r.amount} base units; {gas} {r.token.symbol} of it for gas)"


@app.command("list")
def protected_list(
    status: Annotated[str, typer.Option(help=f"Only this status: {STATUSES}.")] = "",
    sender: Annotated[str, typer.Option(help="Only transactions this 0x address signed.")] = "",
    chain_id: Annotated[int, typer.Option("--chain-id", help="Only this chain.")] = 0,
    since: Annotated[str, typer.Option(help="Received at or after (ISO 8601 with zone).")] = "",
    until: Annotated[str, typer.Option(help="Received before (ISO 8601 with zone; needs --since).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many (newest first); 0 = all.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List protected transactions, newest received first (every page, or --limit)."""
    request = execution_pb2.ListProtectedTransactionsRequest(
        status=_status(status), sender=sender, chain_id=chain_id
    )
    start, end = _time(since, "--since"), _time(until, "--until")
    if end is not None and start is None:
        raise fail("--until needs --since (the API's time range starts somewhere)")
    if start is not None:
        request.time_range.start.CopyFrom(start)
        if end is not None:
            request.time_range.end.CopyFrom(end)

    async def pages(client: MevaasClient) -> execution_pb2.ListProtectedTransactionsResponse:
        combined = execution_pb2.ListProtectedTransactionsResponse()
        token = ""
        while True:
            size = min(PAGE_SIZE, limit - len(combined.transactions)) if limit else PAGE_SIZE
            request.page.CopyFrom(common_pb2.PageRequest(page_size=size, page_token=token))
            page = await client.execution.ListProtectedTransactions(request)
            combined.transactions.extend(page.transactions)
            token = page.page.next_page_token
            if not token or (limit and len(combined.transactions) >= limit):
                return combined

    response = run_call(pages)
    if as_json:
        emit(response, True)
        return
    shown = table(
        "protected_transaction_id", "tx_hash", "sender", "chain", "status", "fee", "refund", "received_at"
    )
    for t in response.transactions:
        shown.add_row(
            t.protected_transaction_id,
            t.tx_hash,
            t.sender,
            str(t.chain_id),
            enum_name(execution_pb2.ProtectedTransactionStatus, t.status)
            + (f": {t.error}" if t.error else ""),
            f"{t.protection_fee.amount} {t.protection_fee.currency_code}"
            if t.HasField("protection_fee")
            else "",
            refund_text(t),
            t.received_at.ToJsonString() if t.HasField("received_at") else "",
        )
    console.print(shown)


@app.command("get")
def protected_get(id_or_hash: str) -> None:
    """One protected transaction in full, by its id or its 0x hash (JSON)."""
    request = (
        execution_pb2.GetProtectedTransactionRequest(tx_hash=id_or_hash)
        if TX_HASH.match(id_or_hash)
        else execution_pb2.GetProtectedTransactionRequest(protected_transaction_id=id_or_hash)
    )
    emit(run_call(lambda c: c.execution.GetProtectedTransaction(request)), True)
