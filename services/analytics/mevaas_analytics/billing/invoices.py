"""Monthly invoices of a tenant: its usage read from the read model, each execution's profit as
valued when it happened (`execution_valuations`), billed by `domain.fees`. A closed month is
issued once and frozen; the current month is a draft recomputed on every read."""

from __future__ import annotations

import calendar
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics import store
from mevaas_analytics.billing import store as billing_store
from mevaas_analytics.domain import fees, leverage_fees
from mevaas_analytics.domain.leverage_fees import LeverageAccrual
from mevaas_analytics.domain.valuation import FINAL_STATUSES, REALIZED_PROFIT
from mevaas_analytics.store import protected, protections
from mevaas_chain.pricing import Priced, PriceSource, valuate
from mevaas_chain.pricing.pools import TokenInfo
from mevaas_core.db import tenant_transaction


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class Refunds:
    """Refunds paid in one token of one chain in a month."""

    count: int = 0
    amount: int = 0
    gas: int = 0
    usd: Fraction = Fraction(0)
    # Why some of it has no USD value ("" when all of it is priced).
    unpriced_reason: str = ""


@dataclass
class MonthAccumulator:
    profit: Fraction = Fraction(0)
    protected: int = 0
    fair_ordering: int = 0
    # (currency, unit price) -> protected / fair-ordering transactions priced so at acceptance.
    protection_recorded: dict[tuple[str, Decimal], int] = field(default_factory=lambda: defaultdict(int))
    fair_ordering_recorded: dict[tuple[str, Decimal], int] = field(default_factory=lambda: defaultdict(int))
    executed: int = 0
    # (chain id, token) -> refunds paid to the senders of the tenant's protected transactions.
    refunds: dict[tuple[int, str], Refunds] = field(default_factory=dict)
    # UTC day of the month -> priced profit of that day.
    daily: dict[int, Fraction] = field(default_factory=lambda: defaultdict(Fraction))
    # token key -> (token, summed base units) of profit that could not be priced.
    unpriced: dict[str, tuple[common_pb2.Token, int]] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    leverage: LeverageAccrual | None = None

    def add_unpriced(self, key: str, token: common_pb2.Token, amount: int) -> None:
        known = self.unpriced.get(key)
        self.unpriced[key] = (token, amount + (known[1] if known else 0))

    def usage(self, month: datetime, ytd_before: Decimal, now: datetime) -> fees.MonthlyUsage:
        days = calendar.monthrange(month.year, month.month)[1]
        if (now.year, now.month) == (month.year, month.month):
            days = now.day  # a draft measures the month so far
        return fees.MonthlyUsage(
            profit=self.profit,
            year_to_date_before=ytd_before,
            protected_transactions=self.protected,
            executed_transactions=self.executed,
            fair_ordering_transactions=self.fair_ordering,
            unpriced=tuple(
                fees.UnpricedProfit(token, amount)
                for _, (token, amount) in sorted(self.unpriced.items())
                if amount
            ),
            daily_profit=tuple(self.daily.get(day, Fraction(0)) for day in range(1, days + 1)),
            leverage=self.leverage,
            protection_recorded=tuple((c, p, n) for (c, p), n in sorted(self.protection_recorded.items())),
            fair_ordering_recorded=tuple(
                (c, p, n) for (c, p), n in sorted(self.fair_ordering_recorded.items())
            ),
        )


def monthly_usage(
    results: list[asyncpg.Record], valuations: dict[tuple[str, int], asyncpg.Record], prices: PriceSource
) -> dict[datetime, MonthAccumulator]:
    """Per UTC month: priced realised profit of final executions (as valued when recorded; a
    result recorded before valuations existed is valued now, at its block), the unpriced rest per
    token and executed strategy transactions (protected transactions are counted from their own
    records: `add_protected`)."""
    months: dict[datetime, MonthAccumulator] = {}
    for row in results:
        at: datetime = row["occurred_at"].astimezone(UTC)
        acc = months.setdefault(datetime(at.year, at.month, 1, tzinfo=UTC), MonthAccumulator())
        status = row["status"]
        if status not in FINAL_STATUSES:
            continue
        if not row["rebalance_id"]:
            acc.executed += row["tx_count"]
        if row["realized_profit"] is None or not row["profit_token"]:
            continue
        recorded = valuations.get((row["execution_id"], status))
        if recorded is not None and recorded["priced"]:
            value = Fraction(recorded["usd_value"])
            acc.sources.add(recorded["price_source"])
        else:
            token = events_pb2.ExecutionResult.FromString(row["payload"]).profit_token
            valuation = (
                None
                if recorded is not None
                else valuate(
                    prices,
                    token.chain_id or row["chain_id"],
                    token.address,
                    int(row["realized_profit"]),
                    token.decimals,
                    at_block=row["block_number"] or None,
                )
            )
            if not isinstance(valuation, Priced):
                acc.add_unpriced(row["profit_token"], token, int(row["realized_profit"]))
                continue
            value = valuation.usd
            acc.sources.add(valuation.price.source)
        acc.profit += value
        acc.daily[at.day] += value
    return months


