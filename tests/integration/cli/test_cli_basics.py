"""The installed `mevaas` without servers: `--help` from the registry with nothing heavy imported,
config discovery from any directory and `config show`, and the exit codes of a missing config
and an unreachable server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli.process import MevaasProcess

pytestmark = pytest.mark.integration


async def test_help_imports_no_grpc_click_or_stubs(tmp_path: Path) -> None:
    probe = (
        "import sys; from mevaas_sdk.cli import main; sys.argv = ['mevaas', '--help']; main(); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'typer', 'click', 'rich', 'google', 'mevaas', 'web3', "
        # The standard library's slow imports too (config.py does without them; TOML only when
        # there is a TOML file): with them `config show` took 4.3x `python -c pass`, 2.1x without.
        "'pathlib', 'dataclasses', 'inspect', 'typing', 'tomllib')); print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "HEAVY []"
    for name in ("positions", "withdraw", "api", "watch", "config", "strategy"):
        assert f"\n  {name} " in out


async def test_config_show_imports_no_grpc_typer_or_rich(tmp_path: Path) -> None:
    probe = (
        "import sys; from mevaas_sdk.cli import main; sys.argv = ['mevaas', '--endpoint=h:1', 'config', 'show']\n"
        "try: main()\nexcept SystemExit as exc: print('EXIT', exc.code)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'typer', 'click', 'rich', 'google', 'mevaas', 'web3')); print('HEAVY', heavy)"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    ).stdout
    assert out.splitlines()[-2:] == ["EXIT 0", "HEAVY []"]
    assert "endpoint.risk" in out and "h:1" in out and "flag --endpoint" in out


async def test_config_is_found_from_a_subdirectory_and_shown_with_its_sources(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".data").mkdir(parents=True)
    (repo / "a" / "b").mkdir(parents=True)
    (repo / ".data" / "mevaas.json").write_text(
        json.dumps({"endpoints": {"tenancy": "127.0.0.1:1"}, "api_key": "mvs_local_secret"})
    )
    (tmp_path / "config" / "mevaas").mkdir(parents=True)
    (tmp_path / "config" / "mevaas" / "config.toml").write_text(
        '[profiles.prod]\nendpoint = "prod:443"\napi_key = "mvs_prod_secret"\n'
    )
    mevaas = MevaasProcess(tmp_path, cwd=repo / "a" / "b")
    shown = await mevaas.json("config", "show")
    rows = {r["name"]: r for r in shown["settings"]}
    assert rows["endpoint.tenancy"]["value"] == "127.0.0.1:1"
    assert (
        rows["endpoint.tenancy"]["source"] == f"make run's local defaults ({repo / '.data' / 'mevaas.json'})"
    )
    assert rows["api_key"]["value"] == "(set; secret)"
    profiled = await mevaas.json("--profile", "prod", "config", "show")
    rows = {r["name"]: r for r in profiled["settings"]}
    assert rows["endpoint.risk"]["value"] == "prod:443" and "[profiles.prod]" in rows["api_key"]["source"]
    table = (await mevaas.ok("--profile", "prod", "config", "show")).stdout
    assert "secret" not in table.replace("(set; secret)", "") and "mvs_prod" not in table

    unknown = await mevaas("--profile", "dev", "config", "show")
    assert unknown.code == 6 and "profile 'dev' (flag --profile) is not in" in unknown.error


async def test_no_config_and_no_server_have_their_own_exit_codes(tmp_path: Path) -> None:
    mevaas = MevaasProcess(tmp_path)
    missing = await mevaas("wallets")
    assert missing.code == 6
    assert missing.error.startswith("error no endpoint for the execution service")
    assert f".data/mevaas.json in {tmp_path} and every parent (none)" in missing.error

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    down = await mevaas("whoami", env={"MEVAAS_ENDPOINT": f"127.0.0.1:{port}", "MEVAAS_API_KEY": "mvs_x_y"})
    assert down.code == 4 and down.error.startswith("error UNAVAILABLE")
    as_json = await mevaas("whoami", "--json", env={"MEVAAS_ENDPOINT": f"127.0.0.1:{port}"})
    assert as_json.code == 4 and json.loads(as_json.stderr)["error"]["code"] == "UNAVAILABLE"
    usage = await mevaas("withdraw")
    assert usage.code == 2
