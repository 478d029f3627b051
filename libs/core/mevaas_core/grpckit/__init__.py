"""The gRPC server kit: one way to build, secure, observe and drain every service's server."""

from mevaas_core.grpckit.channel import client_channel
from mevaas_core.grpckit.context import current_principal, require_tenant_scope
from mevaas_core.grpckit.policy import ALL_TENANT_ROLES, RpcPolicy, rpc
from mevaas_core.grpckit.server import GrpcServer, run_until_signalled

__all__ = [
    "ALL_TENANT_ROLES",
    "GrpcServer",
    "RpcPolicy",
    "client_channel",
    "current_principal",
    "require_tenant_scope",
    "rpc",
    "run_until_signalled",
]
