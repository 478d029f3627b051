"""The leverage-protection fee: a yearly percent of the protected collateral's value (priced with
the one price source at each snapshot's block), pro-rated over the snapshot spans that fall in
the month, exact to the cent; unpriced collateral flagged on its own line, never 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain.fees import LineItem, MonthlyUsage, Pricing, compute_invoice, to_proto_line
from mevaas_analytics.domain.leverage_fees import YEAR_SECONDS, accrue, spans
from mevaas_chain.pricing import PricingContext, build_price_source, parse_price_table
from mevaas_chain.registry import ChainRegistry
from mevaas_strategies.opportunity import timestamp

CHAIN = 31337
WETH = "0x" + "ee" * 20
ODD = "0x" + "0d" * 20
JAN = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600
LEVERAGE = analytics_pb2.LINE_ITEM_KIND_LEVERAGE_PROTECTION_FEE
PRICES = build_price_source(
    ["fixed"], PricingContext(ChainRegistry(), table=parse_price_table(f"{CHAIN}:{WETH}=2000"))
)


def snapshot(
    at: datetime, weth: int, *, protection: str = "p1", odd: int = 0, block: int = 1, valid: int = HOUR
) -> events_pb2.ProtectedPositionSnapshot:
    out = events_pb2.ProtectedPositionSnapshot(
        event_id=f"{protection}:{block}",
        tenant_id="t",
        occurred_at=timestamp(at),
        protection_id=protection,
        chain_id=CHAIN,
        block_number=block,
        valid_seconds=valid,
    )
    out.collateral.add(
        token=common_pb2.Token(chain_id=CHAIN, address=WETH, symbol="WETH", decimals=18), amount=str(weth)
    )
    if odd:
        out.collateral.add(
            token=common_pb2.Token(chain_id=CHAIN, address=ODD, symbol="ODD", decimals=6), amount=str(odd)
        )
    return out


def plan() -> common_pb2.Plan:
    return common_pb2.Plan(name="p", monthly_base_fee=common_pb2.Money(currency_code="USD", amount="0"))


def leverage_lines(
    tier: int, snapshots: list[events_pb2.ProtectedPositionSnapshot], now: datetime
) -> list[LineItem]:
    accrual = accrue(snapshots, PRICES, now).get(JAN)
    usage = MonthlyUsage(Fraction(0), Decimal(0), 0, 0, leverage=accrual)
    return [
        line
        for line in compute_invoice(Pricing.from_plan(plan(), tier), usage).line_items
        if line.kind == LEVERAGE
    ]


def test_a_snapshot_stands_until_the_next_at_most_its_interval_and_never_past_now() -> None:
    a, b = snapshot(JAN, 10**18, block=1), snapshot(JAN + timedelta(minutes=30), 10**18, block=2)
    c = snapshot(JAN + timedelta(hours=5), 10**18, block=3)
    now = JAN + timedelta(hours=5, minutes=10)
    found = [(s.block_number, int((end - start).total_seconds())) for s, start, end in spans([c, b, a], now)]
    # a until b (30 min), b for its hour (then nothing until c: paused, say), c until now.
    assert found == [(1, 1800), (2, 3600), (3, 600)]


def test_the_fee_is_the_tiers_yearly_percent_of_the_usd_years_exactly() -> None:
    # 10 WETH at $2000 = $20,000 held for a whole year of hourly snapshots would be 20,000
    # USD-years; here 30 days of it: 20,000 * 30/365 USD-years.
    snapshots = [snapshot(JAN + timedelta(hours=h), 10 * 10**18, block=h + 1) for h in range(30 * 24)]
    now = JAN + timedelta(days=40)
    usd_years = Fraction(20_000 * 30 * 24 * HOUR, YEAR_SECONDS)
    quantity = Decimal("1643.84")  # 1643.835616... rounded half-even to the cent
    assert abs(Decimal(usd_years.numerator) / usd_years.denominator - quantity) <= Decimal("0.005")
    for tier, percent, amount in (
        (common_pb2.TIER_STARTER, Decimal(15), Decimal("246.58")),  # 1643.84 * 15% = 246.576
        (common_pb2.TIER_PROFESSIONAL, Decimal(10), Decimal("164.38")),
        (common_pb2.TIER_ENTERPRISE, Decimal(5), Decimal("82.19")),  # 82.192
    ):
        (line,) = leverage_lines(tier, snapshots, now)
        assert (line.quantity, line.rate_percent, line.amount) == (quantity, percent, amount)
        assert line.unpriced is None
    # No tier: no leverage-protection price, no line.
    assert leverage_lines(0, snapshots, now) == []


def test_a_span_across_months_is_split_at_the_boundary() -> None:
    before = JAN - timedelta(minutes=15)
    months = accrue([snapshot(before, 10**18, valid=HOUR)], PRICES, JAN + timedelta(days=1))
    december, january = months[datetime(2025, 12, 1, tzinfo=UTC)], months[JAN]
    assert december.usd_years == Fraction(2000 * 15 * 60, YEAR_SECONDS)
    assert january.usd_years == Fraction(2000 * 45 * 60, YEAR_SECONDS)
    assert january.sources == december.sources == {PRICES.price(CHAIN, WETH).source}  # type: ignore[union-attr]


def test_unpriced_collateral_is_flagged_on_its_own_line_never_zero() -> None:
    now = JAN + timedelta(hours=2)
    lines = leverage_lines(common_pb2.TIER_STARTER, [snapshot(JAN, 10**18, odd=5 * 10**6)], now)
    priced, unpriced = lines
    assert priced.amount is not None and priced.unpriced is None
    assert unpriced.amount is None and unpriced.unpriced is not None
    assert unpriced.unpriced.token.address == ODD and unpriced.unpriced.amount == 5 * 10**6
    # 5 ODD for one hour = 5 * 3600 / 31,536,000 token-years = 0.000570776... -> 0.00057078.
    assert unpriced.quantity == Decimal("0.00057078")
    proto = to_proto_line(unpriced, "USD")
    assert proto.unpriced and not proto.HasField("amount") and proto.token_amount == "5000000"
    # Only unpriced collateral: the line is still there, flagged, and nothing is billed for it.
    only = leverage_lines(common_pb2.TIER_STARTER, [snapshot(JAN, 0, odd=5 * 10**6)], now)
    assert [(line.amount, line.unpriced is not None) for line in only] == [(None, True)]
