"""Typed settings read from the environment, failing fast with one clear message.

Every service subclasses `ServiceSettings`; fields map to upper-case env vars (e.g. `grpc_port`
is `GRPC_PORT`). `load_settings` turns pydantic's validation error into a single readable line so a
misconfigured pod dies at start with the variable name, not a traceback.

Secrets may come as files instead of variables: with `SECRETS_DIR` set, a file named after a field
(`database_url`, `execution_kek`, ...) in that directory sets it (Kubernetes mounts Secrets there, so
no key material sits in a pod's environment). A variable of the same name still wins, except that a
NATS URL carrying a password is refused in the environment: bus credentials come only as files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(RuntimeError):
    """The environment does not describe a runnable service."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "mevaas"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # PEM certificate and key: the gRPC port serves TLS (both or neither).
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    # A plaintext port serving only grpc.health.v1 (kubelet probes when the gRPC port is TLS).
    grpc_health_port: int | None = Field(default=None, ge=0, le=65535)
    # CA bundle (PEM file) the service's own gRPC clients verify the platform's TLS servers with
    # (mevaas_core.grpckit.channel); empty = plaintext channels.
    grpc_tls_ca_file: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    nats_url: str = "nats://127.0.0.1:4222"
    # CA bundle (PEM file) that verifies the NATS server of a `tls://` URL; empty = system CAs.
    nats_tls_ca_file: str = ""
    # Replicas of the JetStream streams this service creates (3 on a 3-node NATS cluster).
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    database_url: str = ""
    # The service's platform role (cross-tenant jobs only; see mevaas_core.db). Required with a database.
    platform_database_url: str = ""
    log_level: str = "INFO"
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # PEM public keys (or paths to PEM files) that verify access tokens, separated by ';'.
    jwt_public_keys: str = ""
    jwt_issuer: str = "mevaas-tenancy"
    jwt_audience: str = "mevaas"
    # Tokens living longer than this are refused, and revocations are remembered this long.
    jwt_max_lifetime_seconds: int = Field(default=3600, ge=60, le=86400)

    def public_key_pems(self) -> list[str]:
        pems: list[str] = []
        for item in (part.strip() for part in self.jwt_public_keys.split(";")):
            if not item:
                continue
            pems.append(item if "BEGIN" in item else Path(item).read_text())
        return pems


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


SECRETS_DIR_ENV = "SECRETS_DIR"


def secrets_dir() -> Path | None:
    """The directory of secret files (`SECRETS_DIR`), if one is configured."""
    value = os.environ.get(SECRETS_DIR_ENV, "")
    return Path(value) if value else None


def read_secret(name: str) -> str:
    """A secret by variable name: the variable, else the file `<SECRETS_DIR>/<name lower-cased>`,
    else "" (for code that reads a variable itself rather than through a settings class)."""
    value = os.environ.get(name)
    if value is not None:
        return value
    directory = secrets_dir()
    if directory is not None:
        path = directory / name.lower()
        if path.is_file():
            return path.read_text().strip()
    return ""


def _refuse_bus_credentials_in_env() -> None:
    value = os.environ.get("NATS_URL", "")
    if any(urlsplit(u.strip()).password for u in value.split(",") if u.strip()):
        raise ConfigError(
            "NATS_URL carries a password in the environment: deliver the NATS URL with its "
            f"credentials as the file <{SECRETS_DIR_ENV}>/nats_url"
        )


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    _refuse_bus_credentials_in_env()
    directory = secrets_dir()
    if directory is not None:
        if not directory.is_dir():
            raise ConfigError(f"{SECRETS_DIR_ENV}={directory} is not a directory")
        overrides.setdefault("_secrets_dir", directory)
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or '<settings>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid {settings_cls.__name__}: {problems}") from None
