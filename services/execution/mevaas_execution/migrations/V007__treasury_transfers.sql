-- Treasury transfers (Withdraw from an executor, Deposit into it): signed and recorded before they
-- are sent, so a retried request (same idempotency key) re-sends the same transaction instead of
-- moving the funds twice.
CREATE TABLE execution.treasury_transfers (
    transfer_id      text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    idempotency_key  text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('withdrawal', 'deposit')),
    chain_id         bigint      NOT NULL,
    wallet_address   text        NOT NULL,
    executor_address text        NOT NULL,
    token            text        NOT NULL,
    to_address       text        NOT NULL,
    amount           numeric(78, 0) NOT NULL CHECK (amount > 0),
    tx_hash          text        NOT NULL,
    raw_tx           bytea       NOT NULL,
    status           text        NOT NULL CHECK (status IN ('signed', 'included', 'failed')),
    block_number     bigint      NOT NULL DEFAULT 0,
    gas_cost         numeric(78, 0) NOT NULL DEFAULT 0,
    error            text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    finalized_at     timestamptz,
    UNIQUE (tenant_id, kind, idempotency_key)
);
ALTER TABLE execution.treasury_transfers ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.treasury_transfers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.treasury_transfers
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON execution.treasury_transfers TO execution_platform USING (true);
