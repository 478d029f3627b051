"""One rate limit per tenant (issue 10, item 4): a tenant's calls spread over all five services
are held to its plan within 10% (one bucket in NATS KV for the fleet, not one per process), and
platform admins get a plan too."""

from __future__ import annotations

import asyncio
import time

import grpc
import jwt
import pytest

from mevaas.common.v1 import common_pb2
from mevaas_sdk import MevaasClient
from tests.fixtures.fleet import PROBES, Fleet
from tests.fixtures.platform import BOOTSTRAP_ADMIN_KEY
from tests.integration.security.test_revocation import exchange
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

RATE, BURST, SECONDS = 40, 40, 2.5


async def test_a_tenants_calls_across_all_services_are_held_to_its_plan(
    fleet: Fleet, admin_client: MevaasClient
) -> None:
    plan = common_pb2.Plan(
        name="metered",
        rate_limit_per_second=RATE,
        rate_limit_burst=BURST,
        max_strategies=5,
        max_concurrent_executions=5,
    )
    tenant = await create_tenant(admin_client, plan=plan)
    token = await exchange(fleet, tenant.owner_key)
    metadata = [("authorization", f"Bearer {token}")]
    served: list[float] = []
    refused = 0

    async def hammer(service: str, until: float) -> None:
        nonlocal refused
        async with fleet.channel(service) as channel:
            while (started := time.monotonic()) < until:
                try:
                    await PROBES[service](channel, metadata)
                    served.append(started)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (service, exc.code())
                    refused += 1

    until = time.monotonic() + SECONDS
    await asyncio.gather(*(hammer(service, until) for service in fleet.runtimes for _ in range(2)))
    assert refused > 0, "the callers asked for more than the plan"
    # What the plan allows over the window the calls were served in: the burst, then the rate.
    allowed = BURST + RATE * (max(served) - min(served))
    assert abs(len(served) - allowed) <= 0.10 * allowed, (len(served), allowed)
    per_service_ceiling = BURST + RATE * SECONDS  # one process alone would have allowed this each
    assert len(served) < 2 * per_service_ceiling


async def test_platform_admins_are_limited_at_a_higher_plan(fleet: Fleet) -> None:
    claims = jwt.decode(await exchange(fleet, BOOTSTRAP_ADMIN_KEY), options={"verify_signature": False})
    assert claims["rps"] == 1000 and claims["burst"] == 2000
