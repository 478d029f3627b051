"""Per-RPC access policy, declared next to each servicer method with `@rpc(...)`.

The server kit refuses to start if any RPC of a registered service lacks a policy, so a new
method can never be reachable by accident without authentication or role checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mevaas_core.auth import Role

ALL_TENANT_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.TRADER, Role.VIEWER, Role.COMPLIANCE})
POLICY_ATTRIBUTE = "__rpc_policy__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RpcPolicy:
    roles: frozenset[Role]
    public: bool = False
    # Public RPCs that mint credentials (e.g. ExchangeApiKey) are still rate limited by peer.
    rate_limited: bool = True
    # Every call of a mutating RPC leaves an audit record (mevaas_core.audit); None: by its name.
    mutates: bool | None = None


def rpc(*roles: Role, public: bool = False, mutates: bool | None = None) -> Callable[[F], F]:
    """Declare who may call this RPC. `public=True` means no token is needed; `mutates` overrides
    what the method's name says (Get*/List*/... read, anything else mutates)."""
    if not roles and not public:
        raise ValueError("an RPC policy names at least one role or is public")

    def mark(fn: F) -> F:
        setattr(fn, POLICY_ATTRIBUTE, RpcPolicy(roles=frozenset(roles), public=public, mutates=mutates))
        return fn

    return mark