def _month(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_protected(months: dict[datetime, MonthAccumulator], rows: list[asyncpg.Record]) -> None:
    """The tenant's clients' protected transactions accepted in each month (refused ones, e.g. a
    sanctions hit or a reverting simulation, are not billed), and those in fair-ordering mode,
    with the fee each was priced at when accepted where execution recorded one."""
    for row in rows:
        if not row["accepted"]:
            continue
        acc = months.setdefault(_month(row["received_at"]), MonthAccumulator())
        acc.protected += 1
        acc.fair_ordering += int(row["fair_ordering"])
        currency = row["fee_currency"]
        if currency and row["protection_fee"] is not None:
            acc.protection_recorded[(currency, Decimal(row["protection_fee"]))] += 1
            if row["fair_ordering"]:
                acc.fair_ordering_recorded[(currency, Decimal(row["fair_ordering_fee"]))] += 1


def add_refunds(
    months: dict[datetime, MonthAccumulator],
    rows: list[asyncpg.Record],
    prices: PriceSource,
    tokens: Mapping[tuple[int, str], TokenInfo],
) -> None:
    """Refunds per month (when booked), token and chain, valued at their block with the one price
    source; a token without decimals or price stays unpriced, with the reason."""
    for row in rows:
        acc = months.setdefault(_month(row["refunded_at"]), MonthAccumulator())
        key = (int(row["chain_id"]), row["refund_token"])
        paid = acc.refunds.setdefault(key, Refunds())
        amount = int(row["refund_amount"] or 0)
        paid.count += 1
        paid.amount += amount
        paid.gas += int(row["gas_refund"] or 0)
        info = tokens.get(key)
        if info is None:
            paid.unpriced_reason = f"decimals of {key[0]}:{key[1]} unknown"
            continue
        valuation = valuate(
            prices, key[0], key[1], amount, info.decimals, at_block=row["block_number"] or None
        )
        if isinstance(valuation, Priced):
            paid.usd += valuation.usd
            acc.sources.add(valuation.price.source)
        else:
            paid.unpriced_reason = valuation.reason


def refunds_proto(
    refunds: Mapping[tuple[int, str], Refunds], tokens: Mapping[tuple[int, str], TokenInfo], currency: str
) -> list[analytics_pb2.RefundsPaid]:
    out = []
    for (chain_id, token), paid in sorted(refunds.items()):
        info = tokens.get((chain_id, token))
        item = analytics_pb2.RefundsPaid(
            chain_id=chain_id,
            token=token,
            symbol=info.symbol if info else "",
            count=paid.count,
            amount=str(paid.amount),
            gas_refund=str(paid.gas),
            unpriced=bool(paid.unpriced_reason),
            unpriced_reason=paid.unpriced_reason,
        )
        if info is not None:
            item.quantity.value = fees.decimal_text(fees.whole_tokens(paid.amount, info.decimals))
        if not paid.unpriced_reason:
            item.value.CopyFrom(
                common_pb2.Money(
                    currency_code=currency, amount=fees.decimal_text(fees.round_fraction(paid.usd, currency))
                )
            )
        out.append(item)
    return out


def invoice_profit_base(invoice: analytics_pb2.Invoice) -> Decimal:
    """The billed profit of an issued invoice (sum of its profit-based line quantities)."""
    kinds = (analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE, analytics_pb2.LINE_ITEM_KIND_REVENUE_SHARE)
    return sum(
        (Decimal(item.quantity.value) for item in invoice.line_items if item.kind in kinds), Decimal(0)
    )


def invoice_proto(
    tenant: str, month: datetime, plan_name: str, amounts: fees.InvoiceAmounts, sources: set[str]
) -> analytics_pb2.Invoice:
    following = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    currency = amounts.currency
    invoice = analytics_pb2.Invoice(
        # Stable id per tenant and month, so a draft keeps its id once issued.
        invoice_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"mevaas:invoice:{tenant}:{month:%Y-%m}")),
        tenant_id=tenant,
        status=analytics_pb2.INVOICE_STATUS_DRAFT,
        plan_name=plan_name,
        line_items=[fees.to_proto_line(line, currency) for line in amounts.line_items],
        subtotal=common_pb2.Money(currency_code=currency, amount=fees.decimal_text(amounts.subtotal)),
        tax=common_pb2.Money(currency_code=currency, amount=fees.decimal_text(amounts.tax)),
        total=common_pb2.Money(currency_code=currency, amount=fees.decimal_text(amounts.total)),
        has_unpriced_profit=any(line.unpriced is not None for line in amounts.line_items),
        price_sources=sorted(sources),
    )
    invoice.period.start.CopyFrom(_ts(month))
    invoice.period.end.CopyFrom(_ts(following))
    return invoice


