"""Where the CLI and the SDK find endpoints and the API key, and where each value came from.

Precedence, highest first:
1. flags (`mevaas --endpoint ... --profile ... --config ...`),
2. environment: MEVAAS_ENDPOINT, MEVAAS_<SERVICE>_ENDPOINT, MEVAAS_API_KEY (MEVAAS_PROFILE and
   MEVAAS_CONFIG choose the profile and the file),
3. the config file (`$XDG_CONFIG_HOME/mevaas/config.toml`, else `~/.config/mevaas/config.toml`), one
   `[profiles.<name>]` table per profile,
4. `make run`'s local defaults: the `.data/mevaas.json` it writes, found by walking up from the
   current directory.

Nothing here imports grpc: `mevaas config show` and the error for a missing setting stay cheap.
Nor pathlib, dataclasses, typing or (unless a TOML file is read) tomllib: `mevaas config show`
imports this module and little else, and those four were most of its start-up beyond Python's
own (bench/bench_cli.py). Paths are strings here; any path-like is accepted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

# Not typing's TYPE_CHECKING (see above); mypy reads any TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    PathLike = str | os.PathLike[str]

SERVICES = ("tenancy", "strategy", "risk", "execution", "analytics")
LOCAL_FILE = os.path.join(".data", "mevaas.json")
DEFAULT_PROFILE = "default"


class ConfigError(LookupError):
    """A setting is missing or a config file is unusable; the message says where the CLI looked."""


class Setting:
    """A setting's value and where it came from."""

    __slots__ = ("secret", "source", "value")

    def __init__(self, value: str, source: str, secret: bool = False) -> None:
        self.value = value
        self.source = source
        self.secret = secret

    def shown(self) -> str:
        return "(set; secret)" if self.secret and self.value else self.value


class Overrides:
    """What the command line said (the root command's options)."""

    __slots__ = ("config", "endpoint", "profile")

    def __init__(self, endpoint: str = "", profile: str = "", config: str = "") -> None:
        self.endpoint = endpoint
        self.profile = profile
        self.config = config


class Resolved:
    __slots__ = ("looked_at", "settings")

    def __init__(self, settings: dict[str, Setting] | None = None, looked_at: tuple[str, ...] = ()) -> None:
        self.settings = {} if settings is None else settings
        self.looked_at = looked_at

    def endpoints(self) -> dict[str, str]:
        return {
            key.removeprefix("endpoint."): s.value
            for key, s in self.settings.items()
            if key.startswith("endpoint.")
        }

    @property
    def api_key(self) -> str:
        setting = self.settings.get("api_key")
        return setting.value if setting else ""

    def missing(self, what: str) -> ConfigError:
        return ConfigError(f"{what}; looked at: {'; '.join(self.looked_at)}")


def user_config_path(env: Mapping[str, str]) -> str:
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "mevaas", "config.toml")


def find_local(start: PathLike) -> str | None:
    """`.data/mevaas.json` in `start` or the nearest parent."""
    directory = os.path.abspath(start)
    while True:
        candidate = os.path.join(directory, LOCAL_FILE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _is_json(path: str) -> bool:
    return os.path.splitext(path)[1] == ".json"


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        if _is_json(path):
            data: Any = json.loads(text)
        else:
            import tomllib  # only when there is a TOML file to read

            data = tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config file {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table/object at the top level")
    return data


def _layer(values: dict[str, Any], source: str) -> dict[str, Setting]:
    """Settings from one file section: `endpoint`, `endpoints.<service>`, `api_key`."""
    out: dict[str, Setting] = {}
    if values.get("endpoint"):
        out["endpoint.default"] = Setting(str(values["endpoint"]), source)
    for service, address in dict(values.get("endpoints", {})).items():
        if address:
            out[f"endpoint.{service}"] = Setting(str(address), source)
    if values.get("api_key"):
        out["api_key"] = Setting(str(values["api_key"]), source, secret=True)
    return out


def _profile_section(
    data: dict[str, Any], path: str, profile: Setting | None
) -> tuple[dict[str, Any], Setting]:
    profiles = dict(data.get("profiles", {}))
    if _is_json(path):  # the JSON form (as make run writes it) has no profiles
        return data, Setting("", f"{path} has no profiles")
    chosen = profile or (
        Setting(str(data["default_profile"]), f"default_profile in {path}")
        if data.get("default_profile")
        else Setting(DEFAULT_PROFILE, "built-in default")
    )
    if chosen.value not in profiles:
        if profile is None and not data.get("default_profile"):
            return {}, chosen  # no profile asked for and no default one: the file adds nothing
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"profile {chosen.value!r} ({chosen.source}) is not in {path}; profiles: {known}")
    return dict(profiles[chosen.value]), chosen


def resolve(
    overrides: Overrides | None = None,
    env: Mapping[str, str] | None = None,
    cwd: PathLike | None = None,
) -> Resolved:
    overrides = overrides or Overrides()
    env = os.environ if env is None else env
    cwd = os.getcwd() if cwd is None else os.fspath(cwd)
    settings: dict[str, Setting] = {}
    looked: list[str] = []

    local = find_local(cwd)
    if local is not None:
        settings.update(_layer(_read_file(local), f"make run's local defaults ({local})"))
        looked.append(f"{local} (found)")
    else:
        looked.append(f"{LOCAL_FILE} in {cwd} and every parent (none)")

    if overrides.config:
        path, path_source = overrides.config, "--config"
    elif env.get("MEVAAS_CONFIG"):
        path, path_source = env["MEVAAS_CONFIG"], "MEVAAS_CONFIG"
    else:
        path, path_source = user_config_path(env), ""
    profile = (
        Setting(overrides.profile, "flag --profile")
        if overrides.profile
        else Setting(env["MEVAAS_PROFILE"], "env MEVAAS_PROFILE")
        if env.get("MEVAAS_PROFILE")
        else None
    )
    if os.path.isfile(path):
        section, chosen = _profile_section(_read_file(path), path, profile)
        where = f"config file {path}" + (f" [profiles.{chosen.value}]" if chosen.value else "")
        settings.update(_layer(section, where))
        if chosen.value:
            settings["profile"] = chosen
        looked.append(f"{path} (found)")
    elif path_source:
        raise ConfigError(f"config file {path} (from {path_source}) does not exist")
    else:
        if profile is not None:
            raise ConfigError(
                f"profile {profile.value!r} ({profile.source}) asked for, but {path} does not exist"
            )
        looked.append(f"{path} (none)")

    if env.get("MEVAAS_ENDPOINT"):
        settings["endpoint.default"] = Setting(env["MEVAAS_ENDPOINT"], "env MEVAAS_ENDPOINT")
    for service in SERVICES:
        name = f"MEVAAS_{service.upper()}_ENDPOINT"
        if env.get(name):
            settings[f"endpoint.{service}"] = Setting(env[name], f"env {name}")
    if env.get("MEVAAS_API_KEY"):
        settings["api_key"] = Setting(env["MEVAAS_API_KEY"], "env MEVAAS_API_KEY", secret=True)
    looked.append("env MEVAAS_*")

    if overrides.endpoint:
        # One address for every service (an ingress): it replaces the per-service ones too.
        settings = {k: v for k, v in settings.items() if not k.startswith("endpoint.")}
        settings["endpoint.default"] = Setting(overrides.endpoint, "flag --endpoint")
    return Resolved(settings, tuple(looked))
