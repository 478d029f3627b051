"""Value at risk from a daily PnL series of exact integers (base units).

* Historical: the horizon PnL series is the sums of `horizon` consecutive daily observations
  (overlapping windows; the daily series itself for a one-day horizon). VaR is the loss at the
  lower empirical (1 - confidence) quantile: sort ascending, take element k = ceil((1 - c) * n) - 1
  (clamped to [0, n-1]), no interpolation. Expected shortfall is the mean loss of the k + 1 worst
  observations.
* Parametric (normal): mu and the sample standard deviation sigma of the daily series; over h days
  VaR = -(h * mu + z * sigma * sqrt(h)) with z = the (1 - c) quantile of N(0, 1) (negative), and
  ES = -(h * mu - sigma * sqrt(h) * pdf(z) / (1 - c)).

Inputs and the historical figures are exact (integers, `Fraction`); the parametric statistic is
computed in floats. Every figure is reported as a loss in whole base units, rounded up (towards the
larger loss, the prudent side), and 0 when the quantile is a gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

MIN_OBSERVATIONS = 2


class NotEnoughHistory(ValueError):
    """Fewer than two (horizon) observations."""


@dataclass(frozen=True, slots=True)
class VarResult:
    value_at_risk: int
    expected_shortfall: int
    observations: int


def _loss(pnl: Fraction | float) -> int:
    """A PnL quantile as a non-negative loss in whole base units, rounded towards the larger loss."""
    return max(0, math.ceil(-pnl))


def horizon_series(daily: Sequence[int], horizon: int) -> list[int]:
    if horizon <= 1:
        return list(daily)
    return [sum(daily[i : i + horizon]) for i in range(len(daily) - horizon + 1)]


def historical_var(daily: Sequence[int], confidence: float, horizon: int = 1) -> VarResult:
    series = sorted(horizon_series(daily, horizon))
    n = len(series)
    if n < MIN_OBSERVATIONS:
        raise NotEnoughHistory(f"{n} horizon observations, need at least {MIN_OBSERVATIONS}")
    # Exact tail size: (1 - c) * n with c as the exact decimal the client meant (0.95, not 0.9499...).
    tail = Fraction(1) - Fraction(str(confidence))
    k = min(max(math.ceil(tail * n) - 1, 0), n - 1)
    worst = series[: k + 1]
    return VarResult(
        value_at_risk=_loss(Fraction(series[k])),
        expected_shortfall=_loss(Fraction(sum(worst), len(worst))),
        observations=len(daily),
    )


def parametric_var(daily: Sequence[int], confidence: float, horizon: int = 1) -> VarResult:
    n = len(daily)
    if n < MIN_OBSERVATIONS:
        raise NotEnoughHistory(f"{n} observations, need at least {MIN_OBSERVATIONS}")
    h = max(horizon, 1)
    mean = Fraction(sum(daily), n)
    variance = sum((Fraction(x) - mean) ** 2 for x in daily) / (n - 1)
    sigma = math.sqrt(variance)
    tail = 1.0 - confidence
    z = NormalDist().inv_cdf(tail)
    scale = sigma * math.sqrt(h)
    var_pnl = h * float(mean) + z * scale
    es_pnl = h * float(mean) - scale * NormalDist().pdf(z) / tail
    return VarResult(value_at_risk=_loss(var_pnl), expected_shortfall=_loss(es_pnl), observations=n)
