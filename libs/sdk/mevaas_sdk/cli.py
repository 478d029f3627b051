"""The `mevaas` command line: one registry of command sources, each loaded only when it runs.

`mevaas --help` is printed from the registry alone (no click, typer, grpc or stubs imported), so it
starts about as fast as Python does; running a command imports just that command's module. A
package that is not installed (the inspector, the devnet) simply has no command.
"""

from __future__ import annotations

import importlib
import os
import sys

# Neither typing nor dataclasses on this path: importing them (typing pulls re and collections,
# dataclasses inspect) costs more than the rest of `mevaas --help`. mypy reads any TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class CommandSource(Protocol):
        """Where one top-level command comes from; `help` is known without loading it."""

        @property
        def help(self) -> str: ...

        def available(self) -> bool: ...

        def load(self, name: str) -> Any: ...


PROG = "mevaas"
ABOUT = "MEVaaS: multi-tenant MEV-as-a-Service platform."
# (flags, metavar, help) of the root command; they apply to every command after them.
ROOT_OPTIONS = (
    ("--profile", "NAME", "Config file profile (else MEVAAS_PROFILE, else the file's default_profile)."),
    ("--endpoint", "HOST:PORT", "One address for every service (else MEVAAS_ENDPOINT / config / make run)."),
    ("--config", "FILE", "Config file (else MEVAAS_CONFIG, else ~/.config/mevaas/config.toml)."),
    ("--help", "", "Show this message and exit."),
)


class TyperGroup:
    """A typer app (a group of sub-commands, or one command as the app's callback)."""

    __slots__ = ("attribute", "help", "module")

    def __init__(self, module: str, attribute: str, help: str) -> None:
        self.module = module
        self.attribute = attribute
        self.help = help

    def available(self) -> bool:
        import importlib.util  # here: `mevaas config show`'s fast path never needs it

        return importlib.util.find_spec(self.module.partition(".")[0]) is not None

    def load(self, name: str) -> Any:
        import typer

        # Mounted exactly as `add_typer(app, name=...)` mounts it, so callbacks behave as before.
        holder = typer.Typer()
        holder.add_typer(getattr(importlib.import_module(self.module), self.attribute), name=name)
        group: Any = typer.main.get_command(holder)
        return group.commands[name]


class TyperCommand:
    """One command of a typer app, mounted at the top level (`mevaas withdraw`)."""

    __slots__ = ("attribute", "command", "help", "module")

    def __init__(self, module: str, attribute: str, command: str, help: str) -> None:
        self.module = module
        self.attribute = attribute
        self.command = command
        self.help = help

    def available(self) -> bool:
        return True

    def load(self, name: str) -> Any:
        import typer

        loaded: Any = typer.main.get_command(getattr(importlib.import_module(self.module), self.attribute))
        # typer makes an app of one command that command itself, not a group of one.
        return getattr(loaded, "commands", {self.command: loaded})[self.command]


SDK = "mevaas_sdk"
COMMANDS: dict[str, CommandSource] = {
    "up": TyperCommand(
        f"{SDK}.tenancy_cli",
        "app",
        "up",
        "Start the whole fleet locally (NATS, PostgreSQL, devnet, services).",
    ),
    "watch": TyperCommand(
        f"{SDK}.watch_cli", "app", "watch", "Follow executions and positions live (polling)."
    ),
    "whoami": TyperCommand(f"{SDK}.tenancy_cli", "app", "whoami", "Show who the configured API key is."),
    "config": TyperGroup(
        f"{SDK}.config_cli", "app", "Where each setting comes from (flags, env, file, make run)."
    ),
    "positions": TyperCommand(
        f"{SDK}.treasury_cli", "app", "positions", "Holdings read from the chain, in tokens and USD."
    ),
    "wallets": TyperCommand(
        f"{SDK}.treasury_cli", "app", "wallets", "Wallets with their executor contracts and liveness."
    ),
    "withdraw": TyperCommand(
        f"{SDK}.treasury_cli", "app", "withdraw", "Move funds out of an executor contract."
    ),
    "deposit": TyperCommand(
        f"{SDK}.treasury_cli", "app", "deposit", "Fund an executor contract from its wallet."
    ),
    "tenant": TyperGroup(
        f"{SDK}.tenancy_cli", "tenant_app", "Tenants (platform admins create, list and suspend them)."
    ),
    "apikey": TyperGroup(f"{SDK}.tenancy_cli", "apikey_app", "API keys of a tenant."),
    "strategy": TyperGroup(
        f"{SDK}.trading_cli", "strategy_app", "Strategies: create, list, get, update, delete."
    ),
    "backtests": TyperGroup(f"{SDK}.backtest_cli", "app", "Backtests: list past runs, show one."),
    "protected": TyperGroup(
        f"{SDK}.protected_cli", "app", "Protected transactions: list (filtered), show one."
    ),
    "exec": TyperGroup(
        f"{SDK}.trading_cli", "exec_app", "Execution sessions: start, pause, resume, stop, status."
    ),
    "risk": TyperGroup(f"{SDK}.trading_cli", "risk_app", "Risk: limits, exposure, VaR and the kill switch."),
    "api": TyperGroup(
        f"{SDK}.rpc_cli", "app", "Every RPC of every service, one command each (from the protos)."
    ),
    "inspect": TyperGroup(
        "mevaas_inspector.cli", "app", "Find MEV (arbitrages, sandwiches, liquidations) in a block."
    ),
    "devnet": TyperGroup(
        "mevaas_local.devnet.cli", "app", "Local anvil devnet with DEXes, a market simulator, a relay."
    ),
    "verify-ordering": TyperGroup(
        f"{SDK}.verify_ordering", "app", "Check a fair-ordering log and the chain's inclusion order."
    ),
}


