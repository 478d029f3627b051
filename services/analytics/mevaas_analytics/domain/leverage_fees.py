"""The leverage-protection fee's base (the brief's Leverage_Optimization: a yearly percent of
the protected position's value, pro-rated per invoice period), exact.

A protected position's value is its collateral (Aave aToken balances, underlying base units) in
the snapshots leverage protection publishes: each snapshot stands from its block time until the
protection's next snapshot, at most its ``valid_seconds`` (so a protection that was paused or
removed stops accruing one interval after its last snapshot at the latest), and never past
``now`` (a draft does not bill the future). Each token is valued with the one price source at
the snapshot's block; the priced part accrues USD-years (USD x seconds / 365 days), a token the
source cannot price accrues token-years on its own, flagged and never counted as 0.
Everything is `Fraction` arithmetic; rounding happens once, on the invoice line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_chain.pricing import Priced, PriceSource, valuate

YEAR_SECONDS = 365 * 24 * 3600


@dataclass
class UnpricedCollateral:
    token: common_pb2.Token
    # Whole-token-years of collateral the price source could not price.
    token_years: Fraction = Fraction(0)
    # Base units in the latest snapshot counted.
    last_amount: int = 0
    reason: str = ""


@dataclass
class LeverageAccrual:
    """One billing period's leverage-protection base."""

    usd_years: Fraction = Fraction(0)
    unpriced: dict[tuple[int, str], UnpricedCollateral] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    protections: set[str] = field(default_factory=set)


def _at(snapshot: events_pb2.ProtectedPositionSnapshot) -> datetime:
    return snapshot.occurred_at.ToDatetime(tzinfo=UTC)


def spans(
    snapshots: Iterable[events_pb2.ProtectedPositionSnapshot], now: datetime
) -> Iterator[tuple[events_pb2.ProtectedPositionSnapshot, datetime, datetime]]:
    """[start, end) each snapshot stands for (see the module docstring); empty ones skipped."""
    by_protection: dict[str, list[events_pb2.ProtectedPositionSnapshot]] = {}
    for snapshot in snapshots:
        by_protection.setdefault(snapshot.protection_id, []).append(snapshot)
    for protection_id in sorted(by_protection):
        ordered = sorted(by_protection[protection_id], key=lambda s: (_at(s), s.block_number))
        for index, snapshot in enumerate(ordered):
            start = _at(snapshot)
            end = min(start + timedelta(seconds=snapshot.valid_seconds), now)
            if index + 1 < len(ordered):
                end = min(end, _at(ordered[index + 1]))
            if end > start:
                yield snapshot, start, end


def month_of(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    return datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)


def split_by_month(start: datetime, end: datetime) -> Iterator[tuple[datetime, int]]:
    """(month, whole seconds of [start, end) in it)."""
    while start < end:
        month = month_of(start)
        stop = min(end, next_month(month))
        yield month, int((stop - start).total_seconds())
        start = stop


def accrue(
    snapshots: Sequence[events_pb2.ProtectedPositionSnapshot], prices: PriceSource, now: datetime
) -> dict[datetime, LeverageAccrual]:
    """Per UTC month, the USD-years of priced protected collateral and the unpriced rest."""
    months: dict[datetime, LeverageAccrual] = {}
    for snapshot, start, end in spans(snapshots, now):
        valued: list[tuple[common_pb2.Token, int, Priced | str]] = []
        for held in snapshot.collateral:
            token, amount = held.token, int(held.amount or "0")
            valuation = valuate(
                prices,
                token.chain_id or snapshot.chain_id,
                token.address,
                amount,
                token.decimals,
                at_block=snapshot.block_number or None,
            )
            valued.append((token, amount, valuation if isinstance(valuation, Priced) else valuation.reason))
        for month, seconds in split_by_month(start, end):
            acc = months.setdefault(month, LeverageAccrual())
            acc.protections.add(snapshot.protection_id)
            years = Fraction(seconds, YEAR_SECONDS)
            for token, amount, value in valued:
                if isinstance(value, Priced):
                    acc.usd_years += value.usd * years
                    acc.sources.add(value.price.source)
                    continue
                key = (token.chain_id or snapshot.chain_id, token.address.lower())
                unpriced = acc.unpriced.setdefault(key, UnpricedCollateral(token))
                unpriced.token_years += Fraction(amount, 10**token.decimals) * years
                unpriced.last_amount, unpriced.reason = amount, value
    return months
