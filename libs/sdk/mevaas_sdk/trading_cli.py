"""`mevaas strategy`, `mevaas exec` and `mevaas risk`: the trading commands.

Configs come from JSON (or YAML, when PyYAML is installed) files in the protobuf JSON mapping of
the request messages; enum values may be written short (`"type": "flash_arbitrage"` for
`STRATEGY_TYPE_FLASH_ARBITRAGE`). The server validates; its field violations come back as one line.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import Message

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas.risk.v1 import risk_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_sdk.cli_support import JsonOption, RawOption, console, emit, err, fail, run_call, table
from mevaas_sdk.client import MevaasClient
from mevaas_sdk.protojson import expand_enums, field_named
from mevaas_sdk.units import format_units

strategy_app = typer.Typer(help="Strategies: create, list, get, update, delete.", no_args_is_help=True)
exec_app = typer.Typer(
    help="Execution sessions of strategies: start, pause, resume, stop, status.", no_args_is_help=True
)
risk_app = typer.Typer(help="Risk: limits, exposure, VaR and the kill switch.", no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="JSON or YAML file.", exists=True, dir_okay=False)
]
IdempotencyOption = Annotated[str, typer.Option(help="Retry-safe key; random if omitted.")]
STRATEGY_COLUMNS = ["strategy_id", "version", "name", "type", "status", "updated_at"]
SESSION_COLUMNS = ["session_id", "strategy_id", "state", "wallet_address", "chain_ids", "state_reason"]
VAR_METHODS = {"historical": risk_pb2.VAR_METHOD_HISTORICAL, "parametric": risk_pb2.VAR_METHOD_PARAMETRIC}
PAGE_SIZE = 200


def read_document(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise fail(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise fail(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise fail(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"{path}: expected an object at the top level")
    return data


def load_message(path: Path, message: Message) -> dict[str, Any]:
    """Parse ``path`` into ``message``; returns the document (its keys say which fields were given)."""
    data = read_document(path)
    try:
        ParseDict(expand_enums(message.DESCRIPTOR, data), message)
    except ParseError as exc:
        raise fail(f"{path}: {exc}") from None
    return data


def show_fields(title: str, rows: dict[str, Any]) -> None:
    shown = table("field", "value", title=title)
    for name, value in rows.items():
        shown.add_row(name, str(value))
    console.print(shown)


# strategies -------------------------------------------------------------------------------------


@strategy_app.command("create")
def strategy_create(
    file: FileOption,
    idempotency_key: IdempotencyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Create a strategy from a StrategyConfig file."""
    config = strategy_pb2.StrategyConfig()
    load_message(file, config)
    request = strategy_pb2.CreateStrategyRequest(
        idempotency_key=idempotency_key or str(uuid.uuid4()), config=config
    )
    response = run_call(lambda c: c.strategies.CreateStrategy(request))
    show_strategies([response.strategy], as_json)


@strategy_app.command("validate")
def strategy_validate(file: FileOption, as_json: JsonOption = False) -> None:
    """Check a StrategyConfig file without creating anything; exits 1 when it is invalid."""
    config = strategy_pb2.StrategyConfig()
    load_message(file, config)
    response = run_call(
        lambda c: c.strategies.ValidateStrategy(strategy_pb2.ValidateStrategyRequest(config=config))
    )
    if as_json:
        emit(response, True)
    elif response.valid:
        console.print("valid")
    else:
        emit(response, False, ["field", "description", "reason"], "violations")
    if not response.valid:
        raise typer.Exit(1)


