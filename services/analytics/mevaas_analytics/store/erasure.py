"""What DeleteTenant erases of a tenant in the analytics schema and what it keeps."""

from __future__ import annotations

from mevaas_core.erasure import AUDIT_RETENTION, TRADE_RETENTION, Erase, ErasurePlan

# What DeleteTenant leaves of a tenant here (mevaas_core.erasure): the trade records, invoices and
# audit trail the retention policy requires; rebalance commands (wallets), backtests and caches go.
ERASURE = ErasurePlan(
    schema="analytics",
    erase=(
        Erase("rebalances"),
        Erase("backtests"),
        # Alerts about the tenant's wallets' pending swaps: no financial record, and they name wallets.
        Erase("threat_valuations"),
        Erase("threats"),
        # Market data belongs to the platform; a tenant has no rows there, so nothing goes.
        Erase("pool_reserves"),
        Erase("market_blocks"),
        Erase("idempotency_keys"),
        Erase("outbox", "published_at IS NOT NULL"),
    ),
    keep={
        "opportunities": TRADE_RETENTION,
        "decisions": TRADE_RETENTION,
        "execution_results": TRADE_RETENTION,
        "execution_valuations": TRADE_RETENTION,
        "protected_transactions": TRADE_RETENTION,
        "protection_snapshots": "billing: the leverage-protection fee's base, kept with the invoices",
        "session_events": TRADE_RETENTION,
        "breaches": TRADE_RETENTION,
        "kill_switch_changes": TRADE_RETENTION,
        "invoices": "invoice: kept for the financial records retention period",
        "audit_records": AUDIT_RETENTION,
        "tenant_versions": "tombstone: the tenant's status (deleted) and plan, so it stays refused; no personal data",
    },
)
