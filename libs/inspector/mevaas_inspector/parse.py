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


def parse_traces(raw_traces: list[dict[str, Any]]) -> tuple[Trace, ...]:
    """Parse traces, computing each call's effective revert state from its ancestors."""
    out: list[Trace] = []
    reverted_at: dict[tuple[str | None, tuple[int, ...]], bool] = {}
    for raw in raw_traces:
        action = raw.get("action") or {}
        result = raw.get("result") or {}
        tx_hash = _get(raw, "transaction_hash", "transactionHash")
        trace_address = tuple(_get(raw, "trace_address", "traceAddress") or ())
        error = raw.get("error")
        kind = raw.get("type", "call")
        call_type = action.get("callType")
        if kind == "delegateCall":
            # Some exporters spell a delegatecall as its own trace type; keep one spelling.
            kind, call_type = "call", "delegatecall"
        parent_reverted = reverted_at.get((tx_hash, trace_address[:-1]), False) if trace_address else False
        reverted = parent_reverted or error is not None
        if tx_hash is not None:
            reverted_at[(tx_hash, trace_address)] = reverted
        if kind == "reward":
            from_address, to_address = "", _addr(action.get("author"))
        elif kind == "suicide":
            from_address, to_address = _addr(action.get("address")), _addr(action.get("refundAddress"))
        elif kind == "create":
            from_address, to_address = _addr(action.get("from")), _addr(result.get("address"))
        else:
            from_address, to_address = _addr(action.get("from")), _addr(action.get("to"))
        value = action.get("value") if kind != "suicide" else action.get("balance")
        out.append(
            Trace(
                block_number=_int(_get(raw, "block_number", "blockNumber")),
                transaction_hash=tx_hash.lower() if isinstance(tx_hash, str) else None,
                transaction_position=_opt_int(_get(raw, "transaction_position", "transactionPosition")),
                trace_address=trace_address,
                type=kind,
                call_type=call_type,
                from_address=from_address,
                to_address=to_address,
                value=_int(value),
                input=(action.get("input") or action.get("init") or "0x").lower(),
                output=(result.get("output") or "0x") if result else "0x",
                gas_used=_int(result.get("gasUsed")) if result else 0,
                subtraces=_int(raw.get("subtraces")),
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


def parse_block(raw: dict[str, Any]) -> BlockData:
    """Build BlockData from a dict holding `traces`, `receipts` and block header fields."""
    traces = parse_traces(raw.get("traces") or [])
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


def load_block_file(path: str | Path) -> BlockData:
    return parse_block(orjson.loads(Path(path).read_bytes()))
