"""The strategy engine: follow every configured chain block by block, keep the pool state, publish
market updates, evaluate every running strategy incrementally and publish its opportunities.

Per chain: new heads arrive over WebSocket (``eth_subscribe`` ``newHeads`` on the chain's
``ws_url``), which costs no polling and brings the header (base fee, timestamp) along; while
subscribed, a head unannounced for ``heads_fallback_s`` makes the engine ask the node itself (a
missed notification, a reverted chain). Without ``ws_url``, or while the subscription is down,
``eth_blockNumber`` is polled every ``poll_interval_s``. On a new head, ``PoolIndex.sync()``
applies the new blocks from their ``Sync``/``PairCreated`` logs, fetched by block hash, and rolls
back reorged blocks. Each applied block yields the pools it changed; the
engine publishes a ``MarketUpdate`` (``chain.<id>.block``) and hands exactly those pools to every
running strategy on that chain (a strategy that just started, and every strategy after a reload of
the pool set, evaluates everything once). Plugins are pure (see ``mevaas_strategies.plugins``);
cycle strategies share one screen and exact verification per block (``evaluation``).

Running strategies come from ``strategy.sessions`` (filled from ``exec.<tenant>.session`` by
whichever replica's consumer got the event); Postgres NOTIFY tells every replica to reload, with a
periodic reload as a fallback.

Several replicas: every replica follows the chains itself (reads are cheap and local state keeps
evaluation free of network hops) and publishes the same ``MarketUpdate``; JetStream keeps one copy
per block (``Nats-Msg-Id`` = chain:block hash). Evaluation is partitioned by tenant: replica ``i`` of
``n`` (``ENGINE_REPLICA_INDEX``/``ENGINE_REPLICAS``, the StatefulSet ordinal in Kubernetes) evaluates
the tenants whose SHA-256 of the id, modulo ``n``, is ``i``. During a rescale two replicas may
briefly evaluate the same tenant: their opportunities carry the same deterministic id and are
deduplicated by JetStream, so nothing is published twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Protocol

import asyncpg
from eth_utils.address import is_address, to_checksum_address
from prometheus_client import Histogram

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas.strategy.v1 import strategy_pb2
from mevaas_chain.client import ChainClient
from mevaas_chain.flash_lenders import read_lenders, resolve_lenders
from mevaas_chain.lending.index import LendingIndex, LendingMarket
from mevaas_chain.pool_index import BlockUpdate, PoolIndex, Reorg
from mevaas_chain.registry import ChainRegistry
from mevaas_core.bus import PLATFORM_TENANT, Bus
from mevaas_core.db import platform_transaction
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.model import TYPE_NAMES, StrategySpec
from mevaas_strategies.opportunity import timestamp
from mevaas_strategies.plugins import plugin_for
from mevaas_strategy import store
from mevaas_strategy.evaluation import MarketEvaluation, RunningStrategy, on_one_chain
from mevaas_strategy.feeds import ChainFeed, lending_state, market_pool_state, subscribe_heads
from mevaas_strategy.reloading import reload_when_notified

log = logging.getLogger("mevaas.strategy.engine")

EVALUATION_SECONDS = Histogram(
    "mevaas_strategy_block_evaluation_seconds",
    "Time to evaluate every running strategy on one block",
    ["chain_id"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
BLOCK_TO_OPPORTUNITY_SECONDS = Histogram(
    "mevaas_strategy_block_to_opportunity_seconds",
    "From first seeing a block to its opportunities being published",
    ["chain_id"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
NOT_EVALUATED_TENANT_STATUSES = [common_pb2.TENANT_STATUS_SUSPENDED, common_pb2.TENANT_STATUS_DELETED]


def owns_tenant(tenant_id: str, replica_index: int, replicas: int) -> bool:
    digest = hashlib.sha256(tenant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % replicas == replica_index


class BlockMonitor(Protocol):
    """Runs after each block's strategies (leverage protection)."""

    def reads_lending(self, chain_id: int) -> bool:
        """Whether it needs the chain's lending index followed (see ``Engine._reads_lending``)."""
        ...

    async def on_block(self, market: ChainMarket, seen_at: datetime) -> None: ...


