"""`mevaas config show`: every setting the CLI would use, and where each came from (no secrets)."""

from __future__ import annotations

import typer

from mevaas_sdk.cli_support import STATE, JsonOption, console, fail, table
from mevaas_sdk.config import ConfigError
from mevaas_sdk.config_show import HEADER, rows
from mevaas_sdk.config_show import as_json as as_json_text
from mevaas_sdk.errors import EXIT_CONFIG

app = typer.Typer(help="Where each setting comes from (flags, env, file, make run).", no_args_is_help=True)


@app.command("show")
def show(as_json: JsonOption = False) -> None:
    """Each endpoint and the API key (never its value), with the flag, variable or file it came from."""
    try:
        found, looked_at = rows(STATE.overrides)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    if as_json:
        print(as_json_text(found, looked_at))
        return
    shown = table(*HEADER)
    for row in found:
        shown.add_row(*row)
    console.print(shown)
    console.print("looked at: " + "; ".join(looked_at), highlight=False)
