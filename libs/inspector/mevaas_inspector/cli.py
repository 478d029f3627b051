"""`mevaas inspect BLOCK_FILE` or `mevaas inspect --rpc URL --block N`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mevaas_inspector.inspector import inspect_block
from mevaas_inspector.models import BlockInspection
from mevaas_inspector.parse import load_block_file
from mevaas_inspector.rpc import inspect_rpc_block

app = typer.Typer(
    help="Find MEV (arbitrages, sandwiches, liquidations) in a block.",
    # Options may follow BLOCK_FILE, as for a plain command.
    context_settings={"allow_interspersed_args": True},
)


def _short(value: str) -> str:
    return value if len(value) <= 14 else f"{value[:8]}…{value[-4:]}"


def render(result: BlockInspection, console: Console) -> None:
    console.print(
        f"block {result.block_number}: {len(result.swaps)} swaps, {len(result.arbitrages)} arbitrages, "
        f"{len(result.sandwiches)} sandwiches, {len(result.liquidations)} liquidations, "
        f"{len(result.flash_loans)} flash loans"
    )
    if result.arbitrages:
        table = Table(title="Arbitrages")
        for column in ("tx", "account", "swaps", "token", "profit", "miner payment"):
            table.add_column(column)
        for arb in result.arbitrages:
            table.add_row(
                _short(arb.transaction_hash),
                _short(arb.account_address),
                str(len(arb.swaps)),
                _short(arb.profit_token_address),
                str(arb.profit_amount),
                str(arb.gas.miner_payment) if arb.gas else "-",
            )
        console.print(table)
    if result.sandwiches:
        table = Table(title="Sandwiches")
        for column in ("frontrun", "backrun", "sandwicher", "victims", "token", "profit"):
            table.add_column(column)
        for s in result.sandwiches:
            table.add_row(
                _short(s.frontrun_swap.transaction_hash),
                _short(s.backrun_swap.transaction_hash),
                _short(s.sandwicher_address),
                str(len(s.sandwiched_swaps)),
                _short(s.profit_token_address),
                str(s.profit_amount),
            )
        console.print(table)
    if result.liquidations:
        table = Table(title="Liquidations")
        for column in (
            "tx",
            "protocol",
            "liquidator",
            "user",
            "debt",
            "repaid",
            "received token",
            "received",
        ):
            table.add_column(column)
        for li in result.liquidations:
            table.add_row(
                _short(li.transaction_hash),
                li.protocol,
                _short(li.liquidator_user),
                _short(li.liquidated_user),
                _short(li.debt_token_address),
                str(li.debt_purchase_amount),
                _short(li.received_token_address),
                str(li.received_amount),
            )
        console.print(table)


def inspect_command(
    block_file: Annotated[Path | None, typer.Argument(help="Block JSON (traces + receipts).")] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL serving trace_block.")] = None,
    block: Annotated[int | None, typer.Option("--block", help="Block number to fetch with --rpc.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Inspect a block file, or a block fetched from a node."""
    if block_file is not None:
        result = inspect_block(load_block_file(block_file))
    elif rpc is not None and block is not None:
        result = asyncio.run(inspect_rpc_block(rpc, block))
    else:
        raise typer.BadParameter("give BLOCK_FILE, or --rpc URL and --block N")
    if as_json:
        # stdlib json: token amounts exceed 64 bits, which orjson refuses.
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render(result, Console())


# The command is the app's callback, so mounting it with `add_typer(app, name="inspect")` gives
# `mevaas inspect BLOCK_FILE` rather than `mevaas inspect inspect BLOCK_FILE`.
app.callback(invoke_without_command=True)(inspect_command)
