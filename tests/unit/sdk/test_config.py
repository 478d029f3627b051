"""Config discovery: flags > env > config file profile > make run's .data/mevaas.json, each value
with where it came from, and a clear error naming where the CLI looked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mevaas_sdk.config import ConfigError, Overrides, resolve


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A checkout with make run's file at its root, and a user config with two profiles."""
    (tmp_path / "repo" / ".data").mkdir(parents=True)
    (tmp_path / "repo" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "repo" / ".data" / "mevaas.json").write_text(
        json.dumps({"endpoints": {"tenancy": "127.0.0.1:1", "risk": "127.0.0.1:2"}, "api_key": "local-key"})
    )
    (tmp_path / "cfg" / "mevaas").mkdir(parents=True)
    (tmp_path / "cfg" / "mevaas" / "config.toml").write_text(
        'default_profile = "staging"\n'
        '[profiles.staging]\nendpoint = "staging:443"\napi_key = "staging-key"\n'
        '[profiles.prod]\napi_key = "prod-key"\n[profiles.prod.endpoints]\nrisk = "risk.prod:443"\n'
    )
    return tmp_path


def test_make_run_defaults_are_found_from_any_directory_below(tree: Path) -> None:
    got = resolve(env={"XDG_CONFIG_HOME": str(tree / "none")}, cwd=tree / "repo" / "deep" / "er")
    assert got.endpoints() == {"tenancy": "127.0.0.1:1", "risk": "127.0.0.1:2"}
    assert got.api_key == "local-key"
    assert (
        got.settings["api_key"].source
        == f"make run's local defaults ({tree / 'repo' / '.data' / 'mevaas.json'})"
    )
    assert got.settings["api_key"].shown() == "(set; secret)"


def test_the_profile_beats_make_run_env_beats_the_profile_and_flags_beat_env(tree: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tree / "cfg")}
    cwd = tree / "repo"
    staging = resolve(env=env, cwd=cwd)
    assert staging.api_key == "staging-key" and staging.endpoints()["default"] == "staging:443"
    assert staging.settings["profile"].source.startswith("default_profile in")
    # Per-service addresses of make run stay unless something higher names them.
    assert staging.endpoints()["tenancy"] == "127.0.0.1:1"

    prod = resolve(env={**env, "MEVAAS_PROFILE": "prod", "MEVAAS_API_KEY": "env-key"}, cwd=cwd)
    assert prod.endpoints()["risk"] == "risk.prod:443"
    assert prod.settings["endpoint.risk"].source.endswith("[profiles.prod]")
    assert prod.api_key == "env-key" and prod.settings["api_key"].source == "env MEVAAS_API_KEY"

    flagged = resolve(Overrides(endpoint="ingress:443", profile="prod"), env=env, cwd=cwd)
    assert flagged.endpoints() == {"default": "ingress:443"}
    assert flagged.settings["profile"].source == "flag --profile" and flagged.api_key == "prod-key"


def test_unknown_profiles_and_missing_named_files_are_errors(tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"profile 'dev' .* profiles: prod, staging"):
        resolve(env={"XDG_CONFIG_HOME": str(tree / "cfg"), "MEVAAS_PROFILE": "dev"}, cwd=tree)
    with pytest.raises(ConfigError, match=r"config file .*nope.toml \(from --config\) does not exist"):
        resolve(Overrides(config=str(tree / "nope.toml")), env={}, cwd=tree)
    (tree / "bad.toml").write_text("profiles = [")
    with pytest.raises(ConfigError, match="unreadable"):
        resolve(env={"MEVAAS_CONFIG": str(tree / "bad.toml")}, cwd=tree)


def test_nothing_found_says_where_it_looked(tree: Path) -> None:
    got = resolve(env={"XDG_CONFIG_HOME": str(tree / "none")}, cwd=tree)
    assert got.endpoints() == {} and got.api_key == ""
    assert got.looked_at[0] == f".data/mevaas.json in {tree} and every parent (none)"
    assert got.looked_at[1] == f"{tree / 'none' / 'mevaas' / 'config.toml'} (none)"
