"""Typed Python SDK for the MEVaaS gRPC API (and the `mevaas` CLI built on it).

The names are loaded on first use, so `mevaas --help` never pays for grpc and the stubs.
"""

from __future__ import annotations

import os

# Not typing's TYPE_CHECKING: importing typing is a good part of `mevaas --help`'s start-up.
TYPE_CHECKING = False

# `mevaas up` forks server processes (preexec_fn); gRPC's fork handlers must stay out of those children.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

if TYPE_CHECKING:
    from mevaas_sdk.client import ClientConfig, MevaasClient
    from mevaas_sdk.errors import describe_error

__all__ = ["ClientConfig", "MevaasClient", "describe_error"]
_HOMES = {
    "ClientConfig": "mevaas_sdk.client",
    "MevaasClient": "mevaas_sdk.client",
    "describe_error": "mevaas_sdk.errors",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'mevaas_sdk' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
