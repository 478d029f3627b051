"""Analytics service wiring: the read-model consumers (batched writes), market valuation state,
the AnalyticsService and PortfolioService servicers and the outbox relay (rebalance commands)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.events.v1 import events_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_analytics import store
from mevaas_analytics.api import AnalyticsServicer
from mevaas_analytics.backtests import Backtests
from mevaas_analytics.billing import store as billing_store
from mevaas_analytics.domain.compliance import RetentionSettings, SanctionsList
from mevaas_analytics.domain.threats import parse_threat, value_threat
from mevaas_analytics.domain.valuation import FINAL_STATUSES, value_execution
from mevaas_analytics.events import BatchWriter, subscribe_all
from mevaas_analytics.history import MarketHistory
from mevaas_analytics.past_prices import PastPrices, PricesAt, explain
from mevaas_analytics.portfolio import PortfolioServicer, TreasuryHoldings
from mevaas_analytics.store import threats as threat_store
from mevaas_chain.pricing import (
    DEFAULT_SOURCES,
    DEFAULT_STABLECOINS,
    PoolReserves,
    PricingContext,
    Unpriced,
    build_price_source,
    parse_price_table,
)
from mevaas_chain.registry import ChainRegistry, load_registry
from mevaas_core.bus.follow import follow
from mevaas_core.config import ServiceSettings
from mevaas_core.db import platform_transaction
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec


class AnalyticsSettings(ServiceSettings):
    service_name: str = "analytics"
    # Price sources in the order they are asked (names registered in mevaas_chain.pricing), the
    # configured price table "chain_id:token=usd,..." of the "fixed" source, the USD stablecoins
    # pool prices are anchored to (symbols of the chain registry's tokens, or chain_id:address)
    # and the longest pool path to one. See docs/pricing.md.
    price_sources: str = ",".join(DEFAULT_SOURCES)
    price_table: str = ""
    stablecoins: str = ",".join(DEFAULT_STABLECOINS)
    price_max_hops: int = 3
    # How long recording a final execution waits for the market feed to reach its block.
    valuation_market_wait_seconds: float = 30.0
    # Sanctioned addresses: a file (one address[,list] per line) and/or inline comma-separated.
    sanctions_file: str = ""
    sanctioned_addresses: str = ""
    audit_retention_days: int = 2555
    trade_retention_days: int = 1825
    personal_data_retention_days: int = 30
    legal_hold: bool = False
    tax_percent: Decimal = Decimal(0)
    consumer_concurrency: int = 64
    # Directory of the recorded market history (backtests); empty = not recorded.
    market_history_dir: str = ""
    # Blocks per history file.
    market_history_blocks: int = 1000
    # History files older than this are deleted (0 = kept forever).
    market_history_retention_hours: float = 168.0
    # Each replica follows the whole market feed (its price book and recording are its own) from
    # this long before it started, so the blocks between the stored reserves and its subscription
    # are not missed.
    market_replay_seconds: float = 120.0
    durable_prefix: str = "analytics"
    # Chain registry file (JSON/YAML) for InspectBlock's RPC nodes and backtests' tokens; empty = MEVAAS_CHAINS /
    # MEVAAS_CHAINS_FILE / the devnet's.
    chains_file: str = ""


class AnalyticsRuntime(ServiceRuntime[AnalyticsSettings]):
    name = "analytics"
    erasure = store.ERASURE

    def chains(self) -> ChainRegistry:
        """Read per inspection (a small file): a restarted devnet's new RPC URLs apply at once."""
        return load_registry(self.settings.chains_file or None)

    async def setup(self) -> None:
        s = self.settings
        pricing = PricingContext(
            self.chains(),
            table=parse_price_table(s.price_table),
            stablecoins=tuple(s.stablecoins.split(",")),
            max_hops=s.price_max_hops,
        )
        source_names = [n.strip() for n in s.price_sources.split(",") if n.strip()]
        prices = build_price_source(source_names, pricing)
        async with platform_transaction(self.pool) as conn:
            # The last reserves recorded before a restart, so prices are known before the next block.
            for r in await store.pool_reserves(conn):
                pricing.book.apply(
                    r["chain_id"],
                    r["block_number"],
                    [
                        PoolReserves(
                            r["address"], r["token0"], r["token1"], int(r["reserve0"]), int(r["reserve1"])
                        )
                    ],
                    observed_at=r["observed_at"],
                )

        history = MarketHistory(
            Path(s.market_history_dir) if s.market_history_dir else None,
            s.market_history_blocks,
            retention=timedelta(hours=s.market_history_retention_hours)
            if s.market_history_retention_hours
            else None,
        )

        market_moved = asyncio.Condition()
        priced_chains = {chain.chain_id for chain in pricing.chains}

        async def on_market(update: events_pb2.MarketUpdate) -> None:
            stamp = update.block_timestamp if update.HasField("block_timestamp") else update.occurred_at
            pricing.book.apply_update(update, stamp.ToDatetime(tzinfo=UTC))
            async with market_moved:
                market_moved.notify_all()
            history.record(update)

        async def market_at(chain_id: int, block: int) -> None:
            # Events and market updates are separate feeds: when the market feed lags (a replay
            # after a restart), wait for it to reach the event's block before pricing at it
            # (only on a configured chain: another chain's market never arrives).
            if chain_id not in priced_chains:
                return

            async def caught_up() -> None:
                async with market_moved:
                    await market_moved.wait_for(lambda: pricing.book.latest_block(chain_id) >= block)

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(caught_up(), s.valuation_market_wait_seconds)

        past = PastPrices(pricing, source_names, prices, self.chains)

        async def valuations(result: events_pb2.ExecutionResult) -> list[store.Statement]:
            at = PricesAt(prices)
            if result.status in FINAL_STATUSES:
                await market_at(result.chain_id, result.block_number)
                at = await past.at(result.chain_id, result.block_number)
            values = [
                dataclasses.replace(v, valuation=explain(v.valuation, at.unavailable))
                if isinstance(v.valuation, Unpriced)
                else v
                for v in value_execution(result, at.source)
            ]
            return billing_store.valuation_rows(result, values, datetime.now(UTC))

        tokens = pricing.token_infos()

        async def threat_valuations(event: events_pb2.SandwichThreat) -> list[store.Statement]:
            threat = parse_threat(event)
            await market_at(threat.chain_id, threat.block_number)
            at = await past.at(threat.chain_id, threat.block_number)
            values = [
                dataclasses.replace(v, unpriced_reason=f"{v.unpriced_reason}; {at.unavailable}")
                if v.priced is None and at.unavailable
                else v
                for v in value_threat(threat, at.source, tokens)
            ]
            return threat_store.valuation_rows(threat, values, datetime.now(UTC))

        async def flush_history() -> None:
            history.flush()

        self.writer = BatchWriter(self.pool)
        subscriptions = await subscribe_all(
            self.bus,
            self.writer,
            durable_prefix=s.durable_prefix,
            concurrency=s.consumer_concurrency,
            extra_rows={"results": valuations, "threats": threat_valuations},
        )
        market = await follow(
            self.bus,
            "CHAIN",
            "chain.*.block",
            events_pb2.MarketUpdate,
            on_market,
            since=datetime.now(UTC) - timedelta(seconds=s.market_replay_seconds),
        )
        self.on_stop(market.stop)
        self.on_stop(flush_history)
        for subscription in subscriptions:
            self.on_stop(subscription.stop)
        self.add_servicer(
            AnalyticsServicer(
                self.pool,
                prices,
                SanctionsList.load(s.sanctions_file, s.sanctioned_addresses),
                RetentionSettings(
                    s.audit_retention_days,
                    s.trade_retention_days,
                    s.personal_data_retention_days,
                    s.legal_hold,
                ),
                tax_percent=s.tax_percent,
                chains=self.chains,
            ),
            analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server,
            analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"],
        )
        self.add_servicer(
            PortfolioServicer(self.pool, prices, TreasuryHoldings(self.bus)),
            portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server,
            portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"],
        )
        for service in await Backtests(self.pool, self.bus, history, self.chains).serve():
            self.on_stop(service.stop)
        relay = OutboxRelay(self.pool, store.SCHEMA, self.bus)
        await relay.start()
        self.on_stop(relay.stop)


SERVICE = ServiceSpec(
    name="analytics",
    module="mevaas_analytics",
    schema=store.SCHEMA,
    migrations=Path(__file__).parent / "migrations",
    order=60,
)


def run() -> None:
    main(AnalyticsRuntime, AnalyticsSettings)
