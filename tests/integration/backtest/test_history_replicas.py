"""Backtest runs go to a queue group, one member each: only an analytics replica that records the
market history joins it (a replica without one answered "no market history recorded" for a range
its peers held: CI, test_backtest_reproduces_the_live_run after test_market_ingest's replica), and
one that started late reads back the blocks before its start from the CHAIN stream, so it replays
a range exactly as a replica that saw every block."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mevaas.events.v1 import events_pb2
from mevaas_analytics.backtests import Backtests
from mevaas_analytics.domain.backtest import load_history
from mevaas_analytics.history import MarketHistory
from mevaas_core import subjects
from mevaas_core.bus import PLATFORM_TENANT, Bus
from mevaas_core.bus.follow import read_back
from tests.integration.analytics.test_market_ingest import update

pytestmark = pytest.mark.integration


async def served(bus: Bus, history: MarketHistory) -> set[str]:
    services = await Backtests(None, bus, history, lambda: None).serve()  # type: ignore[arg-type, return-value]
    try:
        return {service.subject for service in services}
    finally:
        for service in services:
            await service.stop()


async def test_only_a_replica_recording_the_market_runs_backtests(bus: Bus, tmp_path: Path) -> None:
    reads = {subjects.BACKTEST_GET, subjects.BACKTEST_LIST, subjects.BACKTEST_COMPARE}
    assert await served(bus, MarketHistory(tmp_path, 1000)) == reads | {subjects.BACKTEST_RUN}
    # Reads of stored backtests come from the shared database: any replica answers them.
    assert await served(bus, MarketHistory(None, 1000)) == reads


async def test_a_replica_that_started_late_reads_back_the_blocks_before_it(bus: Bus, tmp_path: Path) -> None:
    # The feed of a chain no other test uses: full pools at block 1, changes after, a reorged 5.
    chain_id = random.randrange(10**7, 10**8)
    feed = [update(chain_id, 1, {i: (10, 100 + i) for i in range(4)})]
    for number in range(2, 31):
        feed.append(update(chain_id, number, {number % 4: (number, 1000 + number)}))
        if number == 5:
            feed.append(update(chain_id, 5, {1: (55, 555)}, reorg=True))
    for message in feed:
        await bus.publish(
            f"chain.{chain_id}.block", message, msg_id=message.event_id, tenant_id=PLATFORM_TENANT
        )

    # A replica that saw everything, and one that started at block 20.
    always = MarketHistory(tmp_path / "always", 1000)
    for message in feed:
        always.record(message)
    always.flush()
    late = MarketHistory(tmp_path / "late", 8)
    for message in feed:
        if message.block_number >= 20:
            late.record(message)
    assert late.needs_read_back(chain_id, 10) and not late.needs_read_back(chain_id, 20)

    stream = read_back(bus, "CHAIN", f"chain.{chain_id}.block", events_pb2.MarketUpdate)
    assert await late.read_back(chain_id, stream) == 19
    late.flush()
    assert load_history(late.files(chain_id), 0, 30) == load_history(always.files(chain_id), 0, 30)
    # Once per process: the next backtest reads nothing back.
    assert not late.needs_read_back(chain_id, 1)
    again = read_back(bus, "CHAIN", f"chain.{chain_id}.block", events_pb2.MarketUpdate)
    assert await late.read_back(chain_id, again) == 0


async def test_a_chain_the_stream_holds_nothing_of_reads_back_nothing_and_ends(
    bus: Bus, tmp_path: Path
) -> None:
    # No block of this chain was ever published: the read back ends after its idle wait.
    chain_id = random.randrange(10**8, 10**9)
    history = MarketHistory(tmp_path, 1000)
    assert history.needs_read_back(chain_id, 1)
    stream = read_back(bus, "CHAIN", f"chain.{chain_id}.block", events_pb2.MarketUpdate, idle_s=0.5)
    assert await history.read_back(chain_id, stream) == 0
    assert history.files(chain_id) == [] and not history.needs_read_back(chain_id, 1)
