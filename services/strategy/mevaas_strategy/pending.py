"""The pending-transaction feed and sandwich-threat alerts, next to the engine.

For every configured chain a `PendingSource` (`mevaas_chain.mempool`: the node's txpool, or a
``newPendingTransactions`` subscription when ``PENDING_SUBSCRIBE`` is set and the chain has a
WebSocket URL) yields the public pool's new transactions. Each is published on
``chain.<id>.pending`` (Nats-Msg-Id ``<chain>:<hash>``, so replicas publish it once). Each decoded
router swap sent from a wallet that one of the tenants' sessions signs with is assessed on the
engine's current reserves (`mevaas_strategies.threats`); a swap a sandwich could profit from
(more than the sandwich's own gas, valued in the profit token at the pool's price) becomes a
`SandwichThreat` on ``protect.<tenant>.threat`` with the attacker's exact take, the victim's
loss and the slippage bound that would have been safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import partial

import asyncpg

from mevaas.events.v1 import events_pb2
from mevaas_chain.client import ChainClient
from mevaas_chain.mempool import PendingSource, PendingSubscription, PendingTx, TxpoolPoller
from mevaas_chain.registry import ChainConfig, ChainRegistry
from mevaas_chain.swaps import RouterSwap
from mevaas_core.bus import PLATFORM_TENANT, Bus
from mevaas_core.db import platform_transaction
from mevaas_core.message_rules import BIGINT_MAX
from mevaas_strategies.market import ChainMarket, MarketView
from mevaas_strategies.opportunity import timestamp
from mevaas_strategies.threats import PairBook, Threat, assess
from mevaas_strategy import store

log = logging.getLogger("mevaas.strategy.pending")

# Gas of a sandwich's two router swaps, what an attacker pays before it gains anything.
SANDWICH_GAS = 2 * 120_000


def swap_message(swap: RouterSwap) -> events_pb2.PendingSwap:
    return events_pb2.PendingSwap(
        router=swap.router,
        function=swap.function,
        path=list(swap.path),
        exact_in=swap.exact_in,
        amount=str(swap.amount),
        bound=str(swap.bound),
        recipient=swap.recipient,
        # A router deadline of type(uint256).max means never; the bus refuses a uint64 past BIGINT.
        deadline=min(swap.deadline, BIGINT_MAX),
        eth_in=swap.eth_in,
    )


def pending_message(tx: PendingTx, seen_at: datetime) -> events_pb2.PendingTransaction:
    message = events_pb2.PendingTransaction(
        event_id=f"{tx.chain_id}:{tx.tx_hash}",
        occurred_at=timestamp(seen_at),
        chain_id=tx.chain_id,
        tx_hash=tx.tx_hash,
        sender=tx.sender,
        to=tx.to,
        value=str(tx.value),
        input="0x" + tx.data.hex(),
        gas_limit=tx.gas,
        max_fee_per_gas=str(tx.max_fee_per_gas),
        max_priority_fee_per_gas=str(tx.max_priority_fee_per_gas),
        nonce=tx.nonce,
    )
    if tx.swap is not None:
        message.swap.CopyFrom(swap_message(tx.swap))
    return message


def threat_message(
    tenant_id: str, tx: PendingTx, swap: RouterSwap, threat: Threat, block: int, seen_at: datetime
) -> events_pb2.SandwichThreat:
    return events_pb2.SandwichThreat(
        event_id=f"{tx.chain_id}:{tx.tx_hash}:threat",
        tenant_id=tenant_id,
        occurred_at=timestamp(seen_at),
        chain_id=tx.chain_id,
        tx_hash=tx.tx_hash,
        sender=tx.sender,
        swap=swap_message(swap),
        block_number=block,
        pool=threat.pool.address,
        token=threat.token,
        front_run_amount=str(threat.front_run_amount),
        attacker_profit=str(threat.attacker_profit),
        expected_amount=str(threat.expected_amount),
        attacked_amount=str(threat.attacked_amount),
        exposure=str(threat.exposure),
        safe_bound=str(threat.safe_bound),
        safe_slippage_bps=threat.safe_slippage_bps,
    )


def gas_in_token(market: ChainMarket, token: str) -> int:
    """A sandwich's gas cost in ``token`` base units at the deepest wrapped-native pool's price (0
    when the token has no such pool: every profitable sandwich is then reported)."""
    wei = SANDWICH_GAS * market.gas_price
    native = market.wrapped_native
    if native is None or token.lower() == native.lower():
        return wei if native is not None else 0
    pool = market.deepest_pool(token, native)
    if pool is None:
        return 0
    reserve_token, reserve_native = pool.reserves_for(token)
    return wei * reserve_token // reserve_native if reserve_native else 0


class PendingWatcher:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        chains: ChainRegistry,
        view: MarketView,
        *,
        poll_interval_s: float = 0.2,
        subscribe: bool = False,
        wallets_reload_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.chains = chains
        self.view = view
        self.poll_interval_s = poll_interval_s
        self.subscribe = subscribe
        self.wallets_reload_s = wallets_reload_s
        self.wallets: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[ChainClient] = []

    def source(self, config: ChainConfig) -> PendingSource:
        client = ChainClient.for_chain(config)
        self._clients.append(client)
        if self.subscribe and config.ws_url:
            return PendingSubscription(client, config.chain_id, config.ws_url)
        return TxpoolPoller(client, config.chain_id, interval_s=self.poll_interval_s)

    async def start(self) -> None:
        await self.reload_wallets()
        self._tasks.append(asyncio.create_task(self._reload_loop(), name="pending-wallets"))
        for config in self.chains:
            self._tasks.append(
                asyncio.create_task(
                    self._watch(config, self.source(config)), name=f"pending-{config.chain_id}"
                )
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients:
            await client.close()

    async def reload_wallets(self) -> None:
        async with platform_transaction(self.pool, readonly=True) as conn:
            self.wallets = await store.wallet_tenants(conn)

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.wallets_reload_s)
            try:
                await self.reload_wallets()
            except Exception:
                log.warning("reloading session wallets failed", exc_info=True)

    async def _watch(self, config: ChainConfig, source: PendingSource) -> None:
        routers = {d.router.lower(): d.name for d in config.dexes if d.router}
        async for batch in source.batches():
            seen_at = datetime.now(UTC)
            try:
                await self.on_batch(batch, routers, seen_at)
            except Exception:
                log.exception("chain %s: pending batch failed", config.chain_id)

    async def on_batch(self, batch: list[PendingTx], routers: dict[str, str], seen_at: datetime) -> None:
        publishes = [
            self.bus.publish(
                f"chain.{tx.chain_id}.pending",
                pending_message(tx, seen_at),
                msg_id=f"{tx.chain_id}:{tx.tx_hash}",
                tenant_id=PLATFORM_TENANT,
            )
            for tx in batch
        ]
        market = self.view.chain(batch[0].chain_id) if batch else None
        book = PairBook(market.pools.values()) if market is not None else None
        for tx in batch:
            tenant_id = self.wallets.get(tx.sender.lower())
            if tx.swap is None or tenant_id is None or market is None or book is None:
                continue
            threat = assess(tx.swap, book, routers, partial(gas_in_token, market))
            if threat is None:
                continue
            message = threat_message(tenant_id, tx, tx.swap, threat, market.block_number, seen_at)
            publishes.append(
                self.bus.publish(
                    f"protect.{tenant_id}.threat", message, msg_id=message.event_id, tenant_id=tenant_id
                )
            )
        for result in await asyncio.gather(*publishes, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("pending feed: publish failed: %r", result)
