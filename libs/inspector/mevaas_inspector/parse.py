"""Turn raw `trace_block` / receipt JSON into typed records.

Accepts both the fixture shape (snake_case outer keys, decimal receipt numbers) and the JSON-RPC
shape anvil, Erigon and Reth return (camelCase outer keys, hex quantities), so every caller
normalises at this one edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from mevaas_inspector.models import BlockData, Receipt, Trace


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith(("0x", "0X")) else int(value)
    raise TypeError(f"not an integer quantity: {value!r}")


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _addr(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def _get(raw: dict[str, Any], snake: str, camel: str) -> Any:
    return raw[snake] if snake in raw else raw.get(camel)


def _hex(value: Any) -> int:
    # Fast path for the overwhelmingly common hex-string quantity.
    if value.__class__ is str and value[:2] == "0x":
        return int(value, 16)
    return _int(value)


def parse_traces(raw_traces: list[dict[str, Any]], *, state_changing_only: bool = False) -> tuple[Trace, ...]:
    """Parse traces, computing each call's effective revert state from its ancestors.

    With `state_changing_only`, staticcall and delegatecall frames are not materialised (their
    revert state still reaches their children): they move no value and are never a swap,
    transfer or liquidation entry point, and skipping them roughly halves parsing."""
    out: list[Trace] = []
    append = out.append
    reverted_at: dict[tuple[int, ...], bool] = {}
    current_tx: Any = object()
    for raw in raw_traces:
        action = raw.get("action") or {}
        result = raw.get("result")
        if "transaction_hash" in raw:
            tx_hash = raw["transaction_hash"]
            trace_address = tuple(raw.get("trace_address") or ())
            position = raw.get("transaction_position")
            block_number = raw.get("block_number")
        else:
            tx_hash = raw.get("transactionHash")
            trace_address = tuple(raw.get("traceAddress") or ())
            position = raw.get("transactionPosition")
            block_number = raw.get("blockNumber")
        if tx_hash != current_tx:
            current_tx = tx_hash
            reverted_at = {}
        error = raw.get("error")
        kind = raw.get("type", "call")
        call_type = action.get("callType")
        if kind == "delegateCall":
            # Some exporters spell a delegatecall as its own trace type; keep one spelling.
            kind, call_type = "call", "delegatecall"
        reverted = error is not None or (bool(trace_address) and reverted_at.get(trace_address[:-1], False))
        reverted_at[trace_address] = reverted
        if state_changing_only and call_type in ("staticcall", "delegatecall"):
            continue
        if kind == "call":
            from_address, to_address = action["from"].lower(), action["to"].lower()
            value = action.get("value")
        elif kind == "reward":
            from_address, to_address = "", _addr(action.get("author"))
            value = action.get("value")
        elif kind == "suicide":
            from_address, to_address = _addr(action.get("address")), _addr(action.get("refundAddress"))
            value = action.get("balance")
        else:
            from_address = _addr(action.get("from"))
            to_address = _addr(result.get("address")) if result else ""
            value = action.get("value")
        append(
            Trace(
                block_number=_hex(block_number) if block_number is not None else 0,
                transaction_hash=tx_hash.lower() if tx_hash is not None else None,
                transaction_position=None if position is None else _hex(position),
                trace_address=trace_address,
                type=kind,
                call_type=call_type,
                from_address=from_address,
                to_address=to_address,
                value=0 if value in (None, "0x0") else _hex(value),
                input=action.get("input") or action.get("init") or "0x",
                output=(result.get("output") or "0x") if result else "0x",
                gas_used=_hex(result["gasUsed"]) if result and "gasUsed" in result else 0,
                subtraces=raw.get("subtraces") or 0,
                error=error,
                reverted=reverted,
            )
        )
    return tuple(out)


def parse_receipts(raw_receipts: list[dict[str, Any]]) -> tuple[Receipt, ...]:
    out: list[Receipt] = []
    for raw in raw_receipts:
        to = _get(raw, "to", "to")
        out.append(
            Receipt(
                transaction_hash=str(_get(raw, "transaction_hash", "transactionHash")).lower(),
                transaction_index=_int(_get(raw, "transaction_index", "transactionIndex")),
                gas_used=_int(_get(raw, "gas_used", "gasUsed")),
                effective_gas_price=_int(_get(raw, "effective_gas_price", "effectiveGasPrice")),
                cumulative_gas_used=_int(_get(raw, "cumulative_gas_used", "cumulativeGasUsed")),
                to_address=to.lower() if isinstance(to, str) else None,
                status=_opt_int(raw.get("status")),
            )
        )
    return tuple(out)


def parse_block(raw: dict[str, Any], *, state_changing_only: bool = False) -> BlockData:
    """Build BlockData from a dict holding `traces`, `receipts` and block header fields."""
    traces = parse_traces(raw.get("traces") or [], state_changing_only=state_changing_only)
    number = _get(raw, "block_number", "blockNumber")
    if number is None and traces:
        number = traces[0].block_number
    timestamp = _get(raw, "block_timestamp", "timestamp")
    return BlockData(
        block_number=_int(number),
        miner=_addr(raw.get("miner")),
        base_fee_per_gas=_int(_get(raw, "base_fee_per_gas", "baseFeePerGas")),
        block_timestamp=_opt_int(timestamp),
        traces=traces,
        receipts=parse_receipts(raw.get("receipts") or []),
    )


def load_block_file(path: str | Path, *, state_changing_only: bool = False) -> BlockData:
    return parse_block(orjson.loads(Path(path).read_bytes()), state_changing_only=state_changing_only)
