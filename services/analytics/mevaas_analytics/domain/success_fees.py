"""Success fees: shares of a month's performance measured against the plan's benchmark (brief
"Success_Fees": alpha generation, Sharpe improvement, benchmark outperformance; and the
"Base_Plus_Performance" hybrid's success bonus).

Inputs, per UTC day d = 1..n of the billing period (n = the days of the month, or of the month so
far for a draft): pnl_d, the day's priced realised profit in the plan currency (exact), and the
benchmark: capital C, benchmark return b and risk-free return rf per year in percent, and the
benchmark's annualised Sharpe ratio S_b. Per day, the benchmark earns B_d = C * b / 100 / 365 and
the risk-free rate R = C * rf / 100 / 365 (money; 365 days a year, every year).

* Benchmark outperformance: sum(pnl_d) - sum(B_d).
* Alpha (Jensen's, in money): sum(pnl_d - R) - beta * sum(B_d - R), beta = cov(pnl, B) / var(B)
  over the days; a constant-rate benchmark has no variance and beta = 0, so alpha is then the
  profit over the risk-free return on the capital.
* Sharpe improvement: with x_d = pnl_d - R, mean m and population deviation sigma over the n days,
  the Sharpe ratio S = m / sigma and S_b made daily, S_b / sqrt(365); the profit due to the
  improvement is n * sigma * (S - S_b / sqrt(365)) = sum(x_d) - n * sigma * S_b / sqrt(365).
* Success bonus: outperformance minus the month's performance fee / revenue share (what the
  tenant keeps above the benchmark).

Everything is exact `Fraction` arithmetic except the two square roots (sigma and sqrt(365)),
computed in `Decimal` at 40 significant digits. Each measure is then rounded half-even to the
currency's minor unit; a fee is billed only on a positive measure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

DAYS_PER_YEAR = 365
SQRT_DIGITS = 40
ALPHA = 1
SHARPE_IMPROVEMENT = 2
BENCHMARK_OUTPERFORMANCE = 3
SUCCESS_BONUS = 4
KIND_LABELS = {
    ALPHA: "alpha generation",
    SHARPE_IMPROVEMENT: "Sharpe improvement",
    BENCHMARK_OUTPERFORMANCE: "benchmark outperformance",
    SUCCESS_BONUS: "success bonus on benchmark outperformance",
}


@dataclass(frozen=True)
class Benchmark:
    capital: Decimal
    annual_return_percent: Decimal = Decimal(0)
    risk_free_annual_percent: Decimal = Decimal(0)
    sharpe_ratio: Decimal = Decimal(0)

    def per_day(self, annual_percent: Decimal) -> Fraction:
        return Fraction(self.capital) * Fraction(annual_percent) / 100 / DAYS_PER_YEAR

    def daily_returns(self, days: int) -> list[Fraction]:
        return [self.per_day(self.annual_return_percent)] * days


def _fraction_to_decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def outperformance(daily: Sequence[Fraction], benchmark: Sequence[Fraction]) -> Fraction:
    return sum(daily, Fraction(0)) - sum(benchmark, Fraction(0))


def alpha(daily: Sequence[Fraction], benchmark: Sequence[Fraction], risk_free: Fraction) -> Fraction:
    n = len(daily)
    if n == 0:
        return Fraction(0)
    excess = [p - risk_free for p in daily]
    bench_excess = [b - risk_free for b in benchmark]
    mean_p = sum(excess, Fraction(0)) / n
    mean_b = sum(bench_excess, Fraction(0)) / n
    variance = sum(((b - mean_b) ** 2 for b in bench_excess), Fraction(0))
    covariance = sum(
        ((p - mean_p) * (b - mean_b) for p, b in zip(excess, bench_excess, strict=True)), Fraction(0)
    )
    beta = covariance / variance if variance else Fraction(0)
    return sum(excess, Fraction(0)) - beta * sum(bench_excess, Fraction(0))


def sharpe_improvement(daily: Sequence[Fraction], risk_free: Fraction, benchmark_sharpe: Decimal) -> Decimal:
    n = len(daily)
    if n == 0:
        return Decimal(0)
    excess = [p - risk_free for p in daily]
    total = sum(excess, Fraction(0))
    mean = total / n
    variance = sum(((x - mean) ** 2 for x in excess), Fraction(0)) / n
    with localcontext() as ctx:
        ctx.prec = SQRT_DIGITS
        sigma = _fraction_to_decimal(variance).sqrt()
        daily_sharpe = benchmark_sharpe / Decimal(DAYS_PER_YEAR).sqrt()
        return _fraction_to_decimal(total) - n * sigma * daily_sharpe


@dataclass(frozen=True)
class Period:
    """What every measure reads: the period's daily priced profit, the benchmark, and the
    month's performance fee / revenue share already billed (for the success bonus)."""

    daily: Sequence[Fraction]
    benchmark: Benchmark
    profit_fees: Decimal

    @property
    def returns(self) -> list[Fraction]:
        return self.benchmark.daily_returns(len(self.daily))

    @property
    def risk_free(self) -> Fraction:
        return self.benchmark.per_day(self.benchmark.risk_free_annual_percent)


MEASURES: dict[int, Callable[[Period], Fraction | Decimal]] = {
    ALPHA: lambda p: alpha(p.daily, p.returns, p.risk_free),
    SHARPE_IMPROVEMENT: lambda p: sharpe_improvement(p.daily, p.risk_free, p.benchmark.sharpe_ratio),
    BENCHMARK_OUTPERFORMANCE: lambda p: outperformance(p.daily, p.returns),
    SUCCESS_BONUS: lambda p: outperformance(p.daily, p.returns) - Fraction(p.profit_fees),
}
