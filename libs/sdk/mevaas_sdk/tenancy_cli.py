"""`mevaas up`, `whoami`, `tenant ...` and `apikey ...`: the local fleet, tenants and API keys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer

from mevaas.common.v1 import common_pb2
from mevaas.tenancy.v1 import tenancy_pb2
from mevaas_sdk.cli_support import JsonOption, console, emit, fail, run_call
from mevaas_sdk.client import MevaasClient

app = typer.Typer(help="The local fleet and who you are.", no_args_is_help=True)
tenant_app = typer.Typer(
    help="Tenants (platform admins create, list and suspend them).", no_args_is_help=True
)
apikey_app = typer.Typer(help="API keys of a tenant.", no_args_is_help=True)
TIERS = {
    "starter": common_pb2.TIER_STARTER,
    "professional": common_pb2.TIER_PROFESSIONAL,
    "enterprise": common_pb2.TIER_ENTERPRISE,
}
ROLES = {
    "owner": common_pb2.ROLE_OWNER,
    "admin": common_pb2.ROLE_ADMIN,
    "trader": common_pb2.ROLE_TRADER,
    "viewer": common_pb2.ROLE_VIEWER,
    "compliance": common_pb2.ROLE_COMPLIANCE,
}


@app.command("up")
def up(
    no_devnet: Annotated[
        bool, typer.Option("--no-devnet", help="Start only NATS, PostgreSQL and the services.")
    ] = False,
    sandwich_bot: Annotated[
        bool,
        typer.Option(
            "--sandwich-bot", help="Let an adversary sandwich public swaps on the devnet's main chain."
        ),
    ] = False,
) -> None:
    """Start the whole fleet locally: NATS, PostgreSQL, the devnet and every service."""
    from mevaas_core.grpckit import run_until_signalled
    from mevaas_local.fleet import run_fleet

    try:
        asyncio.run(
            run_until_signalled(
                lambda stop: run_fleet(stop, with_devnet=not no_devnet, sandwich_bot=sandwich_bot)
            )
        )
    except Exception as exc:
        raise fail(f"mevaas up failed: {exc}", 1) from None


@app.command("whoami")
def whoami(as_json: JsonOption = False) -> None:
    """Show who the configured API key is."""
    response = run_call(lambda c: c.auth.WhoAmI(tenancy_pb2.WhoAmIRequest()))
    emit(response, as_json, ["tenant_id", "subject", "roles", "tier", "tenant_status"])


@tenant_app.command("create")
def tenant_create(
    slug: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    tier: Annotated[str, typer.Option(help="starter, professional or enterprise.")] = "starter",
    dedicated: Annotated[bool, typer.Option(help="Dedicated namespace workers.")] = False,
    owner_email: Annotated[str, typer.Option(help="Create a first owner user.")] = "",
    idempotency_key: Annotated[str, typer.Option(help="Retry-safe key; random if omitted.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a tenant (platform admin)."""
    if tier not in TIERS:
        raise fail(f"--tier must be one of {', '.join(TIERS)}")
    request = tenancy_pb2.CreateTenantRequest(
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        slug=slug,
        display_name=name or slug,
        tier=TIERS[tier],
        isolation=common_pb2.ISOLATION_DEDICATED if dedicated else common_pb2.ISOLATION_SHARED,
        owner_email=owner_email,
    )
    response = run_call(lambda c: c.tenants.CreateTenant(request))
    emit(response.tenant, as_json, ["tenant_id", "slug", "display_name", "tier", "status"])


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False) -> None:
    """List tenants (platform admin)."""

    async def all_pages(client: MevaasClient) -> tenancy_pb2.ListTenantsResponse:
        combined = tenancy_pb2.ListTenantsResponse()
        token = ""
        while True:
            page = await client.tenants.ListTenants(
                tenancy_pb2.ListTenantsRequest(page=common_pb2.PageRequest(page_size=200, page_token=token))
            )
            combined.tenants.extend(page.tenants)
            token = page.page.next_page_token
            if not token:
                return combined

    emit(run_call(all_pages), as_json, ["tenant_id", "slug", "tier", "status", "onboarding_phase"], "tenants")


@tenant_app.command("get")
def tenant_get(tenant_id: Annotated[str, typer.Argument()] = "", as_json: JsonOption = False) -> None:
    """Show a tenant (your own when no id is given)."""
    response = run_call(lambda c: c.tenants.GetTenant(tenancy_pb2.GetTenantRequest(tenant_id=tenant_id)))
    emit(response.tenant, as_json or True)


@tenant_app.command("suspend")
def tenant_suspend(
    tenant_id: str, reason: Annotated[str, typer.Option()] = "suspended by platform admin"
) -> None:
    """Suspend a tenant (platform admin): its keys stop working."""
    response = run_call(
        lambda c: c.tenants.SuspendTenant(
            tenancy_pb2.SuspendTenantRequest(tenant_id=tenant_id, reason=reason)
        )
    )
    emit(response.tenant, False, ["tenant_id", "slug", "status", "suspended_reason"])


@apikey_app.command("create")
def apikey_create(
    name: str,
    role: Annotated[
        list[str] | None, typer.Option(help="Role(s): owner, admin, trader, viewer, compliance.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant id (platform admins only).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an API key; its secret is shown once."""
    role = role or ["trader"]
    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise fail(f"unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}")
    request = tenancy_pb2.CreateApiKeyRequest(
        idempotency_key=str(uuid.uuid4()), tenant_id=tenant, name=name, roles=[ROLES[r] for r in role]
    )
    response = run_call(lambda c: c.tenants.CreateApiKey(request))
    if as_json:
        emit(response, True)
        return
    console.print(f"api key id: {response.api_key.api_key_id}")
    console.print(f"secret (shown once): [bold]{response.secret}[/bold]")


@apikey_app.command("list")
def apikey_list(
    tenant: Annotated[str, typer.Option(help="Tenant id (platform admins only).")] = "",
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List API keys (never their secrets)."""
    request = tenancy_pb2.ListApiKeysRequest(tenant_id=tenant, include_revoked=revoked)
    response = run_call(lambda c: c.tenants.ListApiKeys(request))
    emit(response, as_json, ["api_key_id", "name", "roles", "last_used_at", "revoked"], "api_keys")


@apikey_app.command("revoke")
def apikey_revoke(api_key_id: str, reason: Annotated[str, typer.Option()] = "") -> None:
    """Revoke an API key."""
    response = run_call(
        lambda c: c.tenants.RevokeApiKey(
            tenancy_pb2.RevokeApiKeyRequest(api_key_id=api_key_id, reason=reason)
        )
    )
    emit(response.api_key, False, ["api_key_id", "name", "revoked", "revoked_at"])