@strategy_app.command("list")
def strategy_list(
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted strategies.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List your strategies."""

    async def all_pages(client: MevaasClient) -> strategy_pb2.ListStrategiesResponse:
        combined = strategy_pb2.ListStrategiesResponse()
        token = ""
        while True:
            page = await client.strategies.ListStrategies(
                strategy_pb2.ListStrategiesRequest(
                    page=common_pb2.PageRequest(page_size=PAGE_SIZE, page_token=token),
                    include_deleted=deleted,
                )
            )
            combined.strategies.extend(page.strategies)
            token = page.page.next_page_token
            if not token:
                return combined

    response = run_call(all_pages)
    if as_json:
        emit(response, True)
        return
    show_strategies(list(response.strategies), False)


@strategy_app.command("get")
def strategy_get(
    strategy_id: str,
    version: Annotated[int, typer.Option(help="A past version; the current one if omitted.")] = 0,
    as_json: JsonOption = True,
) -> None:
    """Show a strategy with its full config (always JSON)."""
    response = run_call(
        lambda c: c.strategies.GetStrategy(
            strategy_pb2.GetStrategyRequest(strategy_id=strategy_id, version=version)
        )
    )
    emit(response.strategy, as_json or True)


@strategy_app.command("update")
def strategy_update(
    strategy_id: str,
    file: FileOption,
    expected_version: Annotated[
        int, typer.Option(help="Refuse the update unless this is the current version.")
    ] = 0,
    note: Annotated[str, typer.Option(help="Why it changed (kept with the version).")] = "",
    idempotency_key: IdempotencyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Replace a strategy's config; this makes a new version."""
    config = strategy_pb2.StrategyConfig()
    load_message(file, config)
    request = strategy_pb2.UpdateStrategyRequest(
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        strategy_id=strategy_id,
        config=config,
        expected_version=expected_version,
        change_note=note,
    )
    response = run_call(lambda c: c.strategies.UpdateStrategy(request))
    show_strategies([response.strategy], as_json)


@strategy_app.command("delete")
def strategy_delete(strategy_id: str) -> None:
    """Delete a strategy (refused while an execution session of it is live)."""
    run_call(
        lambda c: c.strategies.DeleteStrategy(strategy_pb2.DeleteStrategyRequest(strategy_id=strategy_id))
    )
    console.print(f"deleted {strategy_id}")


def show_strategies(strategies: list[strategy_pb2.Strategy], as_json: bool) -> None:
    if as_json:
        for strategy in strategies:
            emit(strategy, True)
        return
    shown = table(*STRATEGY_COLUMNS)
    for strategy in strategies:
        shown.add_row(
            strategy.strategy_id,
            str(strategy.version),
            strategy.config.name,
            common_pb2.StrategyType.Name(strategy.config.type).removeprefix("STRATEGY_TYPE_").lower(),
            strategy_pb2.StrategyStatus.Name(strategy.status).removeprefix("STRATEGY_STATUS_").lower(),
            strategy.updated_at.ToJsonString() if strategy.HasField("updated_at") else "",
        )
    console.print(shown)


# execution --------------------------------------------------------------------------------------


def _session(response: Any, as_json: bool) -> None:
    session: execution_pb2.ExecutionSession = response.session
    if as_json:
        emit(session, True)
        return
    emit(session, False, SESSION_COLUMNS)


def live_notice(session: execution_pb2.ExecutionSession) -> None:
    """Said on stderr (so --json output stays clean) whenever a command makes a session trade."""
    chains = ", ".join(str(c) for c in session.chain_ids) or "its strategy's chains"
    err.print(
        f"[bold red]LIVE TRADING[/bold red]: session {session.session_id} signs and sends real "
        f"transactions from wallet {session.wallet_address or '(default)'} on chain(s) {chains} until "
        f"it is paused or stopped (mevaas exec stop {session.session_id}); follow it with "
        f"mevaas watch --session {session.session_id}",
        highlight=False,
    )


@exec_app.command("start")
def exec_start(
    strategy_id: str,
    version: Annotated[int, typer.Option(help="Strategy version; the current one if omitted.")] = 0,
    wallet: Annotated[str, typer.Option(help="Wallet address; the strategy's or the default.")] = "",
    idempotency_key: IdempotencyOption = "",
    as_json: JsonOption = False,
) -> None:
    """Start executing a strategy; prints the session."""
    request = execution_pb2.StartExecutionRequest(
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        strategy_id=strategy_id,
        strategy_version=version,
        wallet_address=wallet,
    )
    response = run_call(lambda c: c.execution.StartExecution(request))
    live_notice(response.session)
    _session(response, as_json)


@exec_app.command("pause")
def exec_pause(
    session_id: str, reason: Annotated[str, typer.Option()] = "", as_json: JsonOption = False
) -> None:
    """Pause a session: no new executions until it is resumed."""
    request = execution_pb2.PauseExecutionRequest(session_id=session_id, reason=reason)
    _session(run_call(lambda c: c.execution.PauseExecution(request)), as_json)


@exec_app.command("resume")
def exec_resume(session_id: str, as_json: JsonOption = False) -> None:
    """Resume a paused session."""
    request = execution_pb2.ResumeExecutionRequest(session_id=session_id)
    response = run_call(lambda c: c.execution.ResumeExecution(request))
    live_notice(response.session)
    _session(response, as_json)


@exec_app.command("stop")
def exec_stop(
    session_id: str, reason: Annotated[str, typer.Option()] = "", as_json: JsonOption = False
) -> None:
    """Stop a session for good."""
    request = execution_pb2.StopExecutionRequest(session_id=session_id, reason=reason)
    _session(run_call(lambda c: c.execution.StopExecution(request)), as_json)


def in_units(base: str, token: common_pb2.Token, raw: bool) -> str:
    """Base units as whole tokens with the symbol (`2.3885 WETH`), or as they are with --raw."""
    symbol = token.symbol or token.address
    if raw or not base or not token.address:
        return f"{base or '0'} {symbol}".strip()
    return f"{format_units(base, token.decimals)} {symbol}"


@exec_app.command("status")
def exec_status(session_id: str, raw: RawOption = False, as_json: JsonOption = False) -> None:
    """A session's state, counts, realised profit and last error."""
    response = run_call(
        lambda c: c.execution.GetExecutionStatus(
            execution_pb2.GetExecutionStatusRequest(session_id=session_id)
        )
    )
    if as_json:
        emit(response, True)
        return
    session, counts = response.session, response.counts
    rows: dict[str, Any] = {
        "session_id": session.session_id,
        "strategy_id": f"{session.strategy_id} (v{session.strategy_version})",
        "state": common_pb2.ExecutionState.Name(session.state).removeprefix("EXECUTION_STATE_"),
        "wallet": session.wallet_address,
        "realized_profit": in_units(response.realized_profit, response.profit_token, raw),
        "gas_spent_wei": response.gas_spent_wei or "0",
    }
    rows.update({f.name: getattr(counts, f.name) for f in counts.DESCRIPTOR.fields})
    if response.last_error:
        rows["last_error"] = response.last_error
    show_fields("execution status", rows)


@exec_app.command("list")
def exec_list(
    strategy: Annotated[str, typer.Option(help="Only this strategy's sessions.")] = "",
    as_json: JsonOption = False,
) -> None:
    """List execution sessions (first page)."""
    request = execution_pb2.ListExecutionSessionsRequest(
        page=common_pb2.PageRequest(page_size=PAGE_SIZE), strategy_id=strategy
    )
    response = run_call(lambda c: c.execution.ListExecutionSessions(request))
    emit(response, as_json, SESSION_COLUMNS, "sessions")


@exec_app.command("wallet")
def exec_wallet(
    label: Annotated[str, typer.Option(help="A name for the wallet.")] = "default",
    default: Annotated[bool, typer.Option(help="Make it the default wallet.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Create a wallet held by the service (its key never leaves it); prints its address."""
    request = execution_pb2.CreateWalletRequest(
        idempotency_key=str(uuid.uuid4()), label=label, make_default=default
    )
    response = run_call(lambda c: c.execution.CreateWallet(request))
    emit(response.wallet, as_json, ["wallet_id", "address", "label", "is_default"])


# risk -------------------------------------------------------------------------------------------


@risk_app.command("limits")
def risk_limits(
    set_file: Annotated[
        Path | None,
        typer.Option(
            "--set-file",
            help="RiskLimits JSON/YAML; only the fields it names change.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    strategy: Annotated[str, typer.Option(help="A strategy's limits; the tenant's if omitted.")] = "",
    expected_version: Annotated[int, typer.Option(help="With --set-file: refuse unless current.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Show (or with --set-file, change) the risk limits; prints the record and the effective limits."""
    if set_file is None:
        response: risk_pb2.GetLimitsResponse | risk_pb2.UpdateLimitsResponse = run_call(
            lambda c: c.risk.GetLimits(risk_pb2.GetLimitsRequest(strategy_id=strategy))
        )
    else:
        limits = common_pb2.RiskLimits()
        given = load_message(set_file, limits)
        paths = [field_named(limits.DESCRIPTOR, key).name for key in given]
        request = risk_pb2.UpdateLimitsRequest(
            strategy_id=strategy,
            limits=limits,
            update_mask=FieldMask(paths=paths),
            expected_version=expected_version,
        )
        response = run_call(lambda c: c.risk.UpdateLimits(request))
    if as_json:
        emit(response, True)
        return
    effective = MessageToDict(response.effective, preserving_proto_field_name=True)
    show_fields(f"effective limits (record version {response.record.version})", effective)


@risk_app.command("exposure")
def risk_exposure(
    chain: Annotated[int, typer.Option(help="Only this chain.")] = 0,
    strategy: Annotated[str, typer.Option(help="Only this strategy.")] = "",
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """Reserved exposure and realised PnL per token."""
    response = run_call(
        lambda c: c.risk.GetExposure(risk_pb2.GetExposureRequest(chain_id=chain, strategy_id=strategy))
    )
    if as_json:
        emit(response, True)
        return
    shown = table("chain", "token", "reserved", "limit", "utilization", "pnl today", "pnl total", "open")
    for e in response.exposures:
        shown.add_row(
            str(e.token.chain_id),
            f"{e.token.symbol} {e.token.address}".strip(),
            in_units(e.reserved, e.token, raw),
            in_units(e.limit, e.token, raw) if e.limit else "-",
            f"{e.utilization:.1%}",
            in_units(e.realized_pnl_today, e.token, raw),
            in_units(e.realized_pnl_total, e.token, raw),
            str(e.open_reservations),
        )
    console.print(shown)
    console.print(f"concurrent executions: {response.concurrent_executions}")


@risk_app.command("var")
def risk_var(
    confidence: Annotated[float, typer.Option(help="E.g. 0.99.")] = 0.99,
    method: Annotated[str, typer.Option(help="historical or parametric.")] = "historical",
    horizon_days: Annotated[int, typer.Option(help="Horizon in days (default 1).")] = 0,
    lookback_days: Annotated[int, typer.Option(help="PnL history to use (default: all).")] = 0,
    strategy: Annotated[str, typer.Option(help="Only this strategy's PnL.")] = "",
    raw: RawOption = False,
    as_json: JsonOption = False,
) -> None:
    """Value at risk and expected shortfall from the PnL series."""
    if method not in VAR_METHODS:
        raise fail(f"--method must be one of {', '.join(VAR_METHODS)}")
    request = risk_pb2.GetVaRRequest(
        confidence=confidence,
        method=VAR_METHODS[method],
        horizon_days=horizon_days,
        lookback_days=lookback_days,
        strategy_id=strategy,
    )
    response = run_call(lambda c: c.risk.GetVaR(request))
    if as_json:
        emit(response, True)
        return
    shown = table("token", "value at risk", "expected shortfall", "observations")
    for f in response.figures:
        shown.add_row(
            f"{f.denomination.symbol} {f.denomination.address}".strip(),
            in_units(f.value_at_risk, f.denomination, raw),
            in_units(f.expected_shortfall, f.denomination, raw),
            str(f.observations),
        )
    console.print(shown)


@risk_app.command("kill")
def risk_kill(
    reason: Annotated[str, typer.Option(help="Why (required to engage).")] = "",
    off: Annotated[bool, typer.Option("--off", help="Release the kill switch.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Only show the kill switch.")] = False,
    strategy: Annotated[str, typer.Option(help="Only this strategy; the whole tenant if omitted.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Engage the kill switch (all execution stops at once), release it with --off."""
    if status:
        shown = run_call(lambda c: c.risk.GetKillSwitch(risk_pb2.GetKillSwitchRequest(strategy_id=strategy)))
        switch = shown.kill_switch
    else:
        request = risk_pb2.SetKillSwitchRequest(engaged=not off, reason=reason, strategy_id=strategy)
        switch = run_call(lambda c: c.risk.SetKillSwitch(request)).kill_switch
    if as_json:
        emit(switch, True)
        return
    scope = f"strategy {switch.strategy_id}" if switch.strategy_id else "tenant"
    state = "ENGAGED" if switch.engaged else "released"
    console.print(f"kill switch ({scope}): {state}" + (f" ({switch.reason})" if switch.reason else ""))
