-- The treasury: every movement booked per holding (a wallet's or executor's balance of one token
-- on one chain, token '' = native), and each holding's last chain reading and reconciliation.
CREATE TABLE execution.treasury_ledger (
    movement_id     bigserial   PRIMARY KEY,
    tenant_id       text        NOT NULL,
    chain_id        bigint      NOT NULL,
    holder_address  text        NOT NULL,
    holder_kind     text        NOT NULL CHECK (holder_kind IN ('wallet', 'executor')),
    wallet_address  text        NOT NULL,
    token           text        NOT NULL,
    kind            text        NOT NULL
        CHECK (kind IN ('opening', 'execution', 'gas', 'withdrawal', 'deposit')),
    amount          numeric(78, 0) NOT NULL,
    -- the execution (or treasury transfer) whose receipt booked it
    reference       text        NOT NULL,
    block_number    bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
-- A block's delta is booked once per holding, whichever receipt of the block comes first.
CREATE UNIQUE INDEX treasury_ledger_once
    ON execution.treasury_ledger (tenant_id, chain_id, holder_address, token, kind, block_number);
CREATE UNIQUE INDEX treasury_ledger_one_opening
    ON execution.treasury_ledger (tenant_id, chain_id, holder_address, token) WHERE kind = 'opening';

CREATE TABLE execution.treasury_holdings (
    tenant_id       text        NOT NULL,
    chain_id        bigint      NOT NULL,
    holder_address  text        NOT NULL,
    holder_kind     text        NOT NULL CHECK (holder_kind IN ('wallet', 'executor')),
    wallet_address  text        NOT NULL,
    token           text        NOT NULL,
    opened_block    bigint      NOT NULL,
    chain_amount    numeric(78, 0) NOT NULL,
    ledger_amount   numeric(78, 0) NOT NULL,
    read_block      bigint      NOT NULL,
    status          text        NOT NULL CHECK (status IN ('matched', 'drift')),
    read_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chain_id, holder_address, token)
);
CREATE INDEX treasury_holdings_by_wallet ON execution.treasury_holdings (tenant_id, wallet_address, chain_id);

ALTER TABLE execution.treasury_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.treasury_ledger FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.treasury_ledger
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON execution.treasury_ledger TO execution_platform USING (true);
ALTER TABLE execution.treasury_holdings ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.treasury_holdings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.treasury_holdings
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON execution.treasury_holdings TO execution_platform USING (true);
