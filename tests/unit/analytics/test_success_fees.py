"""Success fees (alpha, Sharpe improvement, benchmark outperformance, success bonus) and unpriced
profit lines, against hand-computed figures.

Benchmark of every test: capital 365000 USD, benchmark 10 % a year (100 USD a day), risk-free
3.65 % a year (36.50 USD a day). Four days of priced profit 300, 100, 0, 200 (sum 600)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas_analytics.domain import success_fees
from mevaas_analytics.domain.fees import MonthlyUsage, Pricing, UnpricedProfit, compute_invoice, to_proto_line

D = Decimal
S = common_pb2
SUCCESS = analytics_pb2.LINE_ITEM_KIND_SUCCESS_FEE
DAILY = (Fraction(300), Fraction(100), Fraction(0), Fraction(200))


def usd(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", amount=amount)


def plan(*fees: tuple[int, str], performance: str = "0", sharpe: str = "0") -> Pricing:
    return Pricing.from_plan(
        common_pb2.Plan(
            name="hybrid",
            monthly_base_fee=usd("50000.00"),
            performance_fee_percent=common_pb2.Decimal(value=performance),
            success_fees=[S.SuccessFee(kind=k, fee_percent=S.Decimal(value=p)) for k, p in fees],  # type: ignore[arg-type]
            benchmark=S.Benchmark(
                capital=usd("365000"),
                annual_return_percent=S.Decimal(value="10"),
                risk_free_annual_percent=S.Decimal(value="3.65"),
                sharpe_ratio=S.Decimal(value=sharpe),
            ),
        )
    )


def month(daily: tuple[Fraction, ...] = DAILY, unpriced: tuple[UnpricedProfit, ...] = ()) -> MonthlyUsage:
    return MonthlyUsage(sum(daily, Fraction(0)), D(0), 0, 0, unpriced=unpriced, daily_profit=daily)


def success_lines(pricing: Pricing, usage: MonthlyUsage) -> list[tuple[int, Decimal, Decimal | None]]:
    invoice = compute_invoice(pricing, usage)
    return [(li.success_fee_kind, li.quantity, li.amount) for li in invoice.line_items if li.kind == SUCCESS]


def test_benchmark_outperformance() -> None:
    # 600 - 4 * 100 = 200; 25 % = 50.00
    assert success_lines(plan((S.SUCCESS_FEE_KIND_BENCHMARK_OUTPERFORMANCE, "25")), month()) == [
        (S.SUCCESS_FEE_KIND_BENCHMARK_OUTPERFORMANCE, D("200.00"), D("50.00"))
    ]


def test_alpha_against_a_constant_benchmark_is_profit_over_risk_free() -> None:
    # beta = 0 (no benchmark variance): 600 - 4 * 36.50 = 454; 20 % = 90.80
    assert success_lines(plan((S.SUCCESS_FEE_KIND_ALPHA, "20")), month()) == [
        (S.SUCCESS_FEE_KIND_ALPHA, D("454.00"), D("90.80"))
    ]


def test_alpha_removes_the_benchmark_exposure() -> None:
    # pnl 12, 20, 31 vs benchmark 1, 2, 3: cov = 9 + 0 + 10 = 19, var = 2, beta = 9.5;
    # alpha = 63 - 9.5 * 6 = 6
    daily = [Fraction(12), Fraction(20), Fraction(31)]
    assert success_fees.alpha(daily, [Fraction(1), Fraction(2), Fraction(3)], Fraction(0)) == 6
    # Profit that is exactly 10x the benchmark has no alpha.
    assert (
        success_fees.alpha(
            [Fraction(10), Fraction(20), Fraction(30)], [Fraction(b) for b in (1, 2, 3)], Fraction(0)
        )
        == 0
    )


def test_sharpe_improvement() -> None:
    # Excess 263.5, 63.5, -36.5, 163.5: mean 113.5, population variance 12500, sigma 111.8034;
    # benchmark Sharpe 1 a year = 1/sqrt(365) a day: 454 - 4 * sigma / sqrt(365) = 430.5918 -> 430.59;
    # 15 % = 64.5885 -> 64.59
    assert success_lines(plan((S.SUCCESS_FEE_KIND_SHARPE_IMPROVEMENT, "15"), sharpe="1"), month()) == [
        (S.SUCCESS_FEE_KIND_SHARPE_IMPROVEMENT, D("430.59"), D("64.59"))
    ]


def test_base_plus_performance_with_success_bonus() -> None:
    # Performance fee 10 % of 600 = 60; kept outperformance 200 - 60 = 140; bonus 25 % = 35.00.
    invoice = compute_invoice(plan((S.SUCCESS_FEE_KIND_SUCCESS_BONUS, "25"), performance="10"), month())
    assert [(li.kind, li.quantity, li.amount) for li in invoice.line_items] == [
        (analytics_pb2.LINE_ITEM_KIND_BASE_FEE, D(1), D("50000.00")),
        (analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE, D("600.00"), D("60.00")),
        (SUCCESS, D("140.00"), D("35.00")),
    ]
    assert invoice.total == D("50095.00")


def test_no_success_fee_on_underperformance() -> None:
    # 4 days of 50: 200 - 400 < 0 -> no outperformance line; alpha 200 - 146 = 54 is billed.
    lines = success_lines(
        plan((S.SUCCESS_FEE_KIND_BENCHMARK_OUTPERFORMANCE, "25"), (S.SUCCESS_FEE_KIND_ALPHA, "20")),
        month((Fraction(50),) * 4),
    )
    assert lines == [(S.SUCCESS_FEE_KIND_ALPHA, D("54.00"), D("10.80"))]


def test_unpriced_profit_is_a_flagged_line_never_zero() -> None:
    token = common_pb2.Token(chain_id=31337, address="0x" + "ab" * 20, symbol="ORPH", decimals=18)
    invoice = compute_invoice(
        plan(performance="20"), month(unpriced=(UnpricedProfit(token, 1_500_000_000_000_000_000),))
    )
    unpriced = invoice.line_items[-1]
    assert (unpriced.kind, unpriced.quantity, unpriced.amount) == (
        analytics_pb2.LINE_ITEM_KIND_UNPRICED_PROFIT,
        D("1.5"),
        None,
    )
    # The performance fee is on the priced 600 only; the unpriced line adds nothing to the total.
    assert invoice.total == D("50000.00") + D("120.00")
    item = to_proto_line(unpriced, "USD")
    assert item.unpriced and item.token == token and item.token_amount == "1500000000000000000"
    assert not item.HasField("amount")
