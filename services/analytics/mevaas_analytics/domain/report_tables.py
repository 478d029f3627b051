"""Report tables built from the read model's rows: the execution report, custom-report dimensions
and metrics (one function per enum value), and flattening for CSV/JSON exports. Pure: rows in,
messages or values out."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from mevaas.analytics.v1 import analytics_pb2
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics.domain import reports


class Row(Protocol):
    """A read-model row (an asyncpg.Record), by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


S = analytics_pb2
# ExecutionResultStatus INCLUDED, REVERTED, FAILED: executions with on-chain PnL. A FAILED one
# counts when it touched the chain (a leg that landed alone, its unwind, gas paid): execution then
# sets its realized profit; one that never sent anything has none, and counts nowhere.
FINAL = {2, 3, 6}


def flat(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def to_csv(table: list[dict[str, Any]]) -> bytes:
    headers: list[str] = []
    for row in table:
        headers += [k for k in row if k not in headers]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=headers, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue().encode()


def build_execution_report(
    rows: Sequence[Row], timeframe: common_pb2.Timeframe
) -> analytics_pb2.ExecutionReport:
    """Counts by derived status, inclusion rate, profit per token, gas and hop latencies of the
    opportunities detected in the timeframe."""
    report = analytics_pb2.ExecutionReport(timeframe=timeframe, opportunities=len(rows))
    status_field = {
        analytics_pb2.OPPORTUNITY_STATUS_APPROVED: "approved",
        analytics_pb2.OPPORTUNITY_STATUS_REJECTED: "rejected",
        analytics_pb2.OPPORTUNITY_STATUS_SUBMITTED: "submitted",
        analytics_pb2.OPPORTUNITY_STATUS_INCLUDED: "included",
        analytics_pb2.OPPORTUNITY_STATUS_REVERTED: "reverted",
        analytics_pb2.OPPORTUNITY_STATUS_DROPPED: "dropped",
        analytics_pb2.OPPORTUNITY_STATUS_STALE: "stale",
        analytics_pb2.OPPORTUNITY_STATUS_FAILED: "failed",
    }
    submitted_ever = 0
    gas_used = gas_cost = 0
    profit: dict[str, list[int]] = {}
    tokens: dict[str, common_pb2.Token] = {}
    latencies: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        status = row["status"]
        if status in status_field:
            setattr(report, status_field[status], getattr(report, status_field[status]) + 1)
        if row["outcome"] == events_pb2.RISK_DECISION_OUTCOME_REJECTED:
            name = events_pb2.RiskReasonCode.Name(row["reason_code"])
            report.rejections_by_reason[name] = report.rejections_by_reason[name] + 1
        if (
            status >= analytics_pb2.OPPORTUNITY_STATUS_SUBMITTED
            and status <= analytics_pb2.OPPORTUNITY_STATUS_DROPPED
        ):
            submitted_ever += 1
        if row["exec_payload"] is None:
            continue
        result = events_pb2.ExecutionResult.FromString(row["exec_payload"])
        if result.status in FINAL:
            gas_used += result.gas_used
            gas_cost += int(result.gas_cost or 0)
            key = row["profit_token"]
            tokens.setdefault(key, result.profit_token)
            sums = profit.setdefault(key, [0, 0])
            sums[0] += int(result.expected_profit or row["expected_profit_net"])
            sums[1] += int(result.realized_profit or 0)
        stamps = {
            f.name: (
                getattr(result.timestamps, f.name).ToDatetime(tzinfo=UTC)
                if result.timestamps.HasField(f.name)  # type: ignore[arg-type]
                else None
            )
            for f in result.timestamps.DESCRIPTOR.fields
        }
        for hop, ms in reports.hop_latencies(stamps).items():
            latencies[hop].append(ms)
    # Included over everything that reached the chain or the builder (submitted, then final).
    report.inclusion_rate = report.included / submitted_ever if submitted_ever else 0.0
    report.gas_used = gas_used
    report.gas_cost_wei = str(gas_cost)
    for key in sorted(profit):
        report.profit.add(
            token=tokens[key], expected_profit=str(profit[key][0]), realized_profit=str(profit[key][1])
        )
    for summary in reports.latency_summaries(latencies):
        report.latency.add(
            hop=summary.hop,
            count=summary.count,
            p50_ms=summary.p50_ms,
            p90_ms=summary.p90_ms,
            p99_ms=summary.p99_ms,
            max_ms=summary.max_ms,
        )
    return report


def _detected(row: Row) -> datetime:
    detected: datetime = row["detected_at"].astimezone(UTC)
    return detected


DIMENSIONS: dict[int, Callable[[Row], str]] = {
    S.REPORT_DIMENSION_STRATEGY: lambda row: str(row["strategy_id"]),
    S.REPORT_DIMENSION_STRATEGY_TYPE: lambda row: common_pb2.StrategyType.Name(row["strategy_type"]),
    S.REPORT_DIMENSION_CHAIN: lambda row: str(row["chain_id"]),
    S.REPORT_DIMENSION_TOKEN: lambda row: str(row["profit_token"]),
    S.REPORT_DIMENSION_DEX: lambda row: str(row["dex"]),
    S.REPORT_DIMENSION_STATUS: lambda row: S.OpportunityStatus.Name(row["status"]),
    S.REPORT_DIMENSION_DAY: lambda row: _detected(row).strftime("%Y-%m-%d"),
    S.REPORT_DIMENSION_HOUR: lambda row: _detected(row).strftime("%Y-%m-%dT%H"),
}


def dimension_value(dimension: int, row: Row) -> str:
    return DIMENSIONS[dimension](row)


def _count(status: int) -> Callable[[Sequence[Row]], str]:
    return lambda rows: str(sum(1 for r in rows if r["status"] == status))


def _submitted(rows: Sequence[Row]) -> int:
    return sum(
        1 for r in rows if S.OPPORTUNITY_STATUS_SUBMITTED <= r["status"] <= S.OPPORTUNITY_STATUS_DROPPED
    )


def _inclusion_rate(rows: Sequence[Row]) -> str:
    submitted = _submitted(rows)
    included = sum(1 for r in rows if r["status"] == S.OPPORTUNITY_STATUS_INCLUDED)
    return str(Decimal(included) / Decimal(submitted)) if submitted else "0"


def _results(rows: Sequence[Row]) -> list[events_pb2.ExecutionResult]:
    return [
        events_pb2.ExecutionResult.FromString(r["exec_payload"])
        for r in rows
        if r["exec_payload"] is not None
    ]


def _final_sum(field: str) -> Callable[[Sequence[Row]], str]:
    def total(rows: Sequence[Row]) -> str:
        return str(sum(int(getattr(r, field) or 0) for r in _results(rows) if r.status in FINAL))

    return total


def _latency(percentile: int) -> Callable[[Sequence[Row]], str]:
    def value(rows: Sequence[Row]) -> str:
        samples = []
        for r in _results(rows):
            stamps = r.timestamps
            if stamps.HasField("block_seen_at") and stamps.HasField("submitted_at"):
                samples.append(
                    (stamps.submitted_at.ToDatetime() - stamps.block_seen_at.ToDatetime())
                    / timedelta(milliseconds=1)
                )
        samples.sort()
        return str(reports.nearest_rank(samples, percentile))

    return value


METRICS: dict[int, Callable[[Sequence[Row]], str]] = {
    S.REPORT_METRIC_OPPORTUNITIES: lambda rows: str(len(rows)),
    S.REPORT_METRIC_SUBMITTED: lambda rows: str(_submitted(rows)),
    S.REPORT_METRIC_INCLUDED: _count(S.OPPORTUNITY_STATUS_INCLUDED),
    S.REPORT_METRIC_REVERTED: _count(S.OPPORTUNITY_STATUS_REVERTED),
    S.REPORT_METRIC_DROPPED: _count(S.OPPORTUNITY_STATUS_DROPPED),
    S.REPORT_METRIC_INCLUSION_RATE: _inclusion_rate,
    S.REPORT_METRIC_EXPECTED_PROFIT: _final_sum("expected_profit"),
    S.REPORT_METRIC_REALIZED_PROFIT: _final_sum("realized_profit"),
    S.REPORT_METRIC_GAS_COST: _final_sum("gas_cost"),
    S.REPORT_METRIC_LATENCY_P50: _latency(50),
    S.REPORT_METRIC_LATENCY_P99: _latency(99),
}


def metric_value(metric: int, rows: Sequence[Row]) -> str:
    return METRICS[metric](rows)
