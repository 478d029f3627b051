-- Clients' protected transactions (execution's exec.<tenant>.protected): what the invoice bills
-- (protection and fair-ordering fees per accepted transaction), the refunds their senders were
-- paid, and the sanctions hits refused at the Protect RPC's ingress (the compliance report).
CREATE TABLE analytics.protected_transactions (
    tenant_id                text        NOT NULL,
    protected_transaction_id text        NOT NULL,
    chain_id                 bigint      NOT NULL,
    tx_hash                  text        NOT NULL,
    sender                   text        NOT NULL,
    to_address               text        NOT NULL DEFAULT '',
    fair_ordering            boolean     NOT NULL,
    -- Accepted (recorded to be sent) or refused at ingress (status failed): only accepted ones are billed.
    accepted                 boolean     NOT NULL,
    status                   text        NOT NULL,
    status_rank              integer     NOT NULL,
    error                    text        NOT NULL DEFAULT '',
    reason_code              integer     NOT NULL DEFAULT 0,
    -- [{address, list_name, entity}] of a sanctions hit at ingress.
    sanctioned               jsonb       NOT NULL DEFAULT '[]',
    source                   text        NOT NULL DEFAULT '',
    received_at              timestamptz NOT NULL,
    block_number             bigint      NOT NULL DEFAULT 0,
    refund_token             text        NOT NULL DEFAULT '',
    refund_amount            numeric(78, 0),
    gas_refund               numeric(78, 0),
    refunded_at              timestamptz,
    PRIMARY KEY (tenant_id, protected_transaction_id)
);
CREATE INDEX protected_transactions_by_month ON analytics.protected_transactions (tenant_id, received_at);
ALTER TABLE analytics.protected_transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.protected_transactions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics.protected_transactions
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON analytics.protected_transactions TO analytics_platform USING (true);
