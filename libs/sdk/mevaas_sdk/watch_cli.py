"""`mevaas watch`: executions and positions as they change, from any terminal.

The v1 gRPC API has no server-streaming RPC, so this polls (ListExecutions and GetPositions every
`--interval` seconds) and says so when it starts; each change is printed once: a new execution, an
execution whose status moved, a position whose balance moved. `--json` prints one JSON object per
line (`{"event": "execution" | "position", ...}`), for scripts.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from mevaas_sdk.cli_support import JsonOption, RawOption, console, enum_name, err, run_call
from mevaas_sdk.units import format_units

app = typer.Typer(help="Follow executions and positions live.", no_args_is_help=False)
RECENT = 100


@dataclass
class Seen:
    """What was shown last, to print each change once."""

    executions: dict[str, int] = field(default_factory=dict)
    positions: dict[tuple[int, str, str], tuple[str, str]] = field(default_factory=dict)
    events: int = 0


@dataclass(frozen=True)
class WatchOptions:
    session: str
    strategy: str
    positions: bool
    interval: float
    count: int
    seconds: float
    raw: bool
    as_json: bool


def _amount(base: str, token: Any, raw: bool) -> str:
    if raw or not token.address:
        return f"{base or '0'} {token.symbol}".strip()
    return f"{format_units(base or '0', token.decimals)} {token.symbol or token.address}"


def _execution_line(e: Any, raw: bool) -> str:
    from mevaas.common.v1 import common_pb2

    status = enum_name(common_pb2.ExecutionResultStatus, e.status).upper()
    parts = [f"execution {e.execution_id} chain {e.chain_id} {status}"]
    if e.realized_profit:
        parts.append(f"profit {_amount(e.realized_profit, e.profit_token, raw)}")
    elif e.expected_profit:
        parts.append(f"expected {_amount(e.expected_profit, e.profit_token, raw)}")
    if e.block_number:
        parts.append(f"block {e.block_number}")
    if e.tx_hashes:
        parts.append(f"tx {e.tx_hashes[-1]}")
    if e.error:
        parts.append(f"error: {e.error}")
    return " ".join(parts)


def _emit(seen: Seen, options: WatchOptions, kind: str, message: Any, line: str) -> None:
    from google.protobuf.json_format import MessageToDict

    seen.events += 1
    if options.as_json:
        print(
            json.dumps({"event": kind, **MessageToDict(message, preserving_proto_field_name=True)}),
            flush=True,
        )
    else:
        console.print(f"{time.strftime('%H:%M:%S')} {line}", highlight=False, markup=False)


async def _poll_executions(client: Any, seen: Seen, options: WatchOptions, announce: bool) -> None:
    from mevaas.common.v1 import common_pb2
    from mevaas.execution.v1 import execution_pb2

    listed = await client.execution.ListExecutions(
        execution_pb2.ListExecutionsRequest(
            page=common_pb2.PageRequest(page_size=RECENT),
            session_id=options.session,
            strategy_id=options.strategy,
        )
    )
    for e in reversed(listed.executions):  # oldest first, so lines read in order
        if seen.executions.get(e.execution_id) == e.status:
            continue
        seen.executions[e.execution_id] = e.status
        if announce:
            _emit(seen, options, "execution", e, _execution_line(e, options.raw))


async def _poll_positions(client: Any, seen: Seen, options: WatchOptions, announce: bool) -> None:
    from mevaas.portfolio.v1 import portfolio_pb2

    found = await client.portfolio.GetPositions(portfolio_pb2.GetPositionsRequest(include_zero=True))
    for p in found.positions:
        key = (p.token.chain_id, p.wallet_address.lower(), p.token.address.lower())
        now = (p.wallet_balance or "0", p.executor_balance or "0")
        before = seen.positions.get(key)
        seen.positions[key] = now
        if not announce or before == now or before is None:
            continue
        moved = ", ".join(
            f"{where} {_amount(old, p.token, options.raw)} -> {_amount(new, p.token, options.raw)}"
            for where, old, new in (("wallet", before[0], now[0]), ("executor", before[1], now[1]))
            if old != new
        )
        _emit(
            seen,
            options,
            "position",
            p,
            f"position {p.token.symbol} chain {p.token.chain_id} {p.wallet_address}: {moved}",
        )


async def _watch(client: Any, options: WatchOptions) -> Seen:
    seen = Seen()
    deadline = time.monotonic() + options.seconds if options.seconds else None
    first = True
    while True:
        await _poll_executions(client, seen, options, announce=not first)
        if options.positions:
            await _poll_positions(client, seen, options, announce=not first)
        if first:
            err.print(
                f"watching {len(seen.executions)} recent execution(s)"
                + (f" and {len(seen.positions)} position(s)" if options.positions else "")
                + "; new ones and changes follow",
                highlight=False,
            )
            first = False
        if (options.count and seen.events >= options.count) or (deadline and time.monotonic() >= deadline):
            return seen
        await asyncio.sleep(options.interval)


@app.command("watch")
def watch(
    session: Annotated[str, typer.Option(help="Only this session's executions.")] = "",
    strategy: Annotated[str, typer.Option(help="Only this strategy's executions.")] = "",
    positions: Annotated[
        bool, typer.Option(help="Also follow positions (balances read from the chain).")
    ] = True,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.2)] = 2.0,
    count: Annotated[int, typer.Option(help="Stop after this many changes (0: never).")] = 0,
    seconds: Annotated[float, typer.Option("--for", help="Stop after this many seconds (0: never).")] = 0.0,
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """Print executions and positions as they change (polling; Ctrl-C to stop)."""
    err.print(
        f"polling every {interval:g}s: the gRPC API has no streaming RPC (the gateway streams over "
        "server-sent events); Ctrl-C to stop",
        highlight=False,
    )
    options = WatchOptions(session, strategy, positions, interval, count, seconds, raw, as_json)
    run_call(lambda c: _watch(c, options))
