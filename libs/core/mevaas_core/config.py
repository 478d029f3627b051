"""Typed settings read from the environment, failing fast with one clear message.

Every service subclasses `ServiceSettings`; fields map to upper-case env vars (e.g. `grpc_port`
is `GRPC_PORT`). `load_settings` turns pydantic's validation error into a single readable line so a
misconfigured pod dies at start with the variable name, not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(RuntimeError):
    """The environment does not describe a runnable service."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "mevaas"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = ""
    log_level: str = "INFO"
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # PEM public keys (or paths to PEM files) that verify access tokens, separated by ';'.
    jwt_public_keys: str = ""
    jwt_issuer: str = "mevaas-tenancy"
    jwt_audience: str = "mevaas"

    def public_key_pems(self) -> list[str]:
        pems: list[str] = []
        for item in (part.strip() for part in self.jwt_public_keys.split(";")):
            if not item:
                continue
            pems.append(item if "BEGIN" in item else Path(item).read_text())
        return pems


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or '<settings>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid {settings_cls.__name__}: {problems}") from None