def help_text() -> str:
    """The root help, from the registry only."""
    lines = [f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]...", "", f"  {ABOUT}", "", "Options:"]
    flags = {flag: f"{flag} {metavar}".strip() for flag, metavar, _ in ROOT_OPTIONS}
    width = max(len(f) for f in flags.values()) + 2
    lines += [f"  {flags[flag]:<{width}}{text}" for flag, _, text in ROOT_OPTIONS]
    lines += ["", "Commands:"]
    names = [name for name, source in COMMANDS.items() if source.available()]
    width = max(len(n) for n in names) + 2
    lines += [f"  {name:<{width}}{COMMANDS[name].help}" for name in names]
    lines += ["", f"Run `{PROG} COMMAND --help` for a command's options; exit codes: docs/cli.md."]
    return "\n".join(lines)


def root() -> Any:
    """The root command as typer's own click group (typer vendors click), listing the registry."""
    import typer
    from typer.core import TyperGroup

    class Root(TyperGroup):
        def list_commands(self, ctx: Any) -> list[str]:
            return [name for name, source in COMMANDS.items() if source.available()]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            source = COMMANDS.get(cmd_name)
            return source.load(cmd_name) if source is not None and source.available() else None

        def format_help(self, ctx: Any, formatter: Any) -> None:
            formatter.write(help_text() + "\n")

    app = typer.Typer(cls=Root, add_completion=False, no_args_is_help=True)

    @app.callback()
    def group(
        profile: str = typer.Option("", "--profile"),
        endpoint: str = typer.Option("", "--endpoint"),
        config_file: str = typer.Option("", "--config"),
    ) -> None:
        from mevaas_sdk.cli_support import STATE
        from mevaas_sdk.config import Overrides

        STATE.overrides = Overrides(endpoint=endpoint, profile=profile, config=config_file)

    return typer.main.get_command(app)


def config_show_overrides(args: list[str]) -> tuple[dict[str, str], bool] | None:
    """The root options and --json when `args` is just those and `config show`; else None."""
    options: dict[str, str] = {}
    rest = list(args)
    while rest and rest[0].partition("=")[0] in ("--profile", "--endpoint", "--config"):
        flag, equals, value = rest.pop(0).partition("=")
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        options[flag[2:]] = value
    if rest[:2] != ["config", "show"] or any(arg != "--json" for arg in rest[2:]):
        return None
    return options, "--json" in rest[2:]


def main() -> None:
    args = sys.argv[1:]
    fast = config_show_overrides(args)
    if fast is not None:
        # As quick as --help: no typer, rich or grpc for a command that only reads files and env.
        from mevaas_sdk.config import Overrides
        from mevaas_sdk.config_show import run

        options, json_out = fast
        sys.exit(run(Overrides(**options), json_out))
    if not args or args in (["--help"], ["-h"]):
        try:
            print(help_text(), flush=True)
        except BrokenPipeError:
            # `mevaas --help | head`: the reader left; no traceback, and none at exit's flush.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        root()(args=args, prog_name=PROG)
    except KeyboardInterrupt:
        sys.exit(130)
