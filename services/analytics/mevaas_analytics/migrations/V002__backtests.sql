-- Backtests run for the strategy service (see mevaas_analytics.backtests): the finished
-- strategy.v1.Backtest, and every simulated execution for the backtest-vs-live comparison.
CREATE TABLE analytics.backtests (
    tenant_id    text        NOT NULL,
    backtest_id  text        NOT NULL,
    strategy_id  text        NOT NULL,
    chain_id     bigint      NOT NULL,
    from_block   bigint      NOT NULL,
    to_block     bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    payload      bytea       NOT NULL,  -- strategy.v1.Backtest
    -- [{"detected_block", "block", "pools", "amount_in", "expected_profit", "net_profit", "time"}]
    executions   jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, backtest_id)
);

ALTER TABLE analytics.backtests ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.backtests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics.backtests USING (
    tenant_id = current_setting('app.tenant_id', true)
    OR current_setting('app.scope', true) = 'platform');
