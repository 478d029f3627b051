"""The gateway as a process would run it (real NATS, real HTTP): OpenAPI served, the error model
for unknown routes, bad JSON and missing upstreams."""

from __future__ import annotations

import aiohttp
import pytest

pytestmark = pytest.mark.integration


async def test_openapi_and_error_model(lone_gateway: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{lone_gateway}/openapi.json") as reply:
            assert reply.status == 200
            document = await reply.json()
        assert "/v1/mevaas.strategy.v1.StrategyService/CreateStrategy" in document["paths"]
        async with http.post(f"{lone_gateway}/v1/mevaas.nope.v1.X/Y", json={}) as reply:
            assert reply.status == 404
            assert (await reply.json())["status"] == "NOT_FOUND"
        path = "/v1/mevaas.strategy.v1.StrategyService/CreateStrategy"
        async with http.post(f"{lone_gateway}{path}", data=b"{not json") as reply:
            assert reply.status == 400
            body = await reply.json()
        assert body["details"][0]["fieldViolations"][0]["field"] == "body"
        async with http.post(f"{lone_gateway}{path}", json={"noSuchField": 1}) as reply:
            assert reply.status == 400
        async with http.get(f"{lone_gateway}{path}") as reply:
            assert reply.status == 400  # a mutation is POST only
        async with http.post(
            f"{lone_gateway}/v1/mevaas.tenancy.v1.AuthService/GetPublicKeys", json={}
        ) as reply:
            assert reply.status == 503  # no upstream configured: UNAVAILABLE, not a crash
            assert (await reply.json())["status"] == "UNAVAILABLE"
