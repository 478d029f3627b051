"""`make run` as a new user gets it: the fleet of `mevaas up` (embedded NATS and PostgreSQL, the
seeded two-chain devnet, every service as its own process) starts with no service skipped, and a
few blocks in, a backtest over the blocks it recorded succeeds and CompareBacktestToLive reports
(backtests work out of the box). Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from mevaas.common.v1 import common_pb2
from mevaas.strategy.v1 import strategy_pb2, strategy_pb2_grpc
from mevaas_chain.client import ChainClient
from mevaas_chain.registry import load_registry_file
from mevaas_core.service import discover_services
from mevaas_sdk import ClientConfig, MevaasClient
from tests.fixtures.strategy import strategy_config
from tests.integration.tenancy.helpers import create_tenant

pytestmark = pytest.mark.integration
T = TypeVar("T")

START = """
import asyncio, sys
from pathlib import Path
from typing import Any, TypeVar
from mevaas_core.grpckit import run_until_signalled
from mevaas_local.fleet import run_fleet
asyncio.run(run_until_signalled(lambda stop: run_fleet(stop, data_dir=Path(sys.argv[1]))))
"""


async def until(probe: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s} s")
        await asyncio.sleep(0.5)


async def test_make_run_starts_every_service_and_a_backtest_works_minutes_in() -> None:
    # Not under pytest's tmp dir: PostgreSQL's user must traverse it (see test_supervisor).
    root = Path(tempfile.mkdtemp(prefix="mevaas-make-run-"))
    data_dir = root / "data"
    log = (root / "up.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    fleet = subprocess.Popen(
        [sys.executable, "-c", START, str(data_dir)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:

        async def up() -> dict[str, Any] | None:
            assert fleet.poll() is None, (root / "up.log").read_text()
            path = data_dir / "mevaas.json"
            return json.loads(path.read_text()) if path.exists() else None

        config = await until(up, 300, "the fleet")
        endpoints = {str(k): str(v) for k, v in config["endpoints"].items()}
        output = (root / "up.log").read_text()
        assert "skipped a service" not in output, output
        assert set(endpoints) == {s.name for s in discover_services()}
        assert "DEVNET" not in output or "RESET" not in output  # a new data dir: a new chain, no reset notice

        registry = load_registry_file(data_dir / "devnet" / "chains.json")
        chain = registry.chains[0]
        rpc = ChainClient(chain.rpc_url)
        admin = MevaasClient(
            ClientConfig(
                endpoints={"default": endpoints["tenancy"], **endpoints}, api_key=str(config["api_key"])
            )
        )
        tenant = await create_tenant(admin)
        owner = MevaasClient(
            ClientConfig(endpoints={"default": endpoints["tenancy"], **endpoints}, api_key=tenant.owner_key)
        )
        try:
            strategies: strategy_pb2_grpc.StrategyServiceAsyncStub = owner.stub(
                "strategy", strategy_pb2_grpc.StrategyServiceStub
            )
            strategy = (
                await strategies.CreateStrategy(
                    strategy_pb2.CreateStrategyRequest(
                        idempotency_key=str(uuid.uuid4()),
                        config=strategy_config(chain, name="first-backtest"),
                    )
                )
            ).strategy
            # The devnet mines a block a second and analytics records each from the start.
            first = await rpc.block_number()
            await until(lambda: _beyond(rpc, first + 8), 120, "eight more blocks")
            span = common_pb2.BlockRange(chain_id=chain.chain_id, from_block=first + 1, to_block=first + 8)
            backtest = (
                await strategies.Backtest(
                    strategy_pb2.BacktestRequest(
                        idempotency_key=str(uuid.uuid4()), strategy_id=strategy.strategy_id, block_range=span
                    )
                )
            ).backtest
            assert backtest.status == strategy_pb2.BACKTEST_STATUS_SUCCEEDED, backtest.error
            assert backtest.blocks_replayed == 8
            now = datetime.now(UTC)
            window = common_pb2.Timeframe()
            window.range.start.FromDatetime(now - timedelta(hours=1))
            window.range.end.FromDatetime(now)
            compared = await strategies.CompareBacktestToLive(
                strategy_pb2.CompareBacktestToLiveRequest(
                    backtest_id=backtest.backtest_id, live_timeframe=window
                )
            )
            assert compared.strategy_id == strategy.strategy_id
            assert compared.live_metrics.trade_count == 0  # nothing ran live
            assert int(compared.pnl_difference) == -int(backtest.metrics.total_pnl or "0")
            assert list((data_dir / "market-history" / str(chain.chain_id)).glob("market-*.npz"))
            # The portal on plain http://127.0.0.1: `mevaas up` opts out of Secure cookies
            # (SECURE_COOKIES=false, docs/portal.md), so every browser keeps the session.
            printed = (root / "up.log").read_text()
            found = re.search(r"Portal: http://127\.0\.0\.1:(\d+)/t/", printed)
            assert found, printed
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{found.group(1)}/portal/session",
                    json={"slug": tenant.tenant.slug, "api_key": tenant.owner_key},
                ) as reply,
            ):
                assert reply.status == 200, await reply.text()
                cookie = reply.cookies["mevaas_session"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
        finally:
            await owner.close()
            await admin.close()
            await rpc.close()
    finally:
        fleet.send_signal(signal.SIGINT)
        try:
            code = fleet.wait(timeout=90)
        except subprocess.TimeoutExpired:
            fleet.kill()
            code = fleet.wait()
        log.close()
        output = (root / "up.log").read_text(errors="replace")
        shutil.rmtree(root, ignore_errors=True)
    assert code == 0, output[-3000:]


async def _beyond(rpc: ChainClient, block: int) -> bool:
    return await rpc.block_number() >= block
