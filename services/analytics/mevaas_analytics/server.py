"""Analytics service wiring: the read-model consumers (batched writes), market valuation state,
the AnalyticsService and PortfolioService servicers and the outbox relay (rebalance commands)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.events.v1 import events_pb2
from mevaas.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from mevaas_analytics import store
from mevaas_analytics.api import AnalyticsServicer
from mevaas_analytics.backtests import Backtests, MarketHistory
from mevaas_analytics.domain.compliance import RetentionSettings, SanctionsList
from mevaas_analytics.domain.valuation import OraclePrices, PoolPrices, PoolReserves, Valuer
from mevaas_analytics.events import BatchWriter, subscribe_all
from mevaas_analytics.portfolio import PortfolioServicer
from mevaas_chain.registry import ChainRegistry, load_registry
from mevaas_core.config import ServiceSettings
from mevaas_core.db import platform_transaction
from mevaas_core.outbox import OutboxRelay
from mevaas_core.runtime import ServiceRuntime, main
from mevaas_core.service import ServiceSpec


class AnalyticsSettings(ServiceSettings):
    service_name: str = "analytics"
    # Oracle price table "chain_id:token=price,..." in the plan currency (see domain.valuation).
    price_table: str = ""
    # Anchor prices for devnet pool valuation ("31337:<usdc>=1") and token decimals
    # ("31337:<token>=18,...") of the tokens priced through pools.
    anchor_prices: str = ""
    token_decimals: str = ""
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
    durable_prefix: str = "analytics"
    # Chain registry file (JSON/YAML) for InspectBlock's RPC nodes and backtests' tokens; empty = MEVAAS_CHAINS /
    # MEVAAS_CHAINS_FILE / the devnet's.
    chains_file: str = ""


def parse_decimals(text: str) -> dict[str, int]:
    table = OraclePrices.parse(text)
    return {key: int(value) for key, value in table.prices.items()}


class AnalyticsRuntime(ServiceRuntime[AnalyticsSettings]):
    name = "analytics"

    def chains(self) -> ChainRegistry:
        """Read per inspection (a small file): a restarted devnet's new RPC URLs apply at once."""
        return load_registry(self.settings.chains_file or None)

    async def setup(self) -> None:
        s = self.settings
        pools = PoolPrices(OraclePrices.parse(s.anchor_prices), parse_decimals(s.token_decimals))
        async with platform_transaction(self.pool) as conn:
            pools.update(
                PoolReserves(
                    r["chain_id"],
                    r["address"],
                    r["token0"],
                    r["token1"],
                    int(r["reserve0"]),
                    int(r["reserve1"]),
                )
                for r in await store.pool_reserves(conn)
            )
        valuer = Valuer(OraclePrices.parse(s.price_table), pools)

        history = MarketHistory(
            Path(s.market_history_dir) if s.market_history_dir else None, s.market_history_blocks
        )

        async def on_market(update: events_pb2.MarketUpdate) -> None:
            pools.update(
                PoolReserves(
                    update.chain_id, p.address, p.token0, p.token1, int(p.reserve0 or 0), int(p.reserve1 or 0)
                )
                for p in update.pools
            )
            history.record(update)

        async def flush_history() -> None:
            history.flush()

        self.writer = BatchWriter(self.pool)
        subscriptions = await subscribe_all(
            self.bus,
            self.writer,
            durable_prefix=s.durable_prefix,
            concurrency=s.consumer_concurrency,
            on_market=on_market,
        )
        self.on_stop(flush_history)
        for subscription in subscriptions:
            self.on_stop(subscription.stop)
        self.add_servicer(
            AnalyticsServicer(
                self.pool,
                valuer,
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
            PortfolioServicer(self.pool),
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
