"""`mevaas strategy|exec|risk` run in-process (typer's CliRunner, in a worker thread so the services
keep running on the test loop) against tenancy, strategy, risk and execution services."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from google.protobuf.json_format import MessageToDict
from typer.testing import CliRunner, Result

from mevaas.common.v1 import common_pb2
from mevaas.execution.v1 import execution_pb2
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from mevaas_sdk import MevaasClient
from mevaas_sdk.trading_cli import exec_app, risk_app, strategy_app
from tests.fixtures.execution import block_production, fund, wait_for
from tests.fixtures.strategy import strategy_config
from tests.integration.tenancy.helpers import TRADING_PHASE, create_tenant

pytestmark = pytest.mark.integration

mevaas_app = typer.Typer()
mevaas_app.add_typer(strategy_app, name="strategy")
mevaas_app.add_typer(exec_app, name="exec")
mevaas_app.add_typer(risk_app, name="risk")


@dataclass
class Cli:
    """The `mevaas` command for one tenant's API key, with every service's endpoint in its env."""

    env: dict[str, str]

    async def __call__(self, *args: str) -> Result:
        def invoke() -> Result:
            return CliRunner().invoke(mevaas_app, list(args), env=self.env)

        return await asyncio.to_thread(invoke)

    async def ok(self, *args: str) -> Result:
        result = await self(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return result

    async def json(self, *args: str) -> Any:
        return json.loads((await self.ok(*args, "--json")).stdout)


@pytest.fixture
async def tenant_cli(
    admin_client: MevaasClient,
    tenancy_service: ServiceRuntime[Any],
    strategy_service: ServiceRuntime[Any],
    risk_service: ServiceRuntime[Any],
    execution_service: Any,
) -> Cli:
    tenant = await create_tenant(admin_client, phase=TRADING_PHASE)
    env = {"MEVAAS_API_KEY": tenant.owner_key, "XDG_CONFIG_HOME": "/nonexistent"}
    for name, runtime in (
        ("tenancy", tenancy_service),
        ("strategy", strategy_service),
        ("risk", risk_service),
        ("execution", execution_service),
    ):
        env[f"MEVAAS_{name.upper()}_ENDPOINT"] = f"127.0.0.1:{runtime.grpc_port}"
    return Cli(env)


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def one_line_error(result: Result) -> str:
    """The error, with the console's line wrapping undone; there must be no traceback."""
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return " ".join(result.stderr.split())


async def test_strategy_lifecycle_from_files(tenant_cli: Cli, devnet: Devnet, tmp_path: Path) -> None:
    config = MessageToDict(strategy_config(devnet.main.config, name="cli-arb"))
    config["type"] = "flash_arbitrage"  # the short enum spelling is accepted
    created = await tenant_cli.json(
        "strategy", "create", "--file", str(write_json(tmp_path / "a.json", config))
    )
    strategy_id = created["strategy_id"]
    assert created["version"] == "1"
    assert created["config"]["type"] == "STRATEGY_TYPE_FLASH_ARBITRAGE"

    listed = await tenant_cli.json("strategy", "list")
    assert [s["strategy_id"] for s in listed["strategies"]] == [strategy_id]
    table = (await tenant_cli.ok("strategy", "list")).stdout
    assert "strategy_id" in table and "active" in table
    fetched = await tenant_cli.json("strategy", "get", strategy_id)
    assert fetched["config"]["name"] == "cli-arb"

    config["description"] = "wider"
    update_file = write_json(tmp_path / "b.json", config)
    updated = await tenant_cli.json(
        "strategy", "update", strategy_id, "--file", str(update_file), "--expected-version", "1"
    )
    assert updated["version"] == "2" and updated["config"]["description"] == "wider"
    stale = await tenant_cli(
        "strategy", "update", strategy_id, "-f", str(update_file), "--expected-version", "1"
    )
    assert one_line_error(stale).startswith("error FAILED_PRECONDITION")

    await tenant_cli.ok("strategy", "delete", strategy_id)
    assert (await tenant_cli.json("strategy", "list")).get("strategies", []) == []
    gone = await tenant_cli("strategy", "get", strategy_id)
    assert "NOT_FOUND" in one_line_error(gone)


async def test_invalid_config_is_one_line_naming_the_field(
    tenant_cli: Cli, devnet: Devnet, tmp_path: Path
) -> None:
    config = MessageToDict(strategy_config(devnet.main.config), preserving_proto_field_name=True)
    config["parameters"]["execution_settings"]["max_slippage_bps"] = 20_000
    result = await tenant_cli("strategy", "create", "-f", str(write_json(tmp_path / "bad.json", config)))
    assert result.exit_code == 1
    error = one_line_error(result)
    assert error.startswith(
        "error INVALID_ARGUMENT: invalid config.parameters.execution_settings.max_slippage_bps"
    )

    validated = await tenant_cli("strategy", "validate", "-f", str(tmp_path / "bad.json"), "--json")
    assert validated.exit_code == 1
    violations = json.loads(validated.stdout)["violations"]
    assert [v["field"] for v in violations] == ["parameters.execution_settings.max_slippage_bps"]

    unknown_field = await tenant_cli(
        "strategy", "create", "-f", str(write_json(tmp_path / "typo.json", {"nmae": "x"}))
    )
    assert unknown_field.exit_code == 2 and "nmae" in one_line_error(unknown_field)
    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    assert "not valid JSON" in one_line_error(await tenant_cli("strategy", "create", "-f", str(not_json)))


