"""Typed Python SDK for the MEVaaS gRPC API (and the `mevaas` CLI built on it)."""

from mevaas_sdk.client import ClientConfig, MevaasClient, describe_error

__all__ = ["ClientConfig", "MevaasClient", "describe_error"]
