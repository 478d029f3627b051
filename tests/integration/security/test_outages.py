"""Outages (issue 10, item 5): with PostgreSQL or NATS gone, a service says NOT_SERVING on its
health and answers UNAVAILABLE with a safe message (no host, DSN or driver text); when they come
back it serves again. Tenancy here, on its own PostgreSQL and NATS so they can be stopped."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mevaas.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from mevaas_core.auth import SigningKey
from mevaas_core.db import provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_core.outages import SAFE_MESSAGE
from mevaas_local.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from tests.fixtures.servers import platform_nats_users

pytestmark = pytest.mark.integration

ADMIN_KEY = f"mvs_outageadmin_{secrets.token_urlsafe(24)}"


@dataclass
class Isolated:
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    runtime: Any

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.runtime.grpc_port}")


@pytest_asyncio.fixture(loop_scope="session")
async def isolated() -> AsyncIterator[Isolated]:
    from mevaas_tenancy.server import SERVICE, TenancyRuntime, TenancySettings

    # Not under pytest's tmp dir: other pytest runs on the machine reset its permissions, which
    # PostgreSQL's own user then cannot traverse.
    tmp_path = Path(tempfile.mkdtemp(prefix="mevaas-outages-"))

    postgres = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    nats = EmbeddedNats(tmp_path / "nats", port=free_port(), users=platform_nats_users())
    await postgres.start()
    await nats.start()
    key = SigningKey.generate()
    dsns = await provision_service_database(postgres.dsn, "tenancy", "app-pw", "owner-pw", "platform-pw")
    assert SERVICE.migrations is not None
    await apply_migrations(dsns.owner_dsn, "tenancy", SERVICE.migrations)
    settings = TenancySettings(
        database_url=dsns.app_dsn,
        platform_database_url=dsns.platform_dsn,
        nats_url=nats.url_for("tenancy"),
        grpc_port=0,
        metrics_port=0,
        jwt_private_key=key.private_pem(),
        jwt_public_keys=key.public_pem(),
        bootstrap_admin_key=ADMIN_KEY,
        shutdown_grace_seconds=0.5,
    )
    runtime = TenancyRuntime(settings)
    await runtime.start()
    try:
        yield Isolated(postgres, nats, runtime)
    finally:
        await runtime.stop()
        await nats.stop()
        await postgres.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)


async def health(env: Isolated) -> int:
    async with env.channel() as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return int(reply.status)


async def exchange(env: Isolated) -> grpc.StatusCode | str:
    async with env.channel() as channel:
        try:
            await tenancy_pb2_grpc.AuthServiceStub(channel).ExchangeApiKey(
                tenancy_pb2.ExchangeApiKeyRequest(api_key=ADMIN_KEY), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            assert "127.0.0.1" not in (exc.details() or "") and "asyncpg" not in (exc.details() or "")
            return exc.code() if exc.details() == SAFE_MESSAGE else f"{exc.code()}: {exc.details()}"
    return grpc.StatusCode.OK


async def until(check: Callable[[], Awaitable[Any]], expected: Any) -> None:
    last = None
    for _ in range(300):
        last = await check()
        if last == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {expected!r}, last {last!r}")


SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def test_postgres_down_is_not_serving_and_unavailable_then_back(isolated: Isolated) -> None:
    assert await exchange(isolated) == grpc.StatusCode.OK
    await isolated.postgres.stop()
    await until(lambda: health(isolated), NOT_SERVING)
    assert await exchange(isolated) == grpc.StatusCode.UNAVAILABLE
    await isolated.postgres.start()
    await until(lambda: health(isolated), SERVING)
    await until(lambda: exchange(isolated), grpc.StatusCode.OK)


async def test_nats_down_is_not_serving_then_back(isolated: Isolated) -> None:
    await isolated.nats.stop()
    await until(lambda: health(isolated), NOT_SERVING)
    await isolated.nats.start()
    await until(lambda: health(isolated), SERVING)
    assert await exchange(isolated) == grpc.StatusCode.OK
