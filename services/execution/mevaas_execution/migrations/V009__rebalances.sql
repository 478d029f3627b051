-- Rebalances (PortfolioService.Rebalance's RebalanceCommand on exec.<tenant>.rebalance), executed
-- here: one row per rebalance id (a redelivered command inserts nothing), its state in the table
-- of allowed transitions (rebalancing/domain/states.py), the planned trades, the executions of
-- the trades done so far and the reason of a failure.
CREATE TABLE execution.rebalances (
    tenant_id        text        NOT NULL,
    rebalance_id     text        NOT NULL,
    state            text        NOT NULL,
    wallet_address   text        NOT NULL,
    -- events.v1.RebalanceCommand, serialized (targets, max slippage, actor)
    command          bytea       NOT NULL,
    -- events.v1.RebalanceTradeAction per planned trade, serialized, in execution order
    trades           bytea[]     NOT NULL DEFAULT '{}',
    -- portfolio.v1-shaped summary of each trade (events.v1.RebalanceTrade), serialized
    trade_summaries  bytea[]     NOT NULL DEFAULT '{}',
    -- index of the trade being executed (= number of trades done)
    current_trade    integer     NOT NULL DEFAULT 0,
    -- the chain's block after which the current trade can no longer be decided
    trade_deadline   bigint      NOT NULL DEFAULT 0,
    execution_ids    text[]      NOT NULL DEFAULT '{}',
    reason           text        NOT NULL DEFAULT '',
    -- +1 per change; the status event's order
    sequence         bigint      NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, rebalance_id),
    CHECK (state IN ('submitted', 'planning', 'executing', 'completed', 'failed'))
);
CREATE INDEX rebalances_active ON execution.rebalances (state) WHERE state IN ('submitted', 'planning', 'executing');
CREATE INDEX rebalances_by_tenant ON execution.rebalances (tenant_id, created_at DESC, rebalance_id DESC);
ALTER TABLE execution.rebalances ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.rebalances FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.rebalances
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON execution.rebalances TO execution_platform USING (true);

-- A trade of a rebalance is an execution owned by the rebalance, not by a session.
ALTER TABLE execution.executions ADD COLUMN rebalance_id text NOT NULL DEFAULT '';
