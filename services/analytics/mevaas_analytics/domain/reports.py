"""Report arithmetic without I/O: latency percentiles, execution report counts, PnL statistics.

Conventions:
* Percentiles use the nearest-rank method (the smallest sample with at least p % of samples at or
  below it), so every reported latency is one that was actually observed.
* Performance statistics use UTC-daily PnL buckets: Sharpe = mean / stdev (sample, n-1) *
  sqrt(365), Sortino = mean / downside deviation (root mean square of the negative days over all
  days) * sqrt(365); both 0 when undefined (fewer than two days or no variance). Because the
  allocated capital is constant over a report, ratios of daily PnL equal ratios of daily returns.
* Max drawdown is the largest fall of cumulative PnL from a running peak (starting at 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

HOPS = (
    ("block_to_detection", "block_seen_at", "opportunity_detected_at"),
    ("detection_to_decision", "opportunity_detected_at", "risk_decided_at"),
    ("decision_to_submission", "risk_decided_at", "submitted_at"),
    ("block_to_submission", "block_seen_at", "submitted_at"),
    ("submission_to_inclusion", "submitted_at", "included_at"),
)


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    hop: str
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency_summaries(samples: dict[str, list[float]]) -> list[LatencySummary]:
    out = []
    for hop, _, _ in HOPS:
        values = sorted(samples.get(hop, []))
        if values:
            out.append(
                LatencySummary(
                    hop,
                    len(values),
                    nearest_rank(values, 50),
                    nearest_rank(values, 90),
                    nearest_rank(values, 99),
                    values[-1],
                )
            )
    return out


def hop_latencies(timestamps: dict[str, datetime | None]) -> dict[str, float]:
    """Milliseconds of each hop whose two ends are set."""
    out = {}
    for hop, start, end in HOPS:
        a, b = timestamps.get(start), timestamps.get(end)
        if a is not None and b is not None:
            out[hop] = (b - a) / timedelta(milliseconds=1)
    return out


@dataclass(frozen=True)
class Trade:
    """One final execution (included or reverted): its net PnL in base units of its denomination."""

    at: datetime
    pnl: int
    gas_cost_wei: int
    strategy_id: str = ""


@dataclass
class Performance:
    total_pnl: int = 0
    gross_profit: int = 0
    gross_loss: int = 0
    gas_cost_wei: int = 0
    max_drawdown: int = 0
    sharpe_ratio: float = 0.0
    sortino_ratio: float = 0.0
    win_rate: float = 0.0
    trade_count: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    daily: list[tuple[datetime, int, int, int]] = field(default_factory=list)  # day, pnl, cumulative, trades


def _day(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def performance(
    trades: Iterable[Trade], *, start: datetime | None = None, end: datetime | None = None
) -> Performance:
    """Statistics of the trades; days of the timeframe without trades count as zero-PnL days."""
    result = Performance()
    by_day: dict[datetime, list[int]] = {}
    for trade in trades:
        result.trade_count += 1
        result.total_pnl += trade.pnl
        result.gas_cost_wei += trade.gas_cost_wei
        if trade.pnl > 0:
            result.winning_trades += 1
            result.gross_profit += trade.pnl
        elif trade.pnl < 0:
            result.losing_trades += 1
            result.gross_loss -= trade.pnl
        by_day.setdefault(_day(trade.at), []).append(trade.pnl)
    if not by_day:
        return result
    first = _day(start) if start is not None else min(by_day)
    last = _day(end - timedelta(microseconds=1)) if end is not None else max(by_day)
    first, last = min(first, *by_day), max(last, *by_day)
    cumulative = peak = 0
    day = first
    daily_pnl: list[int] = []
    while day <= last:
        pnls = by_day.get(day, [])
        pnl = sum(pnls)
        cumulative += pnl
        peak = max(peak, cumulative)
        result.max_drawdown = max(result.max_drawdown, peak - cumulative)
        result.daily.append((day, pnl, cumulative, len(pnls)))
        daily_pnl.append(pnl)
        day += timedelta(days=1)
    result.win_rate = result.winning_trades / result.trade_count
    n = len(daily_pnl)
    if n >= 2:
        mean = sum(daily_pnl) / n
        variance = sum((x - mean) ** 2 for x in daily_pnl) / (n - 1)
        if variance > 0:
            result.sharpe_ratio = mean / math.sqrt(variance) * math.sqrt(365)
        downside = math.sqrt(sum(min(x, 0) ** 2 for x in daily_pnl) / n)
        if downside > 0:
            result.sortino_ratio = mean / downside * math.sqrt(365)
    return result
