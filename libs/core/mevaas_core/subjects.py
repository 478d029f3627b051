"""Request/reply subjects between services (core NATS, queue groups), each named once here with
the service that serves it, so a caller never imports the serving service's package.

Event subjects (JetStream) are documented in events.v1; these are the synchronous ones.
"""

from __future__ import annotations

# Served by strategy: strategy.v1.GetStrategyRequest -> GetStrategyResponse (tenant from header).
STRATEGY_GET = "strategy.rpc.get_strategy"

# Served by analytics (queue group ``analytics-backtests``), called by StrategyService.
BACKTEST_RUN = "analytics.rpc.backtest"
BACKTEST_GET = "analytics.rpc.backtest.get"
BACKTEST_COMPARE = "analytics.rpc.backtest.compare"
BACKTEST_LIST = "analytics.rpc.backtest.list"

# Served by risk: common.v1.WithdrawalAllowlistRequest -> WithdrawalAllowlistResponse (tenant from
# header), called by execution's Withdraw. Under rpc.<service>, not risk.>: the RISK stream
# captures risk.> and would answer a request with its publish acknowledgement.
RISK_WITHDRAWAL_ALLOWLIST = "rpc.risk.withdrawal_allowlist"

# Served by execution (queue group ``execution-treasury-holdings``): execution.v1.
# TreasuryHoldingsRequest -> TreasuryHoldingsResponse (tenant from header), the tenant's wallet and
# executor balances read from the chain; called by analytics' PortfolioService.GetPositions.
EXECUTION_TREASURY_HOLDINGS = "rpc.execution.treasury_holdings"

# Served by tenancy (queue group ``tenancy-onboarding``): common.v1.OnboardingStateRequest ->
# OnboardingStateResponse (tenant from header), the tenant's onboarding phase and status; called
# by execution before a live session or a rebalance (mevaas_core.tenant_phase caches the answer).
TENANCY_ONBOARDING_STATE = "rpc.tenancy.onboarding_state"

# Served by the platform's execution (queue group ``execution-tenant-keys``): execution.v1.
# TenantDataKeyRequest -> TenantDataKeyResponse (tenant from header), the tenant's data key sealed
# to the request's one-time key; requested by the operator only, which writes it into the dedicated
# tenant's Secret. Not under rpc.execution.>, which strategy and analytics may request.
KEYS_TENANT_DATA_KEY = "rpc.keys.tenant_data_key"


def tenant_data_key_context(tenant_id: str, key_id: str) -> bytes:
    """What a KEYS_TENANT_DATA_KEY answer is sealed to (mevaas_core.sealed): the tenant and key."""
    return f"tenant-data-key|{tenant_id}|{key_id}".encode()
