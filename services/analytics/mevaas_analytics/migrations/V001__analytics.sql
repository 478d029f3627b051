-- Analytics read model: one append-only table per event family, each unique on its business key
-- so redeliveries are no-ops (INSERT ... ON CONFLICT DO NOTHING). Derived state (an opportunity's
-- status, positions, PnL) is computed at query time from these rows, so ingest order does not
-- matter and several messages can be written per transaction.

CREATE TABLE analytics.opportunities (
    tenant_id            text        NOT NULL,
    opportunity_id       text        NOT NULL,
    event_id             text        NOT NULL,
    strategy_id          text        NOT NULL,
    strategy_type        integer     NOT NULL,
    chain_id             bigint      NOT NULL,
    dex                  text        NOT NULL,
    profit_token         text        NOT NULL,  -- "<chain_id>:<lower address>"
    expected_profit      numeric(78, 0) NOT NULL,
    expected_profit_net  numeric(78, 0) NOT NULL,
    detected_block       bigint      NOT NULL,
    detected_at          timestamptz NOT NULL,
    payload              bytea       NOT NULL,  -- events.v1.Opportunity
    PRIMARY KEY (tenant_id, opportunity_id)
);
CREATE INDEX opportunities_by_time ON analytics.opportunities (tenant_id, detected_at DESC, opportunity_id DESC);

CREATE TABLE analytics.decisions (
    tenant_id       text        NOT NULL,
    opportunity_id  text        NOT NULL,
    event_id        text        NOT NULL,
    strategy_id     text        NOT NULL,
    outcome         integer     NOT NULL,
    reason_code     integer     NOT NULL,
    reason          text        NOT NULL,
    decided_at      timestamptz NOT NULL,
    payload         bytea       NOT NULL,  -- events.v1.RiskDecision
    PRIMARY KEY (tenant_id, opportunity_id)
);
CREATE INDEX decisions_by_time ON analytics.decisions (tenant_id, decided_at);

CREATE TABLE analytics.execution_results (
    tenant_id           text        NOT NULL,
    execution_id        text        NOT NULL,
    status              integer     NOT NULL,
    event_id            text        NOT NULL,
    opportunity_id      text        NOT NULL,
    strategy_id         text        NOT NULL,
    session_id          text        NOT NULL,
    chain_id            bigint      NOT NULL,
    wallet_address      text        NOT NULL,
    tx_count            integer     NOT NULL,
    private_submission  boolean     NOT NULL,
    block_number        bigint      NOT NULL,
    gas_used            numeric(78, 0) NOT NULL,
    gas_cost            numeric(78, 0) NOT NULL,
    realized_profit     numeric(78, 0),
    expected_profit     numeric(78, 0),
    profit_token        text        NOT NULL,
    profit_decimals     integer     NOT NULL,
    rebalance_id        text        NOT NULL,
    occurred_at         timestamptz NOT NULL,
    payload             bytea       NOT NULL,  -- events.v1.ExecutionResult
    PRIMARY KEY (tenant_id, execution_id, status)
);
CREATE INDEX execution_results_by_time ON analytics.execution_results (tenant_id, occurred_at);
CREATE INDEX execution_results_by_opportunity ON analytics.execution_results (tenant_id, opportunity_id);

CREATE TABLE analytics.session_events (
    tenant_id    text        NOT NULL,
    session_id   text        NOT NULL,
    sequence     bigint      NOT NULL,
    state        integer     NOT NULL,
    strategy_id  text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    PRIMARY KEY (tenant_id, session_id, sequence)
);

CREATE TABLE analytics.breaches (
    tenant_id    text        NOT NULL,
    breach_id    text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      bytea       NOT NULL,  -- events.v1.RiskBreach
    PRIMARY KEY (tenant_id, breach_id)
);

CREATE TABLE analytics.kill_switch_changes (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    engaged      boolean     NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);

-- Append-only copy of every AuditRecord (never updated or deleted).
CREATE TABLE analytics.audit_records (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX audit_by_time ON analytics.audit_records (tenant_id, occurred_at, event_id);

-- Tenant snapshots; the highest version is the tenant's current plan.
CREATE TABLE analytics.tenant_versions (
    tenant_id    text        NOT NULL,
    version      bigint      NOT NULL,
    kind         integer     NOT NULL,
    occurred_at  timestamptz NOT NULL,
    plan         bytea       NOT NULL,  -- common.v1.Plan
    payload      bytea       NOT NULL,  -- events.v1.TenantEvent
    PRIMARY KEY (tenant_id, version)
);

-- Market data (tenant_id '_platform'): latest reserves per pool, for valuation.
CREATE TABLE analytics.pool_reserves (
    tenant_id     text        NOT NULL DEFAULT '_platform',
    chain_id      bigint      NOT NULL,
    address       text        NOT NULL,
    dex           text        NOT NULL,
    token0        text        NOT NULL,
    token1        text        NOT NULL,
    reserve0      numeric(78, 0) NOT NULL,
    reserve1      numeric(78, 0) NOT NULL,
    fee_bps       integer     NOT NULL,
    block_number  bigint      NOT NULL,
    PRIMARY KEY (chain_id, address)
);

CREATE TABLE analytics.market_blocks (
    tenant_id     text        NOT NULL DEFAULT '_platform',
    chain_id      bigint      NOT NULL,
    block_hash    text        NOT NULL,
    block_number  bigint      NOT NULL,
    block_time    timestamptz NOT NULL,
    pool_count    integer     NOT NULL,
    PRIMARY KEY (chain_id, block_hash)
);

CREATE TABLE analytics.invoices (
    tenant_id     text        NOT NULL,
    invoice_id    text        NOT NULL UNIQUE,
    period_start  timestamptz NOT NULL,
    number        text        NOT NULL UNIQUE,
    status        integer     NOT NULL,
    issued_at     timestamptz,
    payload       bytea       NOT NULL,  -- analytics.v1.Invoice
    PRIMARY KEY (tenant_id, period_start)
);
CREATE SEQUENCE analytics.invoice_numbers;

CREATE TABLE analytics.rebalances (
    tenant_id     text        NOT NULL,
    rebalance_id  text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    payload       bytea       NOT NULL,  -- portfolio.v1.RebalanceResult
    PRIMARY KEY (tenant_id, rebalance_id)
);

CREATE TABLE analytics.idempotency_keys (
    tenant_id     text        NOT NULL,
    method        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, method, key)
);

CREATE TABLE analytics.outbox (
    id            bigserial   PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE,
    tenant_id     text        NOT NULL,
    subject       text        NOT NULL,
    message_type  text        NOT NULL,
    payload       bytea       NOT NULL,
    traceparent   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_pending ON analytics.outbox (id) WHERE published_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['opportunities', 'decisions', 'execution_results', 'session_events', 'breaches',
                             'kill_switch_changes', 'audit_records', 'tenant_versions', 'pool_reserves',
                             'market_blocks', 'invoices', 'rebalances', 'idempotency_keys', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE analytics.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE analytics.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON analytics.%I USING ('
            'tenant_id = current_setting(''app.tenant_id'', true) '
            'OR tenant_id = ''_platform'' '
            'OR current_setting(''app.scope'', true) = ''platform'')', t);
    END LOOP;
END $$;
