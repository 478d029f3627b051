"""gRPC servicers: AnalyticsService and PortfolioService over the read model. Every query runs in
a `tenant_transaction`, so row-level security confines it to the caller's tenant."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from mevaas.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from mevaas.common.v1 import common_pb2
from mevaas.events.v1 import events_pb2
from mevaas_analytics import store
from mevaas_analytics.billing.invoices import Invoicing
from mevaas_analytics.domain.compliance import RetentionSettings, SanctionsList, ingress_hits
from mevaas_analytics.domain.report_tables import (
    DIMENSIONS,
    FINAL,
    METRICS,
    build_execution_report,
    dimension_value,
    flat,
    metric_value,
    to_csv,
)
from mevaas_analytics.domain.threats import threat_report
from mevaas_analytics.inspection import inspect_chain_block
from mevaas_analytics.store import protected
from mevaas_analytics.store import threats as threat_store
from mevaas_chain.pricing import PriceSource, PricingContext, TokenInfo
from mevaas_chain.registry import ChainRegistry
from mevaas_core.auth import Role
from mevaas_core.db import tenant_transaction
from mevaas_core.errors import (
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from mevaas_core.grpckit import ALL_TENANT_ROLES, current_principal, require_tenant_scope, rpc
from mevaas_core.pagination import keyset_page, offset_page, page_after
from mevaas_core.validation import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Validator

Ctx = Any
READERS = tuple(ALL_TENANT_ROLES)
COMPLIANCE = (Role.OWNER, Role.ADMIN, Role.COMPLIANCE)
TRADERS = (Role.OWNER, Role.ADMIN, Role.TRADER)
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
        if result.status in FINAL and result.realized_profit:
            record.realized_profit = result.realized_profit
    record.updated_at.CopyFrom(ts(row["updated_at"]))
    return record


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(
        self,
        pool: asyncpg.Pool,
        prices: PriceSource,
        sanctions: SanctionsList,
        retention: RetentionSettings,
        *,
        tax_percent: Decimal = Decimal(0),
        chains: Callable[[], ChainRegistry] = ChainRegistry,
    ) -> None:
        self.pool = pool
        self.chains = chains
        self.invoicing = Invoicing(pool, prices, tax_percent=tax_percent, tokens=self.tokens)
        self.sanctions = sanctions
        self.retention = retention
        self.tax_percent = tax_percent

    def tokens(self) -> dict[tuple[int, str], TokenInfo]:
        """Symbols and decimals of the chain registry's tokens (read per call, as the registry)."""
        return PricingContext(self.chains()).token_infos()

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
        after = page_after(request.page.page_token)
        async with tenant_transaction(self.pool, tenant) as conn:
            rows = await store.list_opportunities(conn, tenant, f, limit=size + 1, after=after)
        page, token = keyset_page(rows, size, "detected_at", "opportunity_id")
        response = analytics_pb2.ListOpportunitiesResponse(
            opportunities=[_opportunity_record(r) for r in page]
        )
        if token:
            response.page.next_page_token = token
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
            threat_rows, threat_values = await threat_store.threats_in(
                conn, tenant, start, end, request.chain_id or None
            )
        threats, threat_totals = threat_report(threat_rows, threat_values, self.tokens())
        response = analytics_pb2.GetExecutionReportResponse(
            report=build_execution_report(rows, request.timeframe),
            threats=threats,
            threat_totals=threat_totals,
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
        after = page_after(request.audit_page.page_token, field="audit_page.page_token")
        limit = 10_000_000 if all_pages else size + 1
        async with tenant_transaction(self.pool, tenant) as conn:
            audit = await store.audit_page(conn, tenant, start, end, limit=limit, after=after)
            decisions = await store.decisions(conn, tenant, start, end)
            breaches = await store.payloads_in(conn, "breaches", tenant, start, end)
            switches = await store.payloads_in(conn, "kill_switch_changes", tenant, start, end)
            opportunities = await store.list_opportunities(
                conn, tenant, store.OpportunityFilter(start=start, end=end), limit=1_000_000
            )
            protected_rows = await protected.protected_in(conn, tenant, start, end)
        report = analytics_pb2.ComplianceReport(
            timeframe=request.timeframe, generated_at=ts(datetime.now(UTC))
        )
        shown, token = (audit, "") if all_pages else keyset_page(audit, size, "occurred_at", "event_id")
        page = common_pb2.PageResponse(next_page_token=token)
        for row in shown:
            report.audit_trail.add().ParseFromString(row["payload"])
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
        report.sanctioned_counterparty_hits.extend(ingress_hits(protected_rows))
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
        v.check(all(m in METRICS for m in metrics), "template.metrics", "must be known metrics")
        dims = list(template.group_by)
        v.check(len(dims) <= 3, "template.group_by", "must name at most 3 dimensions")
        v.check(len(set(dims)) == len(dims), "template.group_by", "must be distinct")
        v.check(all(d in DIMENSIONS for d in dims), "template.group_by", "must be known dimensions")
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
        rows, token = offset_page(list(report.rows), request.page.page_token, size)
        del report.rows[:]
        report.rows.extend(rows)
        response = analytics_pb2.GetCustomReportResponse(report=report)
        if token:
            response.page.next_page_token = token
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
                {"strategy_id": "", **flat(MessageToDict(response.report, preserving_proto_field_name=True))}
            ]
            for strategy_id, report in sorted(response.by_strategy.items()):
                table.append(
                    {
                        "strategy_id": strategy_id,
                        **flat(MessageToDict(report, preserving_proto_field_name=True)),
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
                flat(MessageToDict(r, preserving_proto_field_name=True))
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
            table = [flat(r) for r in records]
        v.raise_if_any()
        if request.format == analytics_pb2.EXPORT_FORMAT_JSON:
            content = json.dumps(document, sort_keys=True, indent=2).encode()
            content_type, extension = "application/json", "json"
        else:
            content = to_csv(table)
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

    @rpc(*COMPLIANCE)
    async def ListInvoices(
        self, request: analytics_pb2.ListInvoicesRequest, context: Ctx
    ) -> analytics_pb2.ListInvoicesResponse:
        tenant = require_tenant_scope()
        v = Validator()
        size = page_size(request.page, v)
        v.raise_if_any()
        invoices = [
            i
            for i in await self.invoicing.invoices(tenant)
            if not request.status or i.status == request.status
        ]
        page, token = offset_page(invoices, request.page.page_token, size)
        response = analytics_pb2.ListInvoicesResponse(invoices=page)
        if token:
            response.page.next_page_token = token
        return response

    @rpc(*COMPLIANCE)
    async def GetInvoice(
        self, request: analytics_pb2.GetInvoiceRequest, context: Ctx
    ) -> analytics_pb2.GetInvoiceResponse:
        tenant = require_tenant_scope()
        v = Validator()
        v.required(request.invoice_id, "invoice_id")
        v.raise_if_any()
        for invoice in await self.invoicing.invoices(tenant):
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
