-- Cross-chain executions: one swap transaction per chain ("leg"), each signed and recorded here
-- before anything is sent. The execution row keeps the overall status and PnL; its
-- leg_tx_hashes lists the legs' swap transactions (empty for single-chain executions, which the
-- single-chain tracker follows alone).
ALTER TABLE execution.executions ADD COLUMN leg_tx_hashes text[] NOT NULL DEFAULT '{}';

CREATE TABLE execution.execution_legs (
    tenant_id            text        NOT NULL,
    execution_id         text        NOT NULL REFERENCES execution.executions (execution_id),
    opportunity_id       text        NOT NULL,
    leg_index            integer     NOT NULL,
    chain_id             bigint      NOT NULL,
    wallet_address       text        NOT NULL,
    -- signed (recorded, not yet sent), submitted, included, reverted, dropped
    status               text        NOT NULL,
    submission_mode      integer     NOT NULL DEFAULT 0,
    router_address       text        NOT NULL,
    token_in             text        NOT NULL,
    token_out            text        NOT NULL,
    amount_in            numeric(78,0) NOT NULL,
    amount_out_min       numeric(78,0) NOT NULL,
    -- the router approval sent ahead of the swap (same chain, previous nonce), when the
    -- allowance was short
    approve_tx_hash      text        NOT NULL DEFAULT '',
    approve_raw_tx       bytea,
    nonce                bigint      NOT NULL,
    tx_hash              text        NOT NULL,
    raw_tx               bytea       NOT NULL,
    target_block         bigint      NOT NULL,
    last_block           bigint      NOT NULL,
    attempts             integer     NOT NULL DEFAULT 0,
    block_number         bigint      NOT NULL DEFAULT 0,
    amount_out           numeric(78,0),
    gas_used             bigint      NOT NULL DEFAULT 0,
    gas_cost             numeric(78,0) NOT NULL DEFAULT 0,
    -- wei of gas on this chain -> base units of the profit token, as a fraction
    gas_rate_num         numeric(78,0) NOT NULL DEFAULT 1,
    gas_rate_den         numeric(78,0) NOT NULL DEFAULT 1,
    error                text        NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now(),
    finalized_at         timestamptz,
    PRIMARY KEY (execution_id, leg_index),
    UNIQUE (tenant_id, opportunity_id, leg_index),
    CHECK (status IN ('signed', 'submitted', 'included', 'reverted', 'dropped'))
);
CREATE INDEX execution_legs_in_flight ON execution.execution_legs (chain_id)
    WHERE status IN ('signed', 'submitted');

ALTER TABLE execution.execution_legs ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.execution_legs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.execution_legs USING (
    tenant_id = current_setting('app.tenant_id', true)
    OR current_setting('app.scope', true) = 'platform');
