"""What every `mevaas` command shares: the consoles, `--json`, running one API interaction, errors
as readable lines (or JSON) with the documented exit codes, and confirmations.

Errors are one clear line on stderr (plus one line per further field violation) and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mevaas_sdk.config import ConfigError, Overrides
from mevaas_sdk.errors import EXIT_CONFIG, EXIT_DECLINED

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from mevaas_sdk.client import MevaasClient

T = TypeVar("T")
# Piped output is not cut to 80 columns: ids and addresses stay whole (a terminal wraps them).
_WIDTH = None if sys.stdout.isatty() else 10_000
console = Console(width=_WIDTH, soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, soft_wrap=True)


@dataclass
class CliState:
    """Set by the root command's options (and --json) before a command runs."""

    overrides: Overrides = field(default_factory=Overrides)
    json_errors: bool = False


STATE = CliState()


def _remember_json(value: bool) -> bool:
    STATE.json_errors = value
    return value


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table.", callback=_remember_json)
]
RawOption = Annotated[bool, typer.Option("--raw", help="Amounts in integer base units, not tokens.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def table(*columns: str, title: str | None = None) -> Table:
    """A table whose cells wrap instead of cutting ids short."""
    t = Table(title=title)
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def report_failure(lines: list[str], data: dict[str, Any], code: int) -> typer.Exit:
    if STATE.json_errors:
        print(json.dumps({"error": data}), file=sys.stderr)
    else:
        # Server text is data, not markup: `[viewer]` must stay as it is.
        err.print(f"[red]error[/red] {escape(lines[0])}", highlight=False)
        for line in lines[1:]:
            err.print(line, highlight=False, markup=False)
    return typer.Exit(code)


def fail(message: str, code: int = 2) -> typer.Exit:
    return report_failure([message], {"code": "USAGE" if code == 2 else "ERROR", "message": message}, code)


def run_call(call: Callable[[MevaasClient], Awaitable[T]]) -> T:
    """Run one API interaction; turn every expected failure into a readable error and exit code."""
    import grpc

    from mevaas_sdk.client import ClientConfig, MevaasClient
    from mevaas_sdk.errors import exit_code, failure

    async def go() -> T:
        async with MevaasClient(ClientConfig.load(STATE.overrides)) as client:
            return await call(client)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as exc:
        found = failure(exc)
        lines = found.lines()
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            lines.append("  (is an API key configured? `mevaas config show` says where it comes from)")
        raise report_failure(lines, found.as_dict(), exit_code(exc)) from None
    except ConfigError as exc:
        raise report_failure([str(exc)], {"code": "CONFIG", "message": str(exc)}, EXIT_CONFIG) from None


def emit(
    message: Message, as_json: bool, columns: list[str] | None = None, rows_field: str | None = None
) -> None:
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(message, preserving_proto_field_name=True)
    if as_json or columns is None:
        print_json(data)
        return
    rows = data.get(rows_field, []) if rows_field else [data]
    shown = table(*columns)
    for row in rows:
        shown.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(shown)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour codes, whatever the terminal), one document per call."""
    print(json.dumps(data, indent=2))


def confirm(question: str, yes: bool) -> None:
    """Ask before moving money; `--yes` skips it. Declining exits 7 and nothing is sent."""
    if yes:
        return
    err.print(question + " [y/N] ", end="", highlight=False, markup=False)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise fail("not confirmed; nothing was sent (pass --yes to skip the question)", EXIT_DECLINED)


def enum_name(enum: Any, value: int) -> str:
    """`EXECUTOR_LIVENESS_LIVE` -> `live`: the enum's prefix dropped, as people write it."""
    name: str = enum.Name(value)
    prefix = next(iter(enum.keys())).removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).lower()
