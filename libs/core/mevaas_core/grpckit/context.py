"""Per-request context: who is calling, and which tenant a request may act on."""

from __future__ import annotations

from contextvars import ContextVar

from mevaas_core.auth import Principal
from mevaas_core.errors import PermissionDenied, Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("mevaas_principal", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token")
    return principal


def require_tenant_scope(requested_tenant_id: str = "") -> str:
    """The tenant a request acts on: the caller's own, or any tenant for a platform admin.

    A tenant naming another tenant gets PERMISSION_DENIED, never that tenant's data.
    """
    principal = current_principal()
    if not requested_tenant_id or requested_tenant_id == principal.tenant_id:
        return principal.tenant_id
    if principal.is_platform_admin:
        return requested_tenant_id
    raise PermissionDenied("a tenant can only act on its own resources")
