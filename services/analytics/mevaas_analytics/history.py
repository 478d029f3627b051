"""The market history backtests replay: pool states per block and chain, recorded from the
market feed into `.npz` files (domain.backtest.MarketRecorder) and deleted after the retention.

Each replica records the feed from its own start, so one that started late (a rolling update, a
second replica, a restarted pod on a fresh emptyDir) reads back the blocks before it from the
CHAIN stream, which keeps a day, the first time a backtest asks for them: replicas of the queue
group then answer the same range alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable
from datetime import timedelta
from pathlib import Path

from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain.backtest import MarketRecorder, PoolInfo


class MarketHistory:
    """Pool states per block and chain, kept in memory and written to `.npz` files every
    `blocks_per_file` blocks (and on `flush`, which a backtest calls to see the latest blocks)."""

    def __init__(
        self,
        directory: Path | None,
        blocks_per_file: int,
        *,
        retention: timedelta | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.blocks_per_file = blocks_per_file
        self.retention = retention
        self.clock = clock
        self.recorders: dict[int, MarketRecorder] = {}
        # The highest block recorded per chain (this process follows the feed on its own).
        self.latest: dict[int, int] = {}
        # The first block this process recorded from the live feed, per chain.
        self.first: dict[int, int] = {}
        # Chains whose older blocks were read back from the stream (once per process).
        self._read_back: set[int] = set()
        self._read_back_lock = asyncio.Lock()

    def record(self, update: events_pb2.MarketUpdate) -> None:
        if self.directory is None:
            return
        self.latest[update.chain_id] = max(self.latest.get(update.chain_id, 0), update.block_number)
        self.first.setdefault(update.chain_id, update.block_number)
        recorder = self.recorders.setdefault(update.chain_id, MarketRecorder(update.chain_id))
        _add(recorder, update)
        if len(recorder.blocks) >= self.blocks_per_file:
            recorder.write(self.directory / str(update.chain_id))
            self.prune(update.chain_id)

    def needs_read_back(self, chain_id: int, from_block: int) -> bool:
        """Whether a range from ``from_block`` starts before what this process recorded itself."""
        if self.directory is None or chain_id in self._read_back:
            return False
        first = self.first.get(chain_id)
        return first is None or from_block < first

    async def read_back(self, chain_id: int, updates: AsyncIterable[events_pb2.MarketUpdate]) -> int:
        """Record the blocks of ``updates`` (the stream's, oldest first) that came before this
        process's own first block of the chain; returns how many blocks were added."""
        async with self._read_back_lock:
            if self.directory is None or chain_id in self._read_back:
                return 0
            directory = self.directory / str(chain_id)
            recorder = MarketRecorder(chain_id)
            added: set[int] = set()
            async for update in updates:
                first = self.first.get(chain_id)
                if update.chain_id != chain_id or (first is not None and update.block_number >= first):
                    continue
                _add(recorder, update)
                added.add(update.block_number)
                self.latest[chain_id] = max(self.latest.get(chain_id, 0), update.block_number)
                if len(recorder.blocks) >= self.blocks_per_file:
                    recorder.write(directory)
            recorder.write(directory)
            self._read_back.add(chain_id)
            return len(added)

    def prune(self, chain_id: int) -> list[Path]:
        """Delete the chain's files last written longer ago than the retention; returns them."""
        if self.directory is None or self.retention is None:
            return []
        horizon = self.clock() - self.retention.total_seconds()
        expired = [p for p in self.files(chain_id) if p.stat().st_mtime < horizon]
        for path in expired:
            path.unlink(missing_ok=True)
        return expired

    async def caught_up(self, chain_id: int, block_number: int, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s``) until ``block_number`` of the chain is recorded: the feed this
        process follows may trail the stored market rows a backtest's range was checked against."""
        deadline = time.monotonic() + timeout_s
        while self.directory is not None and self.latest.get(chain_id, 0) < block_number:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def flush(self, chain_id: int | None = None) -> None:
        if self.directory is None:
            return
        for chain, recorder in self.recorders.items():
            if chain_id is None or chain == chain_id:
                recorder.write(self.directory / str(chain))
                self.prune(chain)

    def files(self, chain_id: int) -> list[Path]:
        if self.directory is None:
            return []
        return sorted((self.directory / str(chain_id)).glob(f"market-{chain_id}-*.npz"))


def _add(recorder: MarketRecorder, update: events_pb2.MarketUpdate) -> None:
    recorder.add(
        update.block_number,
        update.block_timestamp.seconds,
        (
            (
                PoolInfo(p.address, p.dex, p.token0, p.token1, p.fee_bps),
                int(p.reserve0 or 0),
                int(p.reserve1 or 0),
            )
            for p in update.pools
        ),
        base_fee=int(update.base_fee_per_gas or 0),
    )
