"""gRPC servicers: AnalyticsService and PortfolioService over the read model. Every query runs in
a `tenant_transaction`, so row-level security confines it to the caller's tenant."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics import store
from mevaas_analytics.domain import fees, reports
from mevaas_analytics.domain.compliance import RetentionSettings, SanctionsList
from mevaas_analytics.domain.valuation import Valuer
from mevaas_analytics.inspection import inspect_chain_block
from mevaas_chain.registry import ChainRegistry
from mevaas_core.auth import Role
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, require_tenant_scope, rpc
from mevaas_core.pagination import decode_page_token, encode_page_token
from mevaas_core.validation import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Validator

Ctx = Any
READERS = tuple(ALL_TENANT_ROLES)
COMPLIANCE = (Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
TRADERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
FINAL = {2, 3}  # ExecutionResultStatus INCLUDED, REVERTED: trades with on-chain PnL
PRESETS = {
    common_pb2.TIMEFRAME_PRESET_LAST_1_HOUR: timedelta(hours=1),
    common_pb2.TIMEFRAME_PRESET_LAST_24_HOURS: timedelta(days=1),
    common_pb2.TIMEFRAME_PRESET_LAST_7_DAYS: timedelta(days=7),
    common_pb2.TIMEFRAME_PRESET_LAST_30_DAYS: timedelta(days=30),
    common_pb2.TIMEFRAME_PRESET_LAST_90_DAYS: timedelta(days=90),
}
MAX_EXPORT_BYTES = 64 << 20


def ts(value: datetime | None) -> Timestamp:
    out = Timestamp()
    if value is not None:
        out.FromDatetime(value)
    return out


def timeframe_bounds(
    tf: common_pb2.Timeframe, field: str, validator: Validator, *, required: bool = True
) -> tuple[datetime | None, datetime | None]:
    kind = tf.WhichOneof("kind")
    now = datetime.now(UTC)
    if kind == "preset":
        if tf.preset == common_pb2.TIMEFRAME_PRESET_ALL_TIME:
            return None, None
        if tf.preset not in PRESETS:
            validator.fail(f"{field}.preset", "must be a known preset")
            return None, None
        return now - PRESETS[tf.preset], None
    if kind == "range":
        if not tf.range.HasField("start"):
            validator.fail(f"{field}.range.start", "is required")
            return None, None
        start = tf.range.start.ToDatetime(tzinfo=UTC)
        end = tf.range.end.ToDatetime(tzinfo=UTC) if tf.range.HasField("end") else None
        if end is not None and end <= start:
            validator.fail(f"{field}.range.end", "must be after start")
        return start, end
    if required:
        validator.fail(field, "is required")
    return None, None


def page_size(page: common_pb2.PageRequest, validator: Validator, field: str = "page.page_size") -> int:
    validator.check(0 <= page.page_size <= MAX_PAGE_SIZE, field, f"must be 0-{MAX_PAGE_SIZE}")
    return page.page_size or DEFAULT_PAGE_SIZE


def _keyset(token: str, field: str) -> tuple[datetime, str] | None:
    cursor = decode_page_token(token, 2, field)
    if cursor is None:
        return None
    try:
        return datetime.fromisoformat(str(cursor[0])), str(cursor[1])
    except ValueError:
        raise InvalidArgument(FieldViolation(field, "is not a page token issued by this API")) from None


def _opportunity_record(row: asyncpg.Record) -> analytics_pb2.OpportunityRecord:
    record = analytics_pb2.OpportunityRecord(status=row["status"])
    record.opportunity.ParseFromString(row["payload"])
    if row["reason_code"] is not None:
        record.reason_code = row["reason_code"]
        record.reason = row["reason"]
    if row["exec_payload"] is not None:
        result = events_pb2.ExecutionResult.FromString(row["exec_payload"])
        record.execution_id = result.execution_id
        record.tx_hashes.extend(result.tx_hashes)
        if result.status in FINAL:
            record.realized_profit = result.realized_profit or "0"
    record.updated_at.CopyFrom(ts(row["updated_at"]))
    return record


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(
        self,
        pool: asyncpg.Pool,
        valuer: Valuer,
        sanctions: SanctionsList,
        retention: RetentionSettings,
        *,
        tax_percent: Decimal = Decimal(0),
        chains: Callable[[], ChainRegistry] = ChainRegistry,
    ) -> None:
        self.pool = pool
        self.chains = chains
        self.valuer = valuer
        self.sanctions = sanctions
        self.retention = retention
        self.tax_percent = tax_percent

    # --- opportunities ----------------------------------------------------------------------

    def _opportunity_filter(
        self, request: analytics_pb2.ListOpportunitiesRequest, v: Validator
    ) -> store.OpportunityFilter:
        start = end = None
        if request.HasField("time_range"):
            start, end = timeframe_bounds(common_pb2.Timeframe(range=request.time_range), "time_range", v)
        min_profit = None
        if request.min_expected_profit:
            min_profit = v.integer_amount(
                request.min_expected_profit, "min_expected_profit", allow_negative=True
            )
        return store.OpportunityFilter(
            strategy_ids=(request.strategy_id,) if request.strategy_id else (),
            chain_ids=(request.chain_id,) if request.chain_id else (),
            statuses=(request.status,) if request.status else (),
            types=(request.type,) if request.type else (),
            start=start,
            end=end,
            min_expected_profit=min_profit,
        )

    @rpc(*READERS)
    async def ListOpportunities(
        self, request: analytics_pb2.ListOpportunitiesRequest, context: Ctx
    ) -> analytics_pb2.ListOpportunitiesResponse:
        tenant = require_tenant_scope()
        v = Validator()
        size = page_size(request.page, v)
        f = self._opportunity_filter(request, v)
        v.raise_if_any()
        after = _keyset(request.page.page_token, "page.page_token")
        async with tenant_transaction(self.pool, tenant) as conn:
            rows = await store.list_opportunities(conn, tenant, f, limit=size + 1, after=after)
        response = analytics_pb2.ListOpportunitiesResponse(
            opportunities=[_opportunity_record(r) for r in rows[:size]]
        )
        if len(rows) > size:
            last = rows[size - 1]
            response.page.next_page_token = encode_page_token(
                last["detected_at"].isoformat(), last["opportunity_id"]
            )
        return response

    # --- execution report -------------------------------------------------------------------

    async def _execution_report(
        self, tenant: str, request: analytics_pb2.GetExecutionReportRequest, v: Validator
    ) -> analytics_pb2.GetExecutionReportResponse:
        start, end = timeframe_bounds(request.timeframe, "timeframe", v)
        v.raise_if_any()
        f = store.OpportunityFilter(
            strategy_ids=(request.strategy_id,) if request.strategy_id else (),
            chain_ids=(request.chain_id,) if request.chain_id else (),
            start=start,
            end=end,
        )
        async with tenant_transaction(self.pool, tenant) as conn:
            rows = await store.list_opportunities(conn, tenant, f, limit=1_000_000)
        response = analytics_pb2.GetExecutionReportResponse(
            report=build_execution_report(rows, request.timeframe)
        )
        by_strategy: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            by_strategy[row["strategy_id"]].append(row)
        for strategy_id, strategy_rows in by_strategy.items():
            response.by_strategy[strategy_id].CopyFrom(
                build_execution_report(strategy_rows, request.timeframe)
            )
        return response

    @rpc(*READERS)
    async def GetExecutionReport(
        self, request: analytics_pb2.GetExecutionReportRequest, context: Ctx
    ) -> analytics_pb2.GetExecutionReportResponse:
        return await self._execution_report(require_tenant_scope(), request, Validator())

    # --- compliance -------------------------------------------------------------------------

    async def _compliance_report(
        self, tenant: str, request: analytics_pb2.GetComplianceReportRequest, v: Validator, *, all_pages: bool
    ) -> analytics_pb2.GetComplianceReportResponse:
        start, end = timeframe_bounds(request.timeframe, "timeframe", v)
        size = page_size(request.audit_page, v, "audit_page.page_size")
        v.raise_if_any()
        after = _keyset(request.audit_page.page_token, "audit_page.page_token")
        limit = 10_000_000 if all_pages else size + 1
        async with tenant_transaction(self.pool, tenant) as conn:
            audit = await store.audit_page(conn, tenant, start, end, limit=limit, after=after)
            decisions = await store.decisions(conn, tenant, start, end)
            breaches = await store.payloads_in(conn, "breaches", tenant, start, end)
            switches = await store.payloads_in(conn, "kill_switch_changes", tenant, start, end)
            opportunities = await store.list_opportunities(
                conn, tenant, store.OpportunityFilter(start=start, end=end), limit=1_000_000
            )
        report = analytics_pb2.ComplianceReport(
            timeframe=request.timeframe, generated_at=ts(datetime.now(UTC))
        )
        page = common_pb2.PageResponse()
        shown = audit if all_pages else audit[:size]
        for row in shown:
            report.audit_trail.add().ParseFromString(row["payload"])
        if not all_pages and len(audit) > size:
            page.next_page_token = encode_page_token(
                audit[size - 1]["occurred_at"].isoformat(), audit[size - 1]["event_id"]
            )
        summary = report.risk_decisions
        for row in decisions:
            name = events_pb2.RiskReasonCode.Name(row["reason_code"])
            summary.by_reason[name] = summary.by_reason[name] + 1
            if row["outcome"] == events_pb2.RISK_DECISION_OUTCOME_APPROVED:
                summary.approved += 1
            elif row["outcome"] == events_pb2.RISK_DECISION_OUTCOME_REJECTED:
                summary.rejected += 1
                if len(report.rejected_decisions) < 1000:
                    report.rejected_decisions.add().ParseFromString(row["payload"])
        for payload in breaches:
            report.breaches.add().ParseFromString(payload)
        for payload in switches:
            report.kill_switch_changes.add().ParseFromString(payload)
        for row in opportunities:
            opportunity = events_pb2.Opportunity.FromString(row["payload"])
            result = (
                events_pb2.ExecutionResult.FromString(row["exec_payload"]) if row["exec_payload"] else None
            )
            for hit in self.sanctions.screen(opportunity, result, status=row["status"]):
                report.sanctioned_counterparty_hits.append(hit)
        report.retention_policy.CopyFrom(self.retention.proto())
        return analytics_pb2.GetComplianceReportResponse(report=report, audit_page=page)

    @rpc(*COMPLIANCE)
    async def GetComplianceReport(
        self, request: analytics_pb2.GetComplianceReportRequest, context: Ctx
    ) -> analytics_pb2.GetComplianceReportResponse:
        return await self._compliance_report(require_tenant_scope(), request, Validator(), all_pages=False)

    # --- custom reports ---------------------------------------------------------------------

    async def _custom_report(
        self, tenant: str, template: analytics_pb2.ReportTemplate, v: Validator
    ) -> analytics_pb2.CustomReport:
        v.check(len(template.name) <= 128, "template.name", "must be at most 128 characters")
        metrics = list(template.metrics)
        v.check(1 <= len(metrics) <= 20, "template.metrics", "must name 1-20 metrics")
        v.check(len(set(metrics)) == len(metrics), "template.metrics", "must be distinct")
        v.check(0 not in metrics, "template.metrics", "must not contain UNSPECIFIED")
        dims = list(template.group_by)
        v.check(len(dims) <= 3, "template.group_by", "must name at most 3 dimensions")
        v.check(len(set(dims)) == len(dims), "template.group_by", "must be distinct")
        v.check(0 not in dims, "template.group_by", "must not contain UNSPECIFIED")
        start, end = timeframe_bounds(template.timeframe, "template.timeframe", v)
        v.raise_if_any()
        profit_metrics = {
            analytics_pb2.REPORT_METRIC_EXPECTED_PROFIT,
            analytics_pb2.REPORT_METRIC_REALIZED_PROFIT,
        }
        if profit_metrics & set(metrics) and analytics_pb2.REPORT_DIMENSION_TOKEN not in dims:
            dims.append(analytics_pb2.REPORT_DIMENSION_TOKEN)
        filters = template.filters
        f = store.OpportunityFilter(
            strategy_ids=tuple(filters.strategy_ids),
            chain_ids=tuple(filters.chain_ids),
            statuses=tuple(filters.statuses),
            types=tuple(filters.types),
            start=start,
            end=end,
        )
        async with tenant_transaction(self.pool, tenant) as conn:
            rows = await store.list_opportunities(conn, tenant, f, limit=1_000_000)
        groups: dict[tuple[str, ...], list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            groups[tuple(dimension_value(d, row) for d in dims)].append(row)
        report = analytics_pb2.CustomReport(
            template=template, dimensions=dims, metrics=metrics, generated_at=ts(datetime.now(UTC))
        )
        for key in sorted(groups):
            report.rows.add(
                dimension_values=key, metric_values=[metric_value(m, groups[key]) for m in metrics]
            )
        return report

    @rpc(*READERS)
    async def GetCustomReport(
        self, request: analytics_pb2.GetCustomReportRequest, context: Ctx
    ) -> analytics_pb2.GetCustomReportResponse:
        tenant = require_tenant_scope()
        v = Validator()
        size = page_size(request.page, v)
        report = await self._custom_report(tenant, request.template, v)
        cursor = decode_page_token(request.page.page_token, 1)
        offset = int(cursor[0]) if cursor else 0
        rows = list(report.rows)
        del report.rows[:]
        report.rows.extend(rows[offset : offset + size])
        response = analytics_pb2.GetCustomReportResponse(report=report)
        if offset + size < len(rows):
            response.page.next_page_token = encode_page_token(offset + size)
        return response

    # --- export -----------------------------------------------------------------------------

    @rpc(*READERS)
    async def ExportReport(
        self, request: analytics_pb2.ExportReportRequest, context: Ctx
    ) -> analytics_pb2.ExportReportResponse:
        tenant = require_tenant_scope()
        v = Validator()
        v.check(request.format != analytics_pb2.EXPORT_FORMAT_UNSPECIFIED, "format", "is required")
        kind = request.WhichOneof("report")
        v.check(kind is not None, "report", "exactly one report is required")
        if kind is None:
            v.raise_if_any()
        table: list[dict[str, Any]]
        if kind == "execution":
            response = await self._execution_report(tenant, request.execution, v)
            document: Any = MessageToDict(response, preserving_proto_field_name=True)
            table = [
                {"strategy_id": "", **_flat(MessageToDict(response.report, preserving_proto_field_name=True))}
            ]
            for strategy_id, report in sorted(response.by_strategy.items()):
                table.append(
                    {
                        "strategy_id": strategy_id,
                        **_flat(MessageToDict(report, preserving_proto_field_name=True)),
                    }
                )
        elif kind == "compliance":
            if not (
                {Role.OWNER, Role.ADMIN, Role.COMPLIANCE} & current_principal().roles
                or current_principal().is_platform_admin
            ):
                raise PermissionDenied("the compliance report needs the owner, admin or compliance role")
            compliance = await self._compliance_report(tenant, request.compliance, v, all_pages=True)
            document = MessageToDict(compliance.report, preserving_proto_field_name=True)
            table = [
                _flat(MessageToDict(r, preserving_proto_field_name=True))
                for r in compliance.report.audit_trail
            ]
        elif kind == "custom":
            custom = await self._custom_report(tenant, request.custom, v)
            document = MessageToDict(custom, preserving_proto_field_name=True)
            headers = [analytics_pb2.ReportDimension.Name(d) for d in custom.dimensions] + [
                analytics_pb2.ReportMetric.Name(m) for m in custom.metrics
            ]
            table = [
                dict(zip(headers, [*r.dimension_values, *r.metric_values], strict=True)) for r in custom.rows
            ]
        else:
            listing = request.opportunities
            f = self._opportunity_filter(listing, v)
            v.raise_if_any()
            async with tenant_transaction(self.pool, tenant) as conn:
                rows = await store.list_opportunities(conn, tenant, f, limit=10_000_000)
            records = [MessageToDict(_opportunity_record(r), preserving_proto_field_name=True) for r in rows]
            document = {"opportunities": records}
            table = [_flat(r) for r in records]
        v.raise_if_any()
        if request.format == analytics_pb2.EXPORT_FORMAT_JSON:
            content = json.dumps(document, sort_keys=True, indent=2).encode()
            content_type, extension = "application/json", "json"
        else:
            content = _csv(table)
            content_type, extension = "text/csv", "csv"
        if len(content) > MAX_EXPORT_BYTES:
            raise ResourceExhausted("the export exceeds 64 MiB; narrow the timeframe", 0)
        report_id = str(uuid.uuid4())
        return analytics_pb2.ExportReportResponse(
            report_id=report_id,
            content_type=content_type,
            filename=f"{kind}-report-{report_id[:8]}.{extension}",
            content=content,
            sha256=hashlib.sha256(content).hexdigest(),
        )

    # --- invoices ---------------------------------------------------------------------------

    async def _invoices(self, tenant: str) -> list[analytics_pb2.Invoice]:
        async with tenant_transaction(self.pool, tenant) as conn:
            plan_bytes = await store.current_plan(conn, tenant)
            results = await store.execution_results(conn, tenant, None, None)
            issued = {
                r["period_start"]: analytics_pb2.Invoice.FromString(r["payload"])
                for r in await conn.fetch(
                    "SELECT period_start, payload FROM analytics.invoices WHERE tenant_id = $1", tenant
                )
            }
            if plan_bytes is None:
                return sorted(issued.values(), key=lambda i: i.period.start.seconds, reverse=True)
            plan = common_pb2.Plan.FromString(plan_bytes)
            months = monthly_usage(results, self.valuer)
            now = datetime.now(UTC)
            current = datetime(now.year, now.month, 1, tzinfo=UTC)
            months.setdefault(current, MonthAccumulator())
            invoices: list[analytics_pb2.Invoice] = []
            ytd: dict[int, Decimal] = defaultdict(Decimal)
            for month in sorted(months):
                if month in issued:
                    invoice = issued[month]
                    ytd[month.year] += invoice_profit_base(invoice)
                    invoices.append(invoice)
                    continue
                acc = months[month]
                pricing = fees.Pricing.from_plan(plan)
                amounts = fees.compute_invoice(
                    pricing,
                    fees.MonthlyUsage(acc.profit, ytd[month.year], acc.protected, acc.executed),
                    tax_percent=self.tax_percent,
                )
                ytd[month.year] += amounts.profit_base
                invoice = invoice_proto(tenant, month, plan.name, amounts)
                if month < current:
                    # A closed month is issued once and frozen (a later plan change never rewrites it).
                    number = await conn.fetchval("SELECT nextval('analytics.invoice_numbers')")
                    invoice.status = analytics_pb2.INVOICE_STATUS_ISSUED
                    invoice.number = f"INV-{month.year}-{number:06d}"
                    invoice.issued_at.CopyFrom(ts(now))
                    invoice.due_at.CopyFrom(ts(now + timedelta(days=30)))
                    inserted = await conn.fetchval(
                        """INSERT INTO analytics.invoices (tenant_id, invoice_id, period_start, number, status,
                            issued_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)
                        ON CONFLICT (tenant_id, period_start) DO NOTHING RETURNING 1""",
                        tenant,
                        invoice.invoice_id,
                        month,
                        invoice.number,
                        invoice.status,
                        now,
                        invoice.SerializeToString(deterministic=True),
                    )
                    if inserted is None:
                        row = await conn.fetchval(
                            "SELECT payload FROM analytics.invoices WHERE tenant_id = $1 AND period_start = $2",
                            tenant,
                            month,
                        )
                        invoice = analytics_pb2.Invoice.FromString(row)
                invoices.append(invoice)
        return sorted(invoices, key=lambda i: i.period.start.seconds, reverse=True)

    @rpc(*COMPLIANCE)
    async def ListInvoices(
        self, request: analytics_pb2.ListInvoicesRequest, context: Ctx
    ) -> analytics_pb2.ListInvoicesResponse:
        tenant = require_tenant_scope()
        v = Validator()
        size = page_size(request.page, v)
        v.raise_if_any()
        cursor = decode_page_token(request.page.page_token, 1)
        offset = int(cursor[0]) if cursor else 0
        invoices = [
            i for i in await self._invoices(tenant) if not request.status or i.status == request.status
        ]
        response = analytics_pb2.ListInvoicesResponse(invoices=invoices[offset : offset + size])
        if offset + size < len(invoices):
            response.page.next_page_token = encode_page_token(offset + size)
        return response

    @rpc(*COMPLIANCE)
    async def GetInvoice(
        self, request: analytics_pb2.GetInvoiceRequest, context: Ctx
    ) -> analytics_pb2.GetInvoiceResponse:
        tenant = require_tenant_scope()
        v = Validator()
        v.required(request.invoice_id, "invoice_id")
        v.raise_if_any()
        for invoice in await self._invoices(tenant):
            if invoice.invoice_id == request.invoice_id:
                return analytics_pb2.GetInvoiceResponse(invoice=invoice)
        raise NotFound("invoice", request.invoice_id)

    @rpc(*READERS)
    async def InspectBlock(
        self, request: analytics_pb2.InspectBlockRequest, context: Ctx
    ) -> analytics_pb2.InspectBlockResponse:
        v = Validator()
        v.check(request.chain_id > 0, "chain_id", "is required")
        v.check(request.block_number > 0, "block_number", "is required")
        chain = next((c for c in self.chains() if c.chain_id == request.chain_id), None)
        if chain is None and request.chain_id > 0:
            v.fail("chain_id", f"chain {request.chain_id} is not configured")
        v.raise_if_any()
        assert chain is not None
        return await inspect_chain_block(chain.chain_id, chain.rpc_url, request.block_number)


def _flat(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def _csv(table: list[dict[str, Any]]) -> bytes:
    headers: list[str] = []
    for row in table:
        headers += [k for k in row if k not in headers]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=headers, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue().encode()


def build_execution_report(
    rows: list[asyncpg.Record], timeframe: common_pb2.Timeframe
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


def dimension_value(dimension: int, row: asyncpg.Record) -> str:
    if dimension == analytics_pb2.REPORT_DIMENSION_STRATEGY:
        return str(row["strategy_id"])
    if dimension == analytics_pb2.REPORT_DIMENSION_STRATEGY_TYPE:
        return common_pb2.StrategyType.Name(row["strategy_type"])
    if dimension == analytics_pb2.REPORT_DIMENSION_CHAIN:
        return str(row["chain_id"])
    if dimension == analytics_pb2.REPORT_DIMENSION_TOKEN:
        return str(row["profit_token"])
    if dimension == analytics_pb2.REPORT_DIMENSION_DEX:
        return str(row["dex"])
    if dimension == analytics_pb2.REPORT_DIMENSION_STATUS:
        return analytics_pb2.OpportunityStatus.Name(row["status"])
    detected: datetime = row["detected_at"].astimezone(UTC)
    if dimension == analytics_pb2.REPORT_DIMENSION_DAY:
        return detected.strftime("%Y-%m-%d")
    return detected.strftime("%Y-%m-%dT%H")


def metric_value(metric: int, rows: list[asyncpg.Record]) -> str:
    def count(status: int) -> int:
        return sum(1 for r in rows if r["status"] == status)

    S = analytics_pb2
    if metric == S.REPORT_METRIC_OPPORTUNITIES:
        return str(len(rows))
    if metric == S.REPORT_METRIC_SUBMITTED:
        return str(
            sum(
                1
                for r in rows
                if S.OPPORTUNITY_STATUS_SUBMITTED <= r["status"] <= S.OPPORTUNITY_STATUS_DROPPED
            )
        )
    if metric in (S.REPORT_METRIC_INCLUDED, S.REPORT_METRIC_REVERTED, S.REPORT_METRIC_DROPPED):
        status: dict[int, int] = {
            S.REPORT_METRIC_INCLUDED: S.OPPORTUNITY_STATUS_INCLUDED,
            S.REPORT_METRIC_REVERTED: S.OPPORTUNITY_STATUS_REVERTED,
            S.REPORT_METRIC_DROPPED: S.OPPORTUNITY_STATUS_DROPPED,
        }
        return str(count(status[metric]))
    if metric == S.REPORT_METRIC_INCLUSION_RATE:
        submitted = int(metric_value(S.REPORT_METRIC_SUBMITTED, rows))
        return str(Decimal(count(S.OPPORTUNITY_STATUS_INCLUDED)) / Decimal(submitted)) if submitted else "0"
    results = [
        events_pb2.ExecutionResult.FromString(r["exec_payload"])
        for r in rows
        if r["exec_payload"] is not None
    ]
    final = [r for r in results if r.status in FINAL]
    if metric == S.REPORT_METRIC_EXPECTED_PROFIT:
        return str(sum(int(r.expected_profit or 0) for r in final))
    if metric == S.REPORT_METRIC_REALIZED_PROFIT:
        return str(sum(int(r.realized_profit or 0) for r in final))
    if metric == S.REPORT_METRIC_GAS_COST:
        return str(sum(int(r.gas_cost or 0) for r in final))
    samples = []
    for r in results:
        stamps = r.timestamps
        if stamps.HasField("block_seen_at") and stamps.HasField("submitted_at"):
            samples.append(
                (stamps.submitted_at.ToDatetime() - stamps.block_seen_at.ToDatetime())
                / timedelta(milliseconds=1)
            )
    samples.sort()
    return str(reports.nearest_rank(samples, 50 if metric == S.REPORT_METRIC_LATENCY_P50 else 99))


class MonthAccumulator:
    def __init__(self) -> None:
        self.profit = Fraction(0)
        self.protected = 0
        self.executed = 0
        self.unpriced: set[str] = set()


def monthly_usage(results: list[asyncpg.Record], valuer: Valuer) -> dict[datetime, MonthAccumulator]:
    """Per UTC month: valued realised profit of final executions, protected submissions and
    executed strategy transactions (see domain.fees for the billing rules)."""
    months: dict[datetime, MonthAccumulator] = {}
    for row in results:
        at: datetime = row["occurred_at"].astimezone(UTC)
        acc = months.setdefault(datetime(at.year, at.month, 1, tzinfo=UTC), MonthAccumulator())
        status = row["status"]
        if status == 1 and row["private_submission"]:
            acc.protected += row["tx_count"]
        if status in FINAL:
            if not row["rebalance_id"]:
                acc.executed += row["tx_count"]
            if row["realized_profit"] is not None and row["profit_token"]:
                chain, _, address = row["profit_token"].partition(":")
                value = valuer.value(int(chain), address, int(row["realized_profit"]), row["profit_decimals"])
                if value is None:
                    acc.unpriced.add(row["profit_token"])
                else:
                    acc.profit += value
    return months


def invoice_profit_base(invoice: analytics_pb2.Invoice) -> Decimal:
    """The billed profit of an issued invoice (sum of its profit-based line quantities)."""
    kinds = (analytics_pb2.LINE_ITEM_KIND_PERFORMANCE_FEE, analytics_pb2.LINE_ITEM_KIND_REVENUE_SHARE)
    return sum(
        (Decimal(item.quantity.value) for item in invoice.line_items if item.kind in kinds), Decimal(0)
    )


def invoice_proto(
    tenant: str, month: datetime, plan_name: str, amounts: fees.InvoiceAmounts
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
    )
    invoice.period.start.CopyFrom(ts(month))
    invoice.period.end.CopyFrom(ts(following))
    return invoice
