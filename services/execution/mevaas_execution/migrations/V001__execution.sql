-- Execution's own schema: wallets (encrypted keys), executor contracts, sessions, executions
-- (one row per decided opportunity: the exactly-once intent), protected transactions, kill
-- switches, idempotency, outbox. Every table carries tenant_id under row-level security.

-- Private keys exist here only as AES-256-GCM ciphertext under a per-wallet data key, itself
-- wrapped by a KEK from settings (mevaas_chain.keystore); kek_id names the KEK.
CREATE TABLE execution.wallets (
    wallet_id     text        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    address       text        NOT NULL,
    label         text        NOT NULL DEFAULT '',
    imported      boolean     NOT NULL,
    is_default    boolean     NOT NULL DEFAULT false,
    kek_id        text        NOT NULL,
    wrapped_dek   bytea       NOT NULL,
    ciphertext    bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, address)
);
CREATE UNIQUE INDEX wallets_one_default ON execution.wallets (tenant_id) WHERE is_default;
CREATE INDEX wallets_by_tenant ON execution.wallets (tenant_id, created_at, wallet_id);

-- One Executor contract per tenant wallet and chain, deployed on the first start.
CREATE TABLE execution.executors (
    tenant_id       text        NOT NULL,
    wallet_address  text        NOT NULL,
    chain_id        bigint      NOT NULL,
    address         text        NOT NULL,
    deploy_tx_hash  text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, wallet_address, chain_id)
);

CREATE TABLE execution.sessions (
    session_id        text        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    strategy_id       text        NOT NULL,
    strategy_version  bigint      NOT NULL DEFAULT 0,
    strategy_type     integer     NOT NULL DEFAULT 0,
    state             text        NOT NULL,
    wallet_address    text        NOT NULL,
    chain_ids         bigint[]    NOT NULL,
    submission_mode   integer     NOT NULL,
    -- strategy.v1.ExecutionSettings of the strategy version, serialized; empty when unknown.
    settings          bytea       NOT NULL DEFAULT '\x'::bytea,
    sequence          bigint      NOT NULL DEFAULT 0,
    state_reason      text        NOT NULL DEFAULT '',
    last_error        text        NOT NULL DEFAULT '',
    last_error_at     timestamptz,
    started_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz,
    CHECK (state IN ('starting', 'running', 'paused', 'stopping', 'stopped', 'failed'))
);
-- At most one live session per strategy.
CREATE UNIQUE INDEX sessions_live_per_strategy ON execution.sessions (tenant_id, strategy_id)
    WHERE state IN ('starting', 'running', 'paused', 'stopping');
CREATE INDEX sessions_by_tenant ON execution.sessions (tenant_id, started_at DESC, session_id DESC);

-- One row per decision received. The unique opportunity key is the exactly-once guard: the row
-- (with the signed transaction) is written before anything is sent, so a redelivered decision
-- finds it and sends nothing.
CREATE TABLE execution.executions (
    execution_id           text        PRIMARY KEY,
    tenant_id              text        NOT NULL,
    opportunity_id         text        NOT NULL,
    session_id             text        NOT NULL DEFAULT '',
    strategy_id            text        NOT NULL,
    strategy_version       bigint      NOT NULL DEFAULT 0,
    reservation_id         text        NOT NULL DEFAULT '',
    chain_id               bigint      NOT NULL,
    -- rejected (by risk; not an execution), signed (intent recorded), submitted, included,
    -- reverted, dropped, stale, failed.
    status                 text        NOT NULL,
    submission_mode        integer     NOT NULL DEFAULT 0,
    wallet_address         text        NOT NULL DEFAULT '',
    executor_address       text        NOT NULL DEFAULT '',
    nonce                  bigint,
    tx_hash                text        NOT NULL DEFAULT '',
    raw_tx                 bytea,
    bundle_hash            text        NOT NULL DEFAULT '',
    target_block           bigint      NOT NULL DEFAULT 0,
    deadline_block         bigint      NOT NULL DEFAULT 0,
    attempts               integer     NOT NULL DEFAULT 0,
    max_attempts           integer     NOT NULL DEFAULT 1,
    block_number           bigint      NOT NULL DEFAULT 0,
    expected_profit        numeric(78,0) NOT NULL DEFAULT 0,
    expected_gross_profit  numeric(78,0) NOT NULL DEFAULT 0,
    realized_profit        numeric(78,0),
    realized_gross_profit  numeric(78,0),
    -- wei of gas -> base units of the profit token, as a fraction (from the opportunity)
    gas_rate_num           numeric(78,0) NOT NULL DEFAULT 1,
    gas_rate_den           numeric(78,0) NOT NULL DEFAULT 1,
    profit_token           bytea       NOT NULL DEFAULT '\x'::bytea,
    gas_used               bigint      NOT NULL DEFAULT 0,
    effective_gas_price    numeric(78,0) NOT NULL DEFAULT 0,
    gas_cost               numeric(78,0) NOT NULL DEFAULT 0,
    error                  text        NOT NULL DEFAULT '',
    -- events.v1.HopTimestamps, serialized
    timestamps             bytea       NOT NULL DEFAULT '\x'::bytea,
    block_to_submission_ms double precision NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    submitted_at           timestamptz,
    finalized_at           timestamptz,
    UNIQUE (tenant_id, opportunity_id),
    CHECK (status IN ('rejected', 'signed', 'submitted', 'included', 'reverted', 'dropped', 'stale', 'failed'))
);
CREATE INDEX executions_by_tenant ON execution.executions (tenant_id, created_at DESC, execution_id DESC);
CREATE INDEX executions_by_session ON execution.executions (session_id, status);
CREATE INDEX executions_in_flight ON execution.executions (chain_id) WHERE status IN ('signed', 'submitted');

CREATE TABLE execution.protected_transactions (
    protected_transaction_id  text        PRIMARY KEY,
    tenant_id                 text        NOT NULL,
    chain_id                  bigint      NOT NULL,
    tx_hash                   text        NOT NULL,
    sender                    text        NOT NULL,
    nonce                     bigint      NOT NULL,
    raw_tx                    bytea       NOT NULL,
    mode                      integer     NOT NULL,
    status                    text        NOT NULL,
    max_block_number          bigint      NOT NULL,
    block_number              bigint      NOT NULL DEFAULT 0,
    error                     text        NOT NULL DEFAULT '',
    received_at               timestamptz NOT NULL DEFAULT now(),
    submitted_at              timestamptz,
    included_at               timestamptz,
    UNIQUE (tenant_id, tx_hash),
    CHECK (status IN ('received', 'submitted', 'included', 'reverted', 'expired', 'failed'))
);
CREATE INDEX protected_pending ON execution.protected_transactions (chain_id)
    WHERE status IN ('received', 'submitted');

-- Kill switches as last reported by risk; tenant_id '_platform' is the global switch.
CREATE TABLE execution.kill_switches (
    tenant_id    text        NOT NULL,
    strategy_id  text        NOT NULL DEFAULT '',
    engaged      boolean     NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    event_id     text        NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, strategy_id)
);

CREATE TABLE execution.idempotency_keys (
    tenant_id     text        NOT NULL,
    method        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, method, key)
);

CREATE TABLE execution.outbox (
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
CREATE INDEX outbox_pending ON execution.outbox (id) WHERE published_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['wallets', 'executors', 'sessions', 'executions', 'protected_transactions',
                             'kill_switches', 'idempotency_keys', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE execution.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE execution.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON execution.%I USING ('
            'tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.scope'', true) = ''platform'')', t);
    END LOOP;
END $$;
