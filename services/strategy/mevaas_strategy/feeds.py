"""A followed chain's state (``ChainFeed``) and its ``newHeads`` subscription: heads arrive over
WebSocket with the header (base fee, timestamp) kept for the block loop in ``engine``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from mevaas.events.v1 import events_pb2
from mevaas_chain.client import ChainClient
from mevaas_chain.flash_lenders import LenderPlan
from mevaas_chain.lending.index import LendingIndex
from mevaas_chain.pool_index import Pool, PoolIndex, Reorg
from mevaas_chain.registry import ChainConfig
from mevaas_strategies.market import ChainMarket, LendingState

log = logging.getLogger("mevaas.strategy.engine")

# Headers from the subscription kept for the blocks the index has yet to apply.
_KEPT_HEADERS = 64


@dataclass
class ChainFeed:
    """One followed chain: its client, pool index, market state and head subscription."""

    config: ChainConfig
    client: ChainClient
    index: PoolIndex
    market: ChainMarket | None = None
    task: asyncio.Task[None] | None = None
    # Pools rolled back by a reorg, evaluated with the next block.
    pending_reorg: Reorg | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"blocks": 0, "opportunities": 0})
    heads_task: asyncio.Task[None] | None = None
    # Set while the newHeads subscription is live; then `head` is the last head it announced.
    subscribed: bool = False
    head: int = -1
    head_seen_at: datetime | None = None
    new_head: asyncio.Event = field(default_factory=asyncio.Event)
    headers: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    # The chain's Aave V3 market, when its configuration names one (liquidation strategies).
    lending: LendingIndex | None = None
    # Left behind the head while no running strategy on the chain reads it.
    lending_stale: bool = False
    # Held while the lending index loads or syncs (the block loop, or `lending_now`).
    lending_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The configured flash lenders (``ChainConfig.flash_lenders``), resolved at load; read every block.
    flash_plans: tuple[LenderPlan, ...] = ()


def lending_state(index: LendingIndex) -> LendingState:
    return LendingState(
        "aave_v3",
        index.market.pool,
        index.head_timestamp,
        index.reserves,
        index.positions,
        index.prices,
        index.flash_loan_premium,
    )


def market_pool_state(pool: Pool) -> events_pb2.PoolState:
    return events_pb2.PoolState(
        address=pool.address,
        dex=pool.dex,
        token0=pool.token0,
        token1=pool.token1,
        reserve0=str(pool.reserve0),
        reserve1=str(pool.reserve1),
        fee_bps=pool.fee_bps,
    )


async def subscribe_heads(feed: ChainFeed, ws_url: str) -> None:
    """Keep a newHeads subscription open, reconnecting when it drops (after 1 s, doubling up to
    30 s while the node refuses; meanwhile the follow loop polls)."""
    chain_id = feed.config.chain_id
    retry_s = 1.0
    while True:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(ws_url, heartbeat=10.0) as ws,
            ):
                await ws.send_str(
                    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
                )
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        break
                    on_heads_frame(feed, json.loads(frame.data))
                    retry_s = 1.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("chain %s: newHeads subscription failed (%r); polling meanwhile", chain_id, exc)
        feed.subscribed = False
        feed.new_head.set()  # the follow loop falls back to polling now
        await asyncio.sleep(retry_s)
        retry_s = min(30.0, retry_s * 2)


def on_heads_frame(feed: ChainFeed, frame: dict[str, Any]) -> None:
    if frame.get("id") == 1:
        feed.subscribed = "result" in frame
        if not feed.subscribed:
            raise ConnectionError(f"eth_subscribe refused: {frame.get('error')}")
        return
    header = (frame.get("params") or {}).get("result")
    if frame.get("method") != "eth_subscription" or not isinstance(header, dict):
        return
    feed.head_seen_at = datetime.now(UTC)
    feed.head = int(header["number"], 16)
    feed.headers[header["hash"]] = header
    while len(feed.headers) > _KEPT_HEADERS:
        feed.headers.popitem(last=False)
    feed.new_head.set()
