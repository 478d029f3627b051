"""The market recording backtests replay: files older than the retention are deleted when a file
is written, newer ones kept; a backtest waits for the recording to reach its last block."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from mevaas.events.v1 import events_pb2
from mevaas_analytics.history import MarketHistory

POOL = events_pb2.PoolState(
    address="0x" + "11" * 20,
    dex="uniswap_v2",
    token0="0x" + "22" * 20,
    token1="0x" + "33" * 20,
    reserve0="1000",
    reserve1="2000",
    fee_bps=30,
)


def update(block: int) -> events_pb2.MarketUpdate:
    message = events_pb2.MarketUpdate(chain_id=31337, block_number=block, pools=[POOL])
    message.block_timestamp.seconds = 1_700_000_000 + block
    return message


def test_files_past_the_retention_go_when_the_next_file_is_written(tmp_path: Path) -> None:
    now = [1_000_000.0]
    history = MarketHistory(tmp_path, blocks_per_file=2, retention=timedelta(hours=1), clock=lambda: now[0])
    for block in (1, 2):
        history.record(update(block))
    (old,) = history.files(31337)
    os.utime(old, (now[0] - 7200, now[0] - 7200))  # written two hours ago
    for block in (3, 4):
        history.record(update(block))
    (kept,) = history.files(31337)
    assert kept != old and not old.exists()
    assert kept.name == "market-31337-000000000003-000000000004.npz"
    # A recording kept forever: nothing is pruned.
    forever = MarketHistory(tmp_path, blocks_per_file=2)
    os.utime(kept, (0, 0))
    assert forever.prune(31337) == [] and kept.exists()


def test_a_backtest_waits_for_the_recording_to_reach_its_range() -> None:
    async def scenario() -> tuple[bool, bool]:
        history = MarketHistory(Path("/nonexistent-unused"), blocks_per_file=10**6)
        history.record(update(5))

        async def later() -> None:
            await asyncio.sleep(0.1)
            history.record(update(9))

        feeder = asyncio.create_task(later())
        reached = await history.caught_up(31337, 9, timeout_s=5)
        await feeder
        missing = await history.caught_up(31337, 50, timeout_s=0.2)
        return reached, missing

    assert asyncio.run(scenario()) == (True, False)