async def test_exec_start_pause_resume_stop(
    tenant_cli: Cli, devnet: Devnet, tmp_path: Path, client_for: Callable[..., MevaasClient]
) -> None:
    wallet = await tenant_cli.json("exec", "wallet", "--label", "hot")
    for chain in devnet.chains:
        await fund(chain, wallet["address"])
    strategy_id = str(uuid.uuid4())  # these sessions run without the strategy lookup (see the fixture)
    started = await tenant_cli.json("exec", "start", strategy_id)
    session_id = started["session_id"]
    assert started["state"] in ("EXECUTION_STATE_STARTING", "EXECUTION_STATE_RUNNING")

    async with client_for(tenant_cli.env["MEVAAS_API_KEY"], **_endpoints(tenant_cli)) as client:

        async def running() -> bool:
            status = await client.execution.GetExecutionStatus(
                execution_pb2.GetExecutionStatusRequest(session_id=session_id)
            )
            assert status.session.state != common_pb2.EXECUTION_STATE_FAILED, status.last_error
            return status.session.state == common_pb2.EXECUTION_STATE_RUNNING

        async with block_production(*devnet.chains):
            await wait_for(running, timeout_s=60)

    paused = await tenant_cli.json("exec", "pause", session_id, "--reason", "lunch")
    assert paused["state"] == "EXECUTION_STATE_PAUSED"
    status = (await tenant_cli.ok("exec", "status", session_id)).stdout
    assert "PAUSED" in status and "opportunities_received" in status
    assert (await tenant_cli.json("exec", "status", session_id))["session"]["state_reason"] == "lunch"
    resumed = await tenant_cli.json("exec", "resume", session_id)
    assert resumed["state"] == "EXECUTION_STATE_RUNNING"
    listed = await tenant_cli.json("exec", "list", "--strategy", strategy_id)
    assert [s["session_id"] for s in listed["sessions"]] == [session_id]
    stopped = await tenant_cli.json("exec", "stop", session_id)
    assert stopped["state"] == "EXECUTION_STATE_STOPPED"
    refused = await tenant_cli("exec", "resume", session_id)
    assert one_line_error(refused).startswith("error FAILED_PRECONDITION")
    missing = await tenant_cli("exec", "status", str(uuid.uuid4()))
    assert "NOT_FOUND" in one_line_error(missing)


def _endpoints(cli: Cli) -> dict[str, str]:
    return {
        key.removeprefix("MEVAAS_").removesuffix("_ENDPOINT").lower(): value
        for key, value in cli.env.items()
        if key.endswith("_ENDPOINT")
    }


async def test_risk_limits_roundtrip_exposure_var_and_kill_switch(tenant_cli: Cli, tmp_path: Path) -> None:
    limits_file = write_json(tmp_path / "limits.json", {"maxSlippageBps": 75, "max_concurrent_executions": 3})
    updated = await tenant_cli.json("risk", "limits", "--set-file", str(limits_file))
    assert updated["record"]["limits"]["max_slippage_bps"] == 75
    version = updated["record"]["version"]
    shown = await tenant_cli.json("risk", "limits")
    assert shown["record"] == updated["record"]
    assert shown["effective"]["max_slippage_bps"] == 75
    assert shown["effective"]["max_concurrent_executions"] == 3

    stale = await tenant_cli(
        "risk", "limits", "--set-file", str(limits_file), "--expected-version", str(int(version) + 5)
    )
    assert one_line_error(stale).startswith("error FAILED_PRECONDITION")
    invalid = await tenant_cli(
        "risk", "limits", "--set-file", str(write_json(tmp_path / "bad.json", {"max_slippage_bps": 20_000}))
    )
    assert one_line_error(invalid).startswith("error INVALID_ARGUMENT: invalid limits.max_slippage_bps")

    exposure = await tenant_cli.json("risk", "exposure")
    assert exposure.get("exposures", []) == []
    assert "concurrent executions: 0" in (await tenant_cli.ok("risk", "exposure")).stdout
    # A new tenant has no PnL series yet: the service says so rather than inventing a figure.
    var = await tenant_cli("risk", "var", "--confidence", "0.99", "--method", "parametric")
    assert "FAILED_PRECONDITION: not enough PnL history" in one_line_error(var)
    bad_confidence = await tenant_cli("risk", "var", "--confidence", "1.5")
    assert one_line_error(bad_confidence).startswith("error INVALID_ARGUMENT: invalid confidence")
    assert "--method" in one_line_error(await tenant_cli("risk", "var", "--method", "magic"))

    no_reason = await tenant_cli("risk", "kill")
    assert one_line_error(no_reason).startswith("error INVALID_ARGUMENT: invalid reason")
    engaged = await tenant_cli.ok("risk", "kill", "--reason", "incident 42")
    assert "kill switch (tenant): ENGAGED (incident 42)" in engaged.stdout
    assert (await tenant_cli.json("risk", "kill", "--status"))["engaged"] is True
    released = await tenant_cli.ok("risk", "kill", "--off")
    assert "kill switch (tenant): released" in released.stdout
    assert (await tenant_cli.json("risk", "kill", "--status")).get("engaged", False) is False
