"""Every RPC of every service in protos/ has a `mevaas api` command, found by reading the protos
themselves (every generated *_pb2 module's services), not the CLI's own table."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer

from mevaas_sdk import rpc_cli

PROTOS = Path(__file__).resolve().parents[3] / "libs" / "protos" / "mevaas"


def proto_services() -> dict[str, list[str]]:
    services: dict[str, list[str]] = {}
    for module_file in sorted(PROTOS.glob("*/v1/*_pb2.py")):
        module = importlib.import_module(
            ".".join(module_file.relative_to(PROTOS.parent).with_suffix("").parts)
        )
        for service in module.DESCRIPTOR.services_by_name.values():
            services[service.full_name] = [m.name for m in service.methods]
    return services


def test_every_rpc_of_every_proto_service_has_a_command() -> None:
    services = proto_services()
    assert len(services) >= 8  # tenancy (3), strategy, risk, execution, analytics, portfolio
    root: Any = typer.main.get_command(rpc_cli.app)
    covered: set[tuple[str, str]] = set()
    for name, group in rpc_cli.API_GROUPS.items():
        commands = root.commands[name].commands
        for method in group.rpcs():
            assert rpc_cli.kebab(method.name) in commands, (name, method.name)
            covered.add((group.descriptor().full_name, method.name))
    missing = {(s, m) for s, methods in services.items() for m in methods} - covered
    assert not missing, f"RPCs without a command: {sorted(missing)}"


def test_options_follow_the_request_fields() -> None:
    root: Any = typer.main.get_command(rpc_cli.app)
    positions = root.commands["portfolio"].commands["get-positions"]
    options = {o for p in positions.params for o in p.opts}
    assert {"--chain-id", "--wallet-address", "--include-zero", "--page", "--request", "--json"} <= options
    assert rpc_cli.kebab("GetVaR") == "get-var" and rpc_cli.kebab("ListAuditRecords") == "list-audit-records"
