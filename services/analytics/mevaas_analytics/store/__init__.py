"""SQL of the analytics schema: the rows each event becomes (`ingest`, written by
`events.BatchWriter`), the read queries of the reports (`reports`), and what erasure keeps. One
namespace for callers (``store.<name>``); the parts stay small."""

from __future__ import annotations

from mevaas_analytics.store.common import PLATFORM, SCHEMA, Statement, token_key, when
from mevaas_analytics.store.erasure import ERASURE
from mevaas_analytics.store.ingest import (
    audit_rows,
    breach_rows,
    decision_rows,
    execution_rows,
    kill_switch_rows,
    market_rows,
    opportunity_rows,
    rebalance_status_rows,
    session_rows,
    tenant_rows,
)
from mevaas_analytics.store.reports import (
    OpportunityFilter,
    audit_page,
    current_plan,
    decisions,
    execution_results,
    get_backtest,
    insert_backtest,
    list_backtests,
    list_opportunities,
    live_executions,
    payloads_in,
    pool_reserves,
    realized_pnl_by_holding,
    rebalance,
)

__all__ = [
    "ERASURE",
    "PLATFORM",
    "SCHEMA",
    "OpportunityFilter",
    "Statement",
    "audit_page",
    "audit_rows",
    "breach_rows",
    "current_plan",
    "decision_rows",
    "decisions",
    "execution_results",
    "execution_rows",
    "get_backtest",
    "insert_backtest",
    "kill_switch_rows",
    "list_backtests",
    "list_opportunities",
    "live_executions",
    "market_rows",
    "opportunity_rows",
    "payloads_in",
    "pool_reserves",
    "realized_pnl_by_holding",
    "rebalance",
    "rebalance_status_rows",
    "session_rows",
    "tenant_rows",
    "token_key",
    "when",
]