class Engine:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        chains: ChainRegistry,
        *,
        replica_index: int = 0,
        replicas: int = 1,
        priority_fee_wei: int = 1_000_000_000,
        poll_interval_s: float = 0.02,
        heads_fallback_s: float = 1.0,
        reload_interval_s: float = 5.0,
    ) -> None:
        if not 0 <= replica_index < replicas:
            raise ValueError("replica_index must be in [0, replicas)")
        self.bus = bus
        self.pool = pool
        self.chains = chains
        self.replica_index = replica_index
        self.replicas = replicas
        self.priority_fee_wei = priority_fee_wei
        self.poll_interval_s = poll_interval_s
        self.heads_fallback_s = heads_fallback_s
        self.reload_interval_s = reload_interval_s
        self.view = MarketView(chains={})
        self.running: dict[str, RunningStrategy] = {}
        # One instance per thread that evaluates: the worker (strategies on one chain) and the loop.
        self._evaluation = MarketEvaluation()
        self._spanning = MarketEvaluation()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-evaluation")
        self._feeds: dict[int, ChainFeed] = {}
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: Any = None
        self.monitors: list[BlockMonitor] = []

    # lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        for config in self.chains:
            client = ChainClient.for_chain(config)
            index = PoolIndex(client, config.dexes, max_blocks_per_sync=1)
            feed = ChainFeed(config, client, index)
            lending_market = LendingMarket.from_contracts(config.contracts)
            if lending_market is not None:
                feed.lending = LendingIndex(client, lending_market)
            self._feeds[config.chain_id] = feed
            with contextlib.suppress(Exception):
                # A chain that is down at start is loaded by its follow loop once it answers.
                await self._load(feed)
            if config.ws_url:
                feed.heads_task = asyncio.create_task(
                    subscribe_heads(feed, config.ws_url), name=f"engine-heads-{config.chain_id}"
                )
            feed.task = asyncio.create_task(self._follow(feed), name=f"engine-chain-{config.chain_id}")
        self._listener = await self.pool.acquire()
        await self._listener.add_listener(store.SESSIONS_CHANNEL, self._on_notify)
        await self.reload_strategies()
        self._tasks.append(
            asyncio.create_task(
                reload_when_notified(
                    self._reload, self.reload_interval_s, self.reload_strategies, log, "running strategies"
                ),
                name="engine-reload",
            )
        )

    async def stop(self) -> None:
        tasks = [
            *self._tasks,
            *(t for f in self._feeds.values() for t in (f.task, f.heads_task) if t is not None),
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(store.SESSIONS_CHANNEL, self._on_notify)
            await self.pool.release(self._listener)
        for feed in self._feeds.values():
            await feed.client.close()
        self._worker.shutdown(wait=False, cancel_futures=True)

    # prices for the API -----------------------------------------------------------------------------

    def usd_price(self, chain_id: int, token: str) -> Fraction | None:
        market = self.view.chain(chain_id)
        if market is None or not is_address(token):
            return None
        return market.usd_price(to_checksum_address(token))

    # strategies -----------------------------------------------------------------------------------

    def _on_notify(self, *_: object) -> None:
        self._reload.set()

    async def reload_strategies(self) -> None:
        """Bring `running` to the sessions table: new versions get a fresh plugin instance."""
        async with platform_transaction(self.pool, readonly=True) as conn:
            rows = await store.running_strategies(
                conn, common_pb2.EXECUTION_STATE_RUNNING, NOT_EVALUATED_TENANT_STATUSES
            )
        running: dict[str, RunningStrategy] = {}
        for row in rows:
            if not owns_tenant(row["tenant_id"], self.replica_index, self.replicas):
                continue
            existing = self.running.get(row["strategy_id"])
            if existing is not None and existing.spec.version == row["version"]:
                running[row["strategy_id"]] = existing
                continue
            config = strategy_pb2.StrategyConfig()
            config.ParseFromString(bytes(row["config"]))
            spec = StrategySpec.from_config(
                config, strategy_id=row["strategy_id"], tenant_id=row["tenant_id"], version=row["version"]
            )
            cls = plugin_for(TYPE_NAMES.get(spec.type, ""))
            if cls is None:
                log.warning("no plugin for strategy %s of type %s", spec.strategy_id, spec.type)
                continue
            running[row["strategy_id"]] = RunningStrategy(spec, cls(spec))
        self.running = running

    def _reads_lending(self, chain_id: int) -> bool:
        return any(
            r.plugin.reads_lending and chain_id in r.spec.chain_ids for r in self.running.values()
        ) or any(m.reads_lending(chain_id) for m in self.monitors)

    async def lending_now(self, chain_id: int) -> ChainMarket | None:
        """The chain's market with its lending state (leverage protection's registration checks):
        loaded now when the block loop left it behind because nobody on the chain reads it."""
        feed = self._feeds.get(chain_id)
        if feed is None or feed.market is None:
            return None
        if feed.lending is not None and feed.market.lending is None:
            async with feed.lending_lock:
                if feed.market.lending is None:
                    await feed.lending.load()
                    feed.lending_stale = False
                    feed.market.lending = lending_state(feed.lending)
        return feed.market

    # chains ---------------------------------------------------------------------------------------

    async def _load(self, feed: ChainFeed) -> None:
        await feed.index.load()
        number, block_hash = feed.index.head
        header = await feed.client.get_block(number)
        base_fee = int(header.get("baseFeePerGas", "0x0"), 16) if header else 0
        config = feed.config
        feed.market = ChainMarket(
            chain_id=config.chain_id,
            block_number=number,
            block_hash=block_hash,
            base_fee=base_fee,
            priority_fee=self.priority_fee_wei,
            pools=feed.index.pools,
            wrapped_native=config.wrapped_native,
            symbols={t.address: t.symbol for t in config.tokens},
            decimals={t.address: t.decimals for t in config.tokens},
            block_time_s=config.block_time_s or 12.0,
            epoch=(feed.market.epoch + 1) if feed.market else 0,
        )
        self.view.chains[config.chain_id] = feed.market
        self.view.memo.clear()
        if feed.lending is not None:
            await feed.lending.load()
            feed.market.lending = lending_state(feed.lending)
        if config.flash_lenders:
            feed.flash_plans = await resolve_lenders(
                feed.client,
                [(f.kind, f.address) for f in config.flash_lenders],
                [t.address for t in config.tokens],
            )
            feed.market.flash_lenders = await read_lenders(feed.client, feed.flash_plans, number)

    async def _follow(self, feed: ChainFeed) -> None:
        last = -1
        ask_node = True
        while True:
            feed.new_head.clear()
            try:
                if feed.market is None:
                    await self._load(feed)
                if ask_node or not feed.subscribed or feed.head_seen_at is None:
                    head, seen_at = await feed.client.block_number(), datetime.now(UTC)
                else:
                    # When this engine first knew of the block: the notification's arrival.
                    head, seen_at = feed.head, feed.head_seen_at
                if head != last:
                    last = head
                    # One block per sync, so the index state is exactly each block's when evaluated.
                    while events := await feed.index.sync():
                        for event in events:
                            if isinstance(event, Reorg):
                                feed.pending_reorg = event
                                if event.full_reload:
                                    await self._load(feed)
                            else:
                                await self._on_block(feed, event, seen_at)
                        if feed.index.head[0] >= head:
                            break
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chain %s: following blocks failed; retrying", feed.config.chain_id)
                await asyncio.sleep(1.0)
            # Subscribed: wait for the next head, asking the node itself when none came for a while
            # (a head the subscription missed); otherwise poll.
            try:
                await asyncio.wait_for(
                    feed.new_head.wait(), self.heads_fallback_s if feed.subscribed else self.poll_interval_s
                )
                ask_node = False
            except TimeoutError:
                ask_node = True

    async def _on_block(self, feed: ChainFeed, update: BlockUpdate, seen_at: datetime) -> None:
        market = feed.market
        assert market is not None
        started = time.perf_counter()
        header = feed.headers.pop(update.hash, None) or await feed.client.get_block(update.number)
        base_fee = int(header.get("baseFeePerGas", "0x0"), 16) if header else market.base_fee
        block_time = int(header["timestamp"], 16) if header else int(seen_at.timestamp())
        market.block_number, market.block_hash, market.base_fee = update.number, update.hash, base_fee
        if feed.lending is not None and self._reads_lending(market.chain_id):
            # Follows the same block, not the chain's head (which may be further on already): an
            # opportunity's block must be the one its lending state is from. A lending read that
            # fails keeps the last state for this block.
            try:
                async with feed.lending_lock:
                    lending = feed.lending
                    if feed.lending_stale or (lending.loaded and lending.head[0] > update.number):
                        await lending.load(update.number)
                    else:
                        await lending.sync(until=update.number)
                    feed.lending_stale = False
                    market.lending = lending_state(feed.lending)
            except Exception:
                log.warning("chain %s: lending index sync failed", market.chain_id, exc_info=True)
        elif feed.lending is not None:
            # Nobody reads it: its round trips stay off this block; a later reader loads afresh.
            feed.lending_stale, market.lending = True, None
        if feed.flash_plans:
            # The same block's balances and fees; a failed read leaves no lender for this block.
            try:
                market.flash_lenders = await read_lenders(feed.client, feed.flash_plans, update.number)
            except Exception:
                market.flash_lenders = ()
                log.warning("chain %s: flash lender read failed", market.chain_id, exc_info=True)
        reorg, feed.pending_reorg = feed.pending_reorg, None
        full = reorg is not None and reorg.full_reload
        if update.new_pools:
            market.epoch += 1
            self.view.memo.clear()
        changed = set(update.changed) | (set(reorg.rewound) if reorg else set())

        pools = market.pools
        message = events_pb2.MarketUpdate(
            event_id=f"{market.chain_id}:{update.hash}",
            occurred_at=timestamp(datetime.fromtimestamp(block_time, UTC)),
            chain_id=market.chain_id,
            block_number=update.number,
            block_hash=update.hash,
            parent_hash=update.parent_hash,
            base_fee_per_gas=str(base_fee),
            block_timestamp=timestamp(datetime.fromtimestamp(block_time, UTC)),
            pools=[
                market_pool_state(pools[a])
                for a in (pools if full or feed.stats["blocks"] == 0 else sorted(changed))
                if a in pools
            ],
            reorg=reorg is not None,
            reorg_depth=len(reorg.orphaned) if reorg else 0,
        )
        publish_market = asyncio.create_task(
            self.bus.publish(
                f"chain.{market.chain_id}.block", message, msg_id=message.event_id, tenant_id=PLATFORM_TENANT
            )
        )
        feed.stats["blocks"] += 1
        evaluated = time.perf_counter()
        opportunities = await self.evaluate(market.chain_id, None if full else frozenset(changed), seen_at)
        EVALUATION_SECONDS.labels(str(market.chain_id)).observe(time.perf_counter() - evaluated)
        results = await asyncio.gather(
            publish_market,
            *(
                self.bus.publish(
                    f"opp.{o.tenant_id}.{o.strategy_id}", o, msg_id=o.opportunity_id, tenant_id=o.tenant_id
                )
                for o in opportunities
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("chain %s block %s: publish failed: %r", market.chain_id, update.number, result)
        feed.stats["opportunities"] += len(opportunities)
        for monitor in self.monitors:
            try:
                await monitor.on_block(market, seen_at)
            except Exception:
                log.exception("chain %s block %s: monitor failed", market.chain_id, update.number)
        BLOCK_TO_OPPORTUNITY_SECONDS.labels(str(market.chain_id)).observe(
            (datetime.now(UTC) - seen_at).total_seconds()
        )
        log.debug(
            "chain %s block %s: %d changed pools, %d opportunities in %.2f ms",
            market.chain_id,
            update.number,
            len(changed),
            len(opportunities),
            (time.perf_counter() - started) * 1000,
        )

    async def evaluate(
        self, chain_id: int, changed: frozenset[str] | None, seen_at: datetime
    ) -> list[events_pb2.Opportunity]:
        """Every running strategy on `chain_id` against the current view. Strategies reading this chain
        only are evaluated on the worker thread, so gRPC and NATS keep being served during a heavy
        block (meanwhile the loop changes only other chains' state: this chain's follow loop is
        waiting here); the few spanning chains then on the loop, which owns the other chains' state."""
        running = dict(self.running)
        loop = asyncio.get_running_loop()
        local = await loop.run_in_executor(
            self._worker,
            self._evaluation.evaluate,
            self._block_view(),
            running,
            chain_id,
            changed,
            seen_at,
            on_one_chain(chain_id),
        )
        one_chain = on_one_chain(chain_id)
        spanning = self._spanning.evaluate(
            self._block_view(), running, chain_id, changed, seen_at, lambda r: not one_chain(r)
        )
        return local + spanning

    def _block_view(self) -> MarketView:
        """The view with a per-block cache of its own, so evaluations on two threads never share one."""
        return MarketView(chains=self.view.chains, memo=self.view.memo)
