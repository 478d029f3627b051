"""Sandwich threats in the execution report (issue 14): strategy's protect.<tenant>.threat events,
recorded once per (tenant, chain, tx hash) with both amounts valued at the threat's block by the
pool-mid price source, shown with how they were priced; unpriced amounts flagged and left out of
the totals; a malformed event refused without holding up or losing the others. Real NATS
JetStream and PostgreSQL; an analytics replica of its own, on a chain id no other test uses."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain import abi
from mevaas_chain.pricing import PricingContext, Unpriced, build_price_source, to_decimal, valuate
from mevaas_chain.registry import ChainConfig, ChainRegistry, TokenConfig, load_registry
from mevaas_core.auth import Principal, Role, SigningKey, TokenIssuer
from mevaas_core.bus import PLATFORM_TENANT, Bus
from mevaas_core.bus.streams import HEADER_CONTENT_TYPE, HEADER_MSG_ID, HEADER_TENANT, content_type_for
from mevaas_core.db import platform_transaction
from mevaas_core.runtime import ServiceRuntime
from mevaas_local.devnet import Devnet
from tests.fixtures.analytics import stamp
from tests.fixtures.execution import wait_for
from tests.fixtures.platform import StartService

pytestmark = pytest.mark.integration

E18 = 10**18
USDC = "0x" + "0c" * 20
WETH = "0x" + "0e" * 20
# Known decimals, no pool: no price.
TKN = "0x" + "0d" * 20
# Not in the chain registry: decimals unknown.
UNKNOWN = "0x" + "0f" * 20
POOL = "0x" + "9a" * 20
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MARCH = common_pb2.Timeframe(
    range=common_pb2.TimeRange(
        start=stamp(datetime(2026, 3, 1, tzinfo=UTC)), end=stamp(datetime(2026, 4, 1, tzinfo=UTC))
    )
)


async def start_analytics(start_service: StartService, tmp_path: Path, chain_id: int) -> ServiceRuntime[Any]:
    from mevaas_analytics.server import SERVICE, AnalyticsRuntime, AnalyticsSettings

    chains = tmp_path / "chains.json"
    ChainRegistry(
        chains=[
            ChainConfig(
                chain_id=chain_id,
                name=f"threats-{chain_id}",
                rpc_url="http://127.0.0.1:1",
                wrapped_native=WETH,
                tokens=[
                    TokenConfig(address=USDC, symbol="USDC", decimals=6),
                    TokenConfig(address=WETH, symbol="WETH", decimals=18),
                    TokenConfig(address=TKN, symbol="TKN", decimals=18),
                ],
            )
        ]
    ).write(chains)
    return await start_service(
        SERVICE,
        AnalyticsRuntime,
        AnalyticsSettings,
        durable_prefix=f"analytics-threats-{uuid.uuid4().hex[:6]}",
        chains_file=str(chains),
    )


def market(chain_id: int, block: int, weth: int, usdc: int) -> events_pb2.MarketUpdate:
    block_hash = "0x" + uuid.uuid4().hex * 2
    return events_pb2.MarketUpdate(
        event_id=f"{chain_id}:{block_hash}",
        chain_id=chain_id,
        block_number=block,
        block_hash=block_hash,
        block_timestamp=Timestamp(seconds=int(T0.timestamp()) + block),
        pools=[
            events_pb2.PoolState(
                address=POOL,
                dex="uniswap_v2",
                token0=USDC,
                token1=WETH,
                reserve0=str(usdc),
                reserve1=str(weth),
                fee_bps=30,
            )
        ],
    )


def threat(
    tenant: str,
    chain_id: int,
    block: int,
    path: list[str],
    *,
    exact_in: bool,
    attacker_profit: str,
    exposure: str,
    at: datetime,
) -> events_pb2.SandwichThreat:
    tx_hash = "0x" + uuid.uuid4().hex * 2
    return events_pb2.SandwichThreat(
        event_id=f"{chain_id}:{tx_hash}:threat",
        tenant_id=tenant,
        occurred_at=stamp(at),
        chain_id=chain_id,
        tx_hash=tx_hash,
        sender="0x" + "5e" * 20,
        swap=events_pb2.PendingSwap(path=path, exact_in=exact_in, amount="1", bound="1"),
        block_number=block,
        pool=POOL,
        # The sandwiched hop's input token: the attacker's profit token.
        token=path[0],
        attacker_profit=attacker_profit,
        exposure=exposure,
        safe_slippage_bps=37,
    )


async def publish(bus: Bus, event: events_pb2.SandwichThreat, msg_id: str | None = None) -> None:
    await bus.publish(
        f"protect.{event.tenant_id}.threat", event, msg_id=msg_id or event.event_id, tenant_id=event.tenant_id
    )


async def report(
    analytics: ServiceRuntime[Any], key: SigningKey, tenant: str, chain_id: int = 0
) -> analytics_pb2.GetExecutionReportResponse:
    issuer = TokenIssuer(key, issuer="mevaas-tenancy", audience="mevaas", ttl_seconds=600)
    token, _ = issuer.issue(
        Principal(
            subject="viewer",
            tenant_id=tenant,
            roles=frozenset({Role.VIEWER}),
            rate_per_second=1000,
            burst=1000,
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{analytics.grpc_port}") as channel:
        response: analytics_pb2.GetExecutionReportResponse = await analytics_pb2_grpc.AnalyticsServiceStub(
            channel
        ).GetExecutionReport(
            analytics_pb2.GetExecutionReportRequest(timeframe=MARCH, chain_id=chain_id),
            metadata=[("authorization", f"Bearer {token}")],
        )
    return response


def money(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", amount=amount)


def token(chain_id: int, address: str, symbol: str, decimals: int) -> common_pb2.Token:
    return common_pb2.Token(chain_id=chain_id, address=address, symbol=symbol, decimals=decimals)


async def test_threats_valued_at_their_block_in_the_execution_report(
    start_service: StartService, bus: Bus, tmp_path: Path, jwt_signing_key: SigningKey
) -> None:
    chain_id = random.randrange(10**7, 10**8)
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    # Started first: a replica starting later would begin its price book with the pool's newest
    # recorded reserves (block 105), which have nothing to say about block 100 (the threat would
    # be recorded unpriced, as it should, until a replica with that state priced it).
    analytics = await start_analytics(start_service, tmp_path, chain_id)
    # WETH is worth 2000 USDC from block 100, 2500 from block 105 (USDC is pegged to 1 USD).
    for update in (
        market(chain_id, 100, 1000 * E18, 2_000_000 * 10**6),
        market(chain_id, 105, 1000 * E18, 2_500_000 * 10**6),
    ):
        await bus.publish(
            f"chain.{chain_id}.block", update, msg_id=update.event_id, tenant_id=PLATFORM_TENANT
        )
    # a: victim sells WETH for USDC at block 100: loses USDC (pegged), the attacker gains WETH at 2000.
    a = threat(
        tenant,
        chain_id,
        100,
        [WETH, USDC],
        exact_in=True,
        attacker_profit="123456789012345678",
        exposure="250123456",
        at=T0,
    )
    # b: victim buys WETH at block 105: loses WETH at 2500, the attacker gains USDC.
    b = threat(
        tenant,
        chain_id,
        105,
        [USDC, WETH],
        exact_in=True,
        attacker_profit="7000000",
        exposure="3333333333333333333",
        at=T0 + timedelta(minutes=1),
    )
    # c: exact out, TKN in (no pool: unpriced) for WETH; the loss is in the input token TKN, the
    # attacker's profit too: both unpriced. Block 102 prices as of block 100's state.
    c = threat(
        tenant,
        chain_id,
        102,
        [TKN, WETH],
        exact_in=False,
        attacker_profit=str(5 * 10**17),
        exposure=str(E18),
        at=T0 + timedelta(minutes=2),
    )
    # d: WETH in for a token the registry does not know: the loss has no decimals (unpriced), the
    # attacker's WETH profit is priced at block 105.
    d = threat(
        tenant,
        chain_id,
        105,
        [WETH, UNKNOWN],
        exact_in=True,
        attacker_profit=str(2 * 10**16),
        exposure="42",
        at=T0 + timedelta(minutes=3),
    )
    elsewhere = threat(
        other, chain_id, 100, [WETH, USDC], exact_in=True, attacker_profit="1", exposure="1", at=T0
    )
    for event in (a, b, c, d, elsewhere):
        await publish(bus, event)
    # The same threat again under another message id (past the stream's dedupe window, or from a
    # second strategy replica): still one threat.
    await publish(bus, a, msg_id=a.event_id + ":again")

    async def settled() -> analytics_pb2.GetExecutionReportResponse | None:
        got = await report(analytics, jwt_signing_key, tenant)
        priced = sum(v.priced for t in got.threats for v in (t.victim_loss, t.attacker_profit))
        return got if len(got.threats) == 4 and priced == 5 else None

    got = await wait_for(settled, timeout_s=60)
    assert [t.tx_hash for t in got.threats] == [d.tx_hash, c.tx_hash, b.tx_hash, a.tx_hash]  # newest first
    td, tc, tb, ta = got.threats
    assert (ta.chain_id, ta.victim, ta.block_number, ta.pool, ta.safe_slippage_bps) == (
        chain_id,
        "0x" + "5e" * 20,
        100,
        POOL,
        37,
    )
    assert ta.seen_at.ToDatetime(tzinfo=UTC) == T0
    # a: 250.123456 USDC at the peg; 0.123456789012345678 WETH x 2000 = 246.913578024691356.
    assert ta.victim_loss == analytics_pb2.ThreatValue(
        token=token(chain_id, USDC, "USDC", 6),
        amount="250123456",
        priced=True,
        value=money("250.123456000000000000"),
        price=common_pb2.Decimal(value="1.000000000000000000"),
        price_source=f"peg:{chain_id}:USDC",
    )
    pool_source = f"pool-mid:{chain_id}:WETH/USDC@{POOL}"
    at_100 = Timestamp(seconds=int(T0.timestamp()) + 100)
    at_105 = Timestamp(seconds=int(T0.timestamp()) + 105)
    assert ta.attacker_profit == analytics_pb2.ThreatValue(
        token=token(chain_id, WETH, "WETH", 18),
        amount="123456789012345678",
        priced=True,
        value=money("246.913578024691356000"),
        price=common_pb2.Decimal(value="2000.000000000000000000"),
        price_source=pool_source,
        observed_block=100,
        observed_at=at_100,
    )
    # b: 3.333333333333333333 WETH x 2500 (the block-105 price, not block 100's) = 8333.3333333333333325.
    assert tb.victim_loss == analytics_pb2.ThreatValue(
        token=token(chain_id, WETH, "WETH", 18),
        amount="3333333333333333333",
        priced=True,
        value=money("8333.333333333333332500"),
        price=common_pb2.Decimal(value="2500.000000000000000000"),
        price_source=pool_source,
        observed_block=105,
        observed_at=at_105,
    )
    assert (tb.attacker_profit.value, tb.attacker_profit.amount) == (money("7.000000000000000000"), "7000000")
    # c: both in TKN, which no source prices: flagged, no value, no price (never 0).
    for value in (tc.victim_loss, tc.attacker_profit):
        assert value.token.address == TKN and not value.priced
        assert not value.HasField("value") and not value.HasField("price") and TKN in value.unpriced_reason
    assert (tc.victim_loss.amount, tc.attacker_profit.amount) == (str(E18), str(5 * 10**17))
    # d: the loss in a token without decimals is unpriced; the attacker's 0.02 WETH at 2500 = 50.
    assert (td.victim_loss.token.address, td.victim_loss.amount, td.victim_loss.priced) == (
        UNKNOWN,
        "42",
        False,
    )
    assert not td.victim_loss.HasField("value") and UNKNOWN in td.victim_loss.unpriced_reason
    assert (td.attacker_profit.value, td.attacker_profit.observed_block) == (
        money("50.000000000000000000"),
        105,
    )
    # Totals over the priced amounts only; a counted once despite its second delivery.
    assert got.threat_totals == analytics_pb2.ThreatTotals(
        threats=4,
        # 250.123456 + 8333.3333333333333325
        victim_loss=money("8583.456789333333332500"),
        victim_loss_unpriced_count=2,
        # 246.913578024691356 + 7 + 50
        attacker_profit=money("303.913578024691356000"),
        attacker_profit_unpriced_count=1,
    )
    async with platform_transaction(analytics.pool) as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM analytics.threats WHERE tenant_id = $1 AND tx_hash = $2", tenant, a.tx_hash
        )
    assert rows == 1
    # Another chain filtered out; the other tenant sees only its own.
    assert not (await report(analytics, jwt_signing_key, tenant, chain_id=chain_id + 1)).threats

    # Published after the tenant's four, so it can still be on its way when those have settled.
    async def theirs_recorded() -> analytics_pb2.GetExecutionReportResponse | None:
        got = await report(analytics, jwt_signing_key, other)
        return got if got.threats else None

    theirs = await wait_for(theirs_recorded, timeout_s=60)
    assert [t.tx_hash for t in theirs.threats] == [elsewhere.tx_hash]


async def test_malformed_threats_are_refused_without_losing_the_others(
    start_service: StartService, bus: Bus, tmp_path: Path, jwt_signing_key: SigningKey
) -> None:
    chain_id = random.randrange(10**7, 10**8)
    tenant = str(uuid.uuid4())
    first = threat(tenant, chain_id, 1, [WETH, USDC], exact_in=True, attacker_profit="1", exposure="2", at=T0)
    last = threat(tenant, chain_id, 1, [WETH, USDC], exact_in=True, attacker_profit="3", exposure="4", at=T0)
    not_a_number = threat(
        tenant, chain_id, 1, [WETH, USDC], exact_in=True, attacker_profit="1", exposure="12abc", at=T0
    )
    # 79 digits: more than numeric(78, 0) holds, which would fail the whole batch's transaction.
    too_long = threat(
        tenant, chain_id, 1, [WETH, USDC], exact_in=True, attacker_profit="9" * 79, exposure="1", at=T0
    )
    no_path = threat(
        tenant, chain_id, 1, [WETH, USDC], exact_in=True, attacker_profit="1", exposure="1", at=T0
    )
    del no_path.swap.path[:]
    update = market(chain_id, 1, 1000 * E18, 2_000_000 * 10**6)
    await bus.publish(f"chain.{chain_id}.block", update, msg_id=update.event_id, tenant_id=PLATFORM_TENANT)
    await publish(bus, first)
    for event in (not_a_number, too_long, no_path):
        await publish(bus, event)
    # Bytes that are no SandwichThreat at all (the bus terminates them before any handler).
    await bus.js.publish(
        f"protect.{tenant}.threat",
        b"\xff\xff\xff not protobuf",
        headers={
            HEADER_CONTENT_TYPE: content_type_for(events_pb2.SandwichThreat),
            HEADER_TENANT: tenant,
            HEADER_MSG_ID: str(uuid.uuid4()),
        },
    )
    await publish(bus, last)

    analytics = await start_analytics(start_service, tmp_path, chain_id)
    durable = f"{analytics.settings.durable_prefix}-threats"

    async def drained() -> Any:
        info = await bus.js.consumer_info("PROTECT", durable)
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None

    # Every message handled once: none is being retried (a malformed one in a batch would fail the
    # batch's transaction and keep it, and its neighbours, pending for redelivery).
    info = await wait_for(drained, timeout_s=20)
    assert info.num_redelivered == 0
    got = await report(analytics, jwt_signing_key, tenant)
    assert sorted(t.tx_hash for t in got.threats) == sorted([first.tx_hash, last.tx_hash])
    async with platform_transaction(analytics.pool) as conn:
        recorded = await conn.fetch(
            "SELECT tx_hash FROM analytics.threats WHERE tenant_id = $1 UNION ALL"
            " SELECT tx_hash FROM analytics.threat_valuations WHERE tenant_id = $1",
            tenant,
        )
    assert sorted(r["tx_hash"] for r in recorded) == sorted([first.tx_hash, last.tx_hash] * 3)


async def test_a_replica_started_after_a_threat_s_block_prices_it_at_that_block_from_the_chain(
    start_service: StartService, bus: Bus, tmp_path: Path, jwt_signing_key: SigningKey, devnet: Devnet
) -> None:
    """Its price book starts at newer reserves (the market update it finds on starting), so the
    threat's block is read from the chain (anvil serves reserves at any past block); a chain that
    cannot answer leaves the value unpriced with why."""
    chain = devnet.main
    chain_id = random.randrange(10**7, 10**8)
    tenant = str(uuid.uuid4())
    weth = chain.deployment.weth.lower()
    usdc = chain.config.token("USDC").address.lower()
    pool = next(p for p in chain.deployment.pools if {p.token0.lower(), p.token1.lower()} == {weth, usdc})
    usdc_first = pool.token0.lower() == usdc

    async def reserves(block: int) -> tuple[int, int]:
        """(WETH, USDC) reserves of the pool as of ``block``."""
        data = await chain.client.call(pool.address, bytes.fromhex("0902f1ac"), block)
        r0, r1 = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")
        return (r1, r0) if usdc_first else (r0, r1)

    threat_block = await chain.client.block_number()
    then_usdc = (await reserves(threat_block))[1]
    # The pool moves on: USDC minted into it and synced (its WETH price rises by a third).
    await chain.producer.transact(
        [
            {
                "from": chain.deployer,
                "to": usdc,
                "data": "0x" + abi.encode_call("mint(address,uint256)", pool.address, then_usdc // 3).hex(),
                "gas": 100_000,
            },
            {
                "from": chain.deployer,
                "to": pool.address,
                "data": "0x" + abi.encode_call("sync()").hex(),
                "gas": 100_000,
            },
        ],
        require_success=True,
    )
    head = await chain.client.block_number()
    then, now = await reserves(threat_block), await reserves(head)
    assert Fraction(then[1], then[0]) != Fraction(now[1], now[0])
    # Put the pool's price back (WETH by a third too) for the tests that share the devnet: left a
    # third dear, the Aave oracle followed it and later tests found every WETH long's HF moved.
    added_weth = then[0] // 3
    await chain.producer.transact(
        [
            {
                "from": chain.deployer,
                "to": weth,
                "data": "0x" + abi.encode_call("deposit()").hex(),
                "value": hex(added_weth),
                "gas": 100_000,
            },
            {
                "from": chain.deployer,
                "to": weth,
                "data": "0x" + abi.encode_call("transfer(address,uint256)", pool.address, added_weth).hex(),
                "gas": 100_000,
            },
            {
                "from": chain.deployer,
                "to": pool.address,
                "data": "0x" + abi.encode_call("sync()").hex(),
                "gas": 100_000,
            },
        ],
        require_success=True,
    )
    restored = await reserves(await chain.client.block_number())
    assert abs(Fraction(restored[1], restored[0]) / Fraction(then[1], then[0]) - 1) < Fraction(1, 10**6)

    def update(chain_id: int, block: int, weth_usdc: tuple[int, int]) -> events_pb2.MarketUpdate:
        weth_reserve, usdc_reserve = weth_usdc
        block_hash = "0x" + uuid.uuid4().hex * 2
        return events_pb2.MarketUpdate(
            event_id=f"{chain_id}:{block_hash}",
            chain_id=chain_id,
            block_number=block,
            block_hash=block_hash,
            block_timestamp=Timestamp(seconds=int(T0.timestamp()) + block),
            pools=[
                events_pb2.PoolState(
                    address=pool.address,
                    dex=pool.dex,
                    token0=pool.token0,
                    token1=pool.token1,
                    reserve0=str(usdc_reserve if usdc_first else weth_reserve),
                    reserve1=str(weth_reserve if usdc_first else usdc_reserve),
                    fee_bps=30,
                )
            ],
        )

    unreachable = chain_id + 1
    for market_update in (update(chain_id, head, now),):
        await bus.publish(
            f"chain.{market_update.chain_id}.block",
            market_update,
            msg_id=market_update.event_id,
            tenant_id=PLATFORM_TENANT,
        )
    from mevaas_analytics.server import SERVICE, AnalyticsRuntime, AnalyticsSettings

    chains = tmp_path / "chains.json"
    tokens = [
        TokenConfig(address=weth, symbol="WETH", decimals=18),
        TokenConfig(address=usdc, symbol="USDC", decimals=6),
    ]
    ChainRegistry(
        chains=[
            ChainConfig(
                chain_id=chain_id,
                name="late",
                rpc_url=chain.config.rpc_url,
                wrapped_native=weth,
                tokens=tokens,
            ),
            ChainConfig(
                chain_id=unreachable,
                name="gone",
                rpc_url="http://127.0.0.1:1",
                wrapped_native=weth,
                tokens=tokens,
            ),
        ]
    ).write(chains)
    # Started after the threat's block and the market update (which its replay of the feed finds).
    analytics = await start_service(
        SERVICE,
        AnalyticsRuntime,
        AnalyticsSettings,
        durable_prefix=f"analytics-late-{uuid.uuid4().hex[:6]}",
        chains_file=str(chains),
    )
    late = threat(
        tenant,
        chain_id,
        threat_block,
        [weth, usdc],
        exact_in=True,
        attacker_profit=str(E18),
        exposure="1",
        at=T0,
    )
    await publish(bus, late)

    async def priced_at_its_block() -> analytics_pb2.ThreatValue | None:
        # Other replicas of this session (their own durables) record it too, unpriced: a priced
        # valuation replaces theirs.
        got = await report(analytics, jwt_signing_key, tenant)
        return (
            got.threats[0].attacker_profit if got.threats and got.threats[0].attacker_profit.priced else None
        )

    priced = await wait_for(priced_at_its_block, timeout_s=60)
    # 1 WETH at the pool's mid price at the threat's block, not at the newer reserves the book held.
    price = Fraction(then[1] * 10**18, then[0] * 10**6)
    assert priced.observed_block == threat_block
    assert priced.price == common_pb2.Decimal(value=str(to_decimal(price)))
    assert priced.value == money(str(to_decimal(price)))
    assert priced.price_source == f"pool-mid:{chain_id}:WETH/USDC@{pool.address.lower()}"
    assert price != Fraction(now[1] * 10**18, now[0] * 10**6)

    # A node that cannot serve the block's state: the price source stays the book's, with why.
    from mevaas_analytics.past_prices import PastPrices

    registry = load_registry(str(chains))
    context = PricingContext(registry)
    context.book.apply_update(update(unreachable, head, now))
    book_prices = build_price_source(["pool-mid"], context)
    at = await PastPrices(context, ["pool-mid"], book_prices, lambda: registry).at(unreachable, threat_block)
    assert at.source is book_prices
    assert at.unavailable.startswith(f"reserves at block {threat_block} not available")
    assert isinstance(valuate(at.source, unreachable, weth, E18, 18, at_block=threat_block), Unpriced)
