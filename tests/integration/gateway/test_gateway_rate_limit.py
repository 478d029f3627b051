"""The plan's rate limit through the HTTP API: past the burst a tenant's calls are answered 429
with the google.rpc status RESOURCE_EXHAUSTED and a Retry-After of whole seconds, whether the
service refused them or the gateway's own bucket did (cached replies are counted too); another
tenant is not held back."""

from __future__ import annotations

import aiohttp
import pytest

from mevaas.common.v1 import common_pb2
from mevaas_sdk import MevaasClient
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration

PATH = "/v1/mevaas.strategy.v1.StrategyService/ListStrategies"


async def test_over_the_plan_is_429_with_retry_after(gateway_url: str, admin_client: MevaasClient) -> None:
    plan = common_pb2.Plan(
        name="trickle",
        rate_limit_per_second=1,
        rate_limit_burst=3,
        max_strategies=5,
        max_concurrent_executions=1,
    )
    slow = await create_tenant(admin_client, plan=plan)
    other = await create_tenant(admin_client)
    async with aiohttp.ClientSession() as http:
        answers = []
        for _ in range(8):  # the same read: after the first, the gateway's cache answers it
            async with http.post(
                f"{gateway_url}{PATH}", json={}, headers={"X-API-Key": slow.owner_key}
            ) as reply:
                answers.append((reply.status, reply.headers.get("Retry-After"), await reply.json()))
        assert [a[0] for a in answers[:3]] == [200, 200, 200]
        refused = [a for a in answers if a[0] == 429]
        assert refused, [a[0] for a in answers]
        for _, retry_after, body in refused:
            assert body["status"] == "RESOURCE_EXHAUSTED" and "rate limit" in body["message"]
            assert retry_after is not None and int(retry_after) >= 1
        async with http.post(
            f"{gateway_url}{PATH}", json={}, headers={"X-API-Key": other.owner_key}
        ) as reply:
            assert reply.status == 200