class Invoicing:
    def __init__(
        self,
        pool: asyncpg.Pool,
        prices: PriceSource,
        *,
        tax_percent: Decimal = Decimal(0),
        tokens: Callable[[], Mapping[tuple[int, str], TokenInfo]] = dict,
    ) -> None:
        self.pool = pool
        self.prices = prices
        self.tax_percent = tax_percent
        self.tokens = tokens

    async def invoices(self, tenant: str) -> list[analytics_pb2.Invoice]:
        """Every month of the tenant, newest first: closed months issued (once), the current one
        a draft."""
        async with tenant_transaction(self.pool, tenant) as conn:
            plan_bytes = await store.current_plan(conn, tenant)
            issued = {
                r["period_start"]: analytics_pb2.Invoice.FromString(r["payload"])
                for r in await billing_store.issued_invoices(conn, tenant)
            }
            if plan_bytes is None:
                return sorted(issued.values(), key=lambda i: i.period.start.seconds, reverse=True)
            plan = common_pb2.Plan.FromString(plan_bytes)
            results = await store.execution_results(conn, tenant, None, None)
            valuations = {
                (r["execution_id"], r["status"]): r
                for r in await billing_store.valuations(conn, tenant, REALIZED_PROFIT, None, None)
            }
            months = monthly_usage(results, valuations, self.prices)
            tokens = self.tokens()
            add_protected(months, await protected.protected_in(conn, tenant, None, None))
            add_refunds(months, await protected.refunds_in(conn, tenant), self.prices, tokens)
            tier = await protected.current_tier(conn, tenant)
            now = datetime.now(UTC)
            snapshots = await protections.snapshots_of(conn, tenant)
            for month, accrual in leverage_fees.accrue(snapshots, self.prices, now).items():
                acc = months.setdefault(month, MonthAccumulator())
                acc.leverage = accrual
                acc.sources |= accrual.sources
            current = datetime(now.year, now.month, 1, tzinfo=UTC)
            months.setdefault(current, MonthAccumulator())
            pricing = fees.Pricing.from_plan(plan, tier)
            invoices: list[analytics_pb2.Invoice] = []
            ytd: dict[int, Decimal] = defaultdict(Decimal)
            for month in sorted(months):
                if month in issued:
                    invoice = issued[month]
                    ytd[month.year] += invoice_profit_base(invoice)
                    invoices.append(invoice)
                    continue
                acc = months[month]
                amounts = fees.compute_invoice(
                    pricing, acc.usage(month, ytd[month.year], now), tax_percent=self.tax_percent
                )
                ytd[month.year] += amounts.profit_base
                invoice = invoice_proto(tenant, month, plan.name, amounts, acc.sources)
                invoice.refunds_paid.extend(refunds_proto(acc.refunds, tokens, amounts.currency))
                if month < current:
                    invoice = await self._issue(conn, tenant, month, invoice, now)
                invoices.append(invoice)
        return sorted(invoices, key=lambda i: i.period.start.seconds, reverse=True)

    async def _issue(
        self,
        conn: asyncpg.Connection,
        tenant: str,
        month: datetime,
        invoice: analytics_pb2.Invoice,
        now: datetime,
    ) -> analytics_pb2.Invoice:
        """A closed month is issued once and frozen (a later plan change never rewrites it); a
        concurrent reader that issued it first wins."""
        number = await billing_store.next_invoice_number(conn)
        invoice.status = analytics_pb2.INVOICE_STATUS_ISSUED
        invoice.number = f"INV-{month.year}-{number:06d}"
        invoice.issued_at.CopyFrom(_ts(now))
        invoice.due_at.CopyFrom(_ts(now + timedelta(days=30)))
        if await billing_store.insert_invoice(conn, tenant, month, invoice, now):
            return invoice
        return analytics_pb2.Invoice.FromString(await billing_store.invoice_payload(conn, tenant, month))
