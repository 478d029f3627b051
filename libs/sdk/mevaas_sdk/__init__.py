"""Typed Python SDK for the MEVaaS gRPC API (and the `mevaas` CLI built on it)."""

import os

# `mevaas up` forks server processes (preexec_fn); gRPC's fork handlers must stay out of those children.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from mevaas_sdk.client import ClientConfig, MevaasClient, describe_error

__all__ = ["ClientConfig", "MevaasClient", "describe_error"]
