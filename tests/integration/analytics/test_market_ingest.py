"""Analytics records each pool's last reserves from the market feed (what a restarted replica's
price book starts from): the chain's, not whichever update of a reorged height its consumer
happened to write last. Real NATS JetStream and PostgreSQL; a chain id no other test uses."""

from __future__ import annotations

import contextlib
import random
import uuid
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.events.v1 import events_pb2
from mevaas_core.bus import PLATFORM_TENANT, Bus
from mevaas_core.db import platform_transaction
from tests.fixtures.execution import wait_for
from tests.fixtures.platform import StartService

pytestmark = pytest.mark.integration

POOLS = 48
T0 = 1_800_000_000  # block n's timestamp is T0 + n


def pool_address(index: int) -> str:
    return "0x" + f"{index + 1:040x}"


def update(chain_id: int, number: int, pools: dict[int, tuple[int, int]], *, reorg: bool = False) -> Any:
    block_hash = "0x" + uuid.uuid4().hex * 2
    return events_pb2.MarketUpdate(
        event_id=f"{chain_id}:{block_hash}",
        chain_id=chain_id,
        block_number=number,
        block_hash=block_hash,
        block_timestamp=Timestamp(seconds=T0 + number),
        reorg=reorg,
        reorg_depth=1 if reorg else 0,
        pools=[
            events_pb2.PoolState(
                address=pool_address(i),
                dex="uniswap_v2",
                token0="0x" + "0a" * 20,
                token1="0x" + "0b" * 20,
                reserve0=str(r0),
                reserve1=str(r1),
                fee_bps=30,
            )
            for i, (r0, r1) in pools.items()
        ],
    )


async def test_recorded_reserves_are_the_canonical_chains_after_reorgs(
    start_service: StartService, bus: Bus
) -> None:
    from mevaas_analytics.server import SERVICE, AnalyticsRuntime, AnalyticsSettings

    chain_id = random.randrange(10**6, 10**7)
    updates = [update(chain_id, 10, {i: (1, 10 + i) for i in range(POOLS)})]
    # Every pool: an orphaned block 11 (a simulation or a rebuilt block a reader saw), then the
    # canonical 11, which carries the pools the orphan changed, rewound (the strategy engine's
    # reorg update).
    for i in range(POOLS):
        updates.append(update(chain_id, 11, {i: (666, i)}))
        updates.append(update(chain_id, 11, {i: (2, 20 + i)}, reorg=True))
    # Pool 0 moves on at 12 and 13, then a two-block reorg back to 12 rewinds it to a lower height.
    updates.append(update(chain_id, 12, {0: (3, 30)}))
    updates.append(update(chain_id, 13, {0: (777, 0)}))
    updates.append(update(chain_id, 12, {0: (4, 40)}, reorg=True))
    # A late copy of an old block (not a reorg) never rolls pool 1 back.
    updates.append(update(chain_id, 10, {1: (888, 0)}))
    sentinel = POOLS  # last: once it is recorded, everything before it is
    updates.append(update(chain_id, 14, {sentinel: (5, 50)}))
    for message in updates:
        await bus.publish(
            f"chain.{chain_id}.block", message, msg_id=message.event_id, tenant_id=PLATFORM_TENANT
        )

    analytics = await start_service(
        SERVICE,
        AnalyticsRuntime,
        AnalyticsSettings,
        durable_prefix=f"analytics-ingest-{uuid.uuid4().hex[:6]}",
    )

    expected = {pool_address(i): (2, 20 + i, 11) for i in range(POOLS)}
    expected[pool_address(0)] = (4, 40, 12)
    expected[pool_address(sentinel)] = (5, 50, 14)
    # Every analytics replica of the session (each in stream order) writes this table, so a
    # replica still replaying may briefly write an older row: the chain's reserves must be what
    # the table settles on.
    last: dict[str, tuple[int, int, int]] = {}

    async def recorded() -> dict[str, tuple[int, int, int]] | None:
        async with platform_transaction(analytics.pool) as conn:
            rows = await conn.fetch(
                "SELECT address, reserve0, reserve1, block_number, observed_at FROM analytics.pool_reserves"
                " WHERE chain_id = $1",
                chain_id,
            )
        got = {r["address"]: (int(r["reserve0"]), int(r["reserve1"]), r["block_number"]) for r in rows}
        # Each row's time is its block's.
        assert all(r["observed_at"].timestamp() == T0 + r["block_number"] for r in rows)
        last.clear()
        last.update(got)
        return got if got == expected else None

    with contextlib.suppress(TimeoutError):
        await wait_for(recorded, timeout_s=60)
    assert last == expected
