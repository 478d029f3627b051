"""Every unary RPC of the v1 API reaches its live service over HTTP (issue 12: "every RPC is
reachable"): the RPCs are enumerated from the protos (not from the gateway's own route list), the
OpenAPI document names each of them, and an empty request to each one, as a tenant owner and as
the platform admin, gets the service's own answer: a reply of the RPC's response type, or the
error the service chose (an empty request is usually INVALID_ARGUMENT; a tenant's call to an admin
RPC PERMISSION_DENIED), never an unknown route, an unimplemented method, an unreachable upstream
or a 5xx."""

from __future__ import annotations

import json
from importlib import import_module

import aiohttp
import pytest
from google.protobuf import json_format
from google.protobuf.message_factory import GetMessageClass

from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer
from mevaas_gateway.server import API_MODULES
from mevaas_sdk import MevaasClient
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

# google.rpc codes that mean the call never reached a handler that knows it.
NOT_REACHED = {2: "UNKNOWN", 4: "DEADLINE_EXCEEDED", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE"}


def unary_rpcs() -> dict[str, type]:
    """HTTP path -> response message class, for every unary RPC of the API's proto files."""
    rpcs: dict[str, type] = {}
    for name in API_MODULES:
        for service in import_module(name).DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if not (method.client_streaming or method.server_streaming):
                    rpcs[f"/v1/{service.full_name}/{method.name}"] = GetMessageClass(method.output_type)
    return rpcs


async def test_every_rpc_reaches_its_service(
    gateway_url: str, jwt_signing_key: SigningKey, admin_client: MevaasClient
) -> None:
    tenant = await create_tenant(admin_client)
    issuer = TokenIssuer(jwt_signing_key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=3600)
    tokens = {
        role: issuer.issue(
            Principal(
                subject=f"every-rpc-{role}",
                tenant_id=tenant.tenant.tenant_id,
                roles=frozenset({role}),
                rate_per_second=100_000,
                burst=100_000,
            )
        )[0]
        for role in (Role.OWNER, Role.PLATFORM_ADMIN)
    }
    rpcs = unary_rpcs()
    assert len(rpcs) > 50
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{gateway_url}/openapi.json") as reply:
            assert reply.status == 200
            documented = set((await reply.json())["paths"])
        assert set(rpcs) <= documented, sorted(set(rpcs) - documented)
        for path, response_type in sorted(rpcs.items()):
            for role, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                async with http.post(f"{gateway_url}{path}", data=b"{}", headers=headers) as reply:
                    status, text = reply.status, await reply.text()
                what = f"{path} as {role}: {status} {text[:200]}"
                if status >= 500:
                    failures.append(what)
                    continue
                body = json.loads(text)
                if status == 200:
                    json_format.ParseDict(body, response_type())  # the RPC's own reply type
                    answered.setdefault(path, set()).add(0)
                    continue
                code = body.get("code")
                if code in NOT_REACHED or not isinstance(code, int) or not body.get("message"):
                    failures.append(what)
                    continue
                answered.setdefault(path, set()).add(code)
    assert failures == [], "\n".join(failures)
    assert set(answered) == set(rpcs)
