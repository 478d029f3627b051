"""`mevaas config show` without typer, rich or grpc: the rows and their plain printing.

`cli.main` runs it directly when the command line is just the root options, `config show` and
`--json`, so it starts about as fast as `--help`; `config_cli` (the typer command, for anything
else on that line) prints the same rows.
"""

from __future__ import annotations

import json
import sys

from mevaas_sdk.config import SERVICES, ConfigError, Overrides, resolve

Row = tuple[str, str, str]
HEADER: Row = ("setting", "value", "from")


def rows(overrides: Overrides) -> tuple[list[Row], list[str]]:
    """Each setting's (name, shown value, source), and every place looked at; ConfigError if bad."""
    resolved = resolve(overrides)
    settings = dict(resolved.settings)
    default = settings.get("endpoint.default")
    found: list[Row] = []
    for name in ("profile", "api_key", "endpoint.default"):
        s = settings.get(name)
        found.append((name, s.shown() if s else "", s.source if s else "not set"))
    for service in SERVICES:
        s = settings.get(f"endpoint.{service}")
        if s:
            found.append((f"endpoint.{service}", s.value, s.source))
        elif default:
            found.append((f"endpoint.{service}", default.value, f"endpoint.default ({default.source})"))
        else:
            found.append((f"endpoint.{service}", "", "not set"))
    return found, list(resolved.looked_at)


def as_json(found: list[Row], looked_at: list[str]) -> str:
    settings = [{"name": n, "value": v, "source": src} for n, v, src in found]
    return json.dumps({"settings": settings, "looked_at": looked_at}, indent=2)


def as_text(found: list[Row], looked_at: list[str]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *found]) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [HEADER, *found]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "looked at: " + "; ".join(looked_at)])


def run(overrides: Overrides, json_out: bool) -> int:
    """Print the settings; the exit code (EXIT_CONFIG, with one error line, for a bad config)."""
    try:
        found, looked_at = rows(overrides)
    except ConfigError as exc:
        from mevaas_sdk.errors import EXIT_CONFIG  # dataclasses and all: only when it fails

        if json_out:
            print(json.dumps({"error": {"code": "ERROR", "message": str(exc)}}), file=sys.stderr)
        else:
            print(f"error {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(as_json(found, looked_at) if json_out else as_text(found, looked_at), flush=True)
    return 0
