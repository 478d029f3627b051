"""Analytics benchmarks, each against a baseline in the same run.

* Backtest replay speed in pool updates per second: the incremental replay (the plugin re-evaluates
  only cycles touching pools changed in the block) against a naive baseline that re-evaluates every
  two-pool cycle from scratch after every block. Same synthetic history, same results checked.
* Read-model ingest rate in events per second into an embedded PostgreSQL (durable=False, the
  analytics schema migrated, RLS on): the service's `BatchWriter` (the rows of every handler in
  flight in one transaction, `executemany` per statement) against one transaction per event, both
  with the same number of concurrent handlers and connections. Set DATABASE_URL to use a server.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics import store
from mevaas_analytics.domain.backtest import BlockChanges, PoolInfo, replay
from mevaas_analytics.events import BatchWriter
from mevaas_analytics.server import SERVICE
from mevaas_core.db import create_pool, platform_transaction, provision_service_database
from mevaas_core.migrations import apply_migrations
from mevaas_local.embedded import EmbeddedPostgres

CHAIN = 31337
TOKENS = [f"0x{i:040x}" for i in range(1, 61)]


@dataclass(frozen=True)
class Cycle:
    pools: tuple[str, str]
    net_profit: int
    gas_cost: int = 0

    @property
    def route_key(self) -> str:
        return ">".join(self.pools)


def out_amount(amount: int, reserve_in: int, reserve_out: int) -> int:
    amount_fee = amount * 997
    return amount_fee * reserve_out // (reserve_in * 1000 + amount_fee)


class CyclePlugin:
    """Two-pool cycles between pools of the same token pair, 1 unit-of-0.1%-reserve trade size."""

    def __init__(self, pools: Mapping[str, PoolInfo]) -> None:
        by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
        for info in pools.values():
            by_pair[(info.token0, info.token1)].append(info.address)
        self.cycles = [(a, b) for group in by_pair.values() for a in group for b in group if a != b]
        self.touching: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for cycle in self.cycles:
            for pool in cycle:
                self.touching[pool].append(cycle)
        self.best: dict[tuple[str, str], Cycle] = {}

    def _evaluate(self, market: Mapping[str, tuple[PoolInfo, int, int]], cycle: tuple[str, str]) -> None:
        (_, a0, a1), (_, b0, b1) = market[cycle[0]], market[cycle[1]]
        amount = a0 // 1000
        back = out_amount(out_amount(amount, a0, a1), b1, b0)
        if back > amount:
            self.best[cycle] = Cycle(cycle, back - amount)
        else:
            self.best.pop(cycle, None)

    def on_market_update(self, market: Any, changed: Any) -> list[Cycle]:
        targets = (
            self.cycles if changed is None else {c for pool in changed[CHAIN] for c in self.touching[pool]}
        )
        for cycle in targets:
            self._evaluate(market, cycle)
        return list(self.best.values())


def history(pool_count: int, blocks: int, per_block: int) -> tuple[dict[str, PoolInfo], list[BlockChanges]]:
    rng = random.Random(7)
    pools = {}
    for i in range(pool_count):
        t0, t1 = TOKENS[i % 30], TOKENS[30 + i % 30]
        address = f"0x{0xAA00 + i:040x}"
        pools[address] = PoolInfo(address, "dex", t0, t1, 30)
    addresses = list(pools)
    first = BlockChanges(1, 1_700_000_000, {a: (10**21, 2 * 10**21) for a in addresses})
    out = [first]
    for n in range(2, blocks + 1):
        changes = {}
        for a in rng.sample(addresses, per_block):
            changes[a] = (
                10**21 + rng.randrange(-(10**19), 10**19),
                2 * 10**21 + rng.randrange(-(10**19), 10**19),
            )
        out.append(BlockChanges(n, 1_700_000_000 + 12 * n, changes))
    return pools, out


def market(
    _chain: int, _block: int, state: Mapping[str, tuple[PoolInfo, int, int]]
) -> Mapping[str, tuple[PoolInfo, int, int]]:
    return state


def run(incremental: bool, pools: dict[str, PoolInfo], blocks: list[BlockChanges]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = replay(
        CyclePlugin(pools), CHAIN, pools, blocks, market, lambda c: c.pools, incremental=incremental
    )
    return time.perf_counter() - start, result


def bench_replay() -> None:
    pools, blocks = history(pool_count=300, blocks=3000, per_block=4)
    updates = sum(len(b.reserves) for b in blocks)
    fast_s, fast = run(True, pools, blocks)
    slow_s, slow = run(False, pools, blocks)
    assert fast.executed == slow.executed, "incremental replay must equal the naive one"
    print(
        f"backtest replay: {len(pools)} pools, {len(blocks)} blocks, {updates} pool updates, {len(fast.executed)} executions"
    )
    print(f"  incremental: {updates / fast_s:,.0f} pool updates/s ({fast_s:.3f} s)")
    print(f"  naive (every cycle per block): {updates / slow_s:,.0f} pool updates/s ({slow_s:.3f} s)")
    print(f"  ratio: {slow_s / fast_s:.1f}x")


INGEST_EVENTS = 4000
INGEST_CONCURRENCY = 64
INGEST_CONNECTIONS = 8
STAMP = Timestamp(seconds=1_700_000_000)


def ingest_events(count: int) -> list[store.Statement]:
    """Rows of `count` opportunities of 8 tenants (what the OPP consumer writes per event)."""
    token = common_pb2.Token(chain_id=CHAIN, address="0x" + "ee" * 20, symbol="WETH", decimals=18)
    out = []
    for i in range(count):
        opp_id = str(uuid.uuid4())
        opp = events_pb2.Opportunity(
            event_id=opp_id,
            tenant_id=f"tenant-{i % 8}",
            occurred_at=STAMP,
            opportunity_id=opp_id,
            strategy_id="s1",
            strategy_version=1,
            type=common_pb2.STRATEGY_TYPE_DEX_ARBITRAGE,
            chain_id=CHAIN,
            chain_ids=[CHAIN],
            swap_cycle=events_pb2.SwapCycleAction(
                hops=[events_pb2.RouteHop(chain_id=CHAIN, pool="0x" + "aa" * 20, dex="uniswap_v2")],
                amount_in=str(10**18),
                financing=events_pb2.FINANCING_INVENTORY,
            ),
            expected_profit=str(10**15 + i),
            expected_profit_net_of_gas=str(10**15),
            profit_token=token,
            detected_block=100 + i // 50,
        )
        out.extend(store.opportunity_rows(opp))
    return out


async def one_transaction_each(pool: Any, statement: store.Statement) -> None:
    async with platform_transaction(pool) as conn:
        await conn.execute(statement[0], *statement[1])


async def drive(write: Callable[[store.Statement], Awaitable[None]], rows: list[store.Statement]) -> float:
    """Events handled by INGEST_CONCURRENCY concurrent handlers, as the consumer runs them."""
    queue = list(reversed(rows))

    async def handler() -> None:
        while queue:
            await write(queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(handler() for _ in range(INGEST_CONCURRENCY)))
    return time.perf_counter() - start


@asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedPostgres(Path(tmp) / "pg", durable=False) as pg:
            yield pg.dsn


async def bench_ingest() -> None:
    async with postgres() as admin_dsn:
        dsns = await provision_service_database(
            admin_dsn, "analytics", secrets.token_hex(8), secrets.token_hex(8)
        )
        assert SERVICE.migrations is not None
        await apply_migrations(dsns.owner_dsn, "analytics", SERVICE.migrations)
        pool = await create_pool(dsns.app_dsn, min_size=INGEST_CONNECTIONS, max_size=INGEST_CONNECTIONS)
        try:
            writer = BatchWriter(pool)
            await drive(lambda row: writer.write([row]), ingest_events(200))  # warm-up
            batched_rows, single_rows = ingest_events(INGEST_EVENTS), ingest_events(INGEST_EVENTS)
            before = writer.transactions
            batched_s = await drive(lambda row: writer.write([row]), batched_rows)
            transactions = writer.transactions - before
            single_s = await drive(lambda row: one_transaction_each(pool, row), single_rows)
            async with platform_transaction(pool) as conn:
                stored = await conn.fetchval("SELECT count(*) FROM analytics.opportunities")
            assert stored == 200 + 2 * INGEST_EVENTS, stored
        finally:
            await pool.close()
    print(
        f"read-model ingest: {INGEST_EVENTS} opportunity events per run, {INGEST_CONCURRENCY} concurrent handlers, "
        f"{INGEST_CONNECTIONS} connections, embedded PostgreSQL (durable=False)"
    )
    print(
        f"  batched (BatchWriter): {INGEST_EVENTS / batched_s:,.0f} events/s ({batched_s:.3f} s, "
        f"{transactions} transactions, {INGEST_EVENTS / max(transactions, 1):.1f} events each)"
    )
    print(f"  one transaction per event: {INGEST_EVENTS / single_s:,.0f} events/s ({single_s:.3f} s)")
    print(f"  ratio: {single_s / batched_s:.1f}x")


def main() -> None:
    bench_replay()
    asyncio.run(bench_ingest())


if __name__ == "__main__":
    main()
