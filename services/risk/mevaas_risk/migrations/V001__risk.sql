-- Risk's own schema: limits, the per-tenant risk-state lock row, decisions, exposure reservations,
-- the realised PnL series, kill switches, breaches, plus idempotency and outbox. Every table
-- carries tenant_id and is guarded by row-level security keyed on app.tenant_id
-- (app.scope = 'platform' for consumers and admins spanning tenants).

-- What risk knows of each tenant, from tenant.* events (status and plan).
CREATE TABLE risk.tenants (
    tenant_id   text        PRIMARY KEY,
    status      text        NOT NULL DEFAULT 'active',
    plan        bytea       NOT NULL DEFAULT ''::bytea,
    version     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Limits of a tenant (strategy_id = '') or of one strategy; `limits` is a common.v1.RiskLimits.
CREATE TABLE risk.limits (
    tenant_id    text        NOT NULL,
    strategy_id  text        NOT NULL DEFAULT '',
    limits       bytea       NOT NULL,
    version      bigint      NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text        NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, strategy_id)
);

-- One row per tenant: every pre-trade decision, limit change and kill-switch change of the tenant
-- locks it (SELECT ... FOR UPDATE), which serialises them across all risk replicas.
CREATE TABLE risk.risk_state (
    tenant_id      text        PRIMARY KEY,
    decisions      bigint      NOT NULL DEFAULT 0,
    last_decided   timestamptz
);

CREATE TABLE risk.reservations (
    reservation_id  text          PRIMARY KEY,
    tenant_id       text          NOT NULL,
    strategy_id     text          NOT NULL,
    opportunity_id  text          NOT NULL,
    chain_id        bigint        NOT NULL,
    token           text          NOT NULL,
    amount          numeric(78,0) NOT NULL CHECK (amount > 0),
    created_at      timestamptz   NOT NULL DEFAULT now(),
    -- A reservation nobody releases (an execution service that died) stops counting after this.
    expires_at      timestamptz   NOT NULL,
    released_at     timestamptz,
    release_status  text          NOT NULL DEFAULT '',
    execution_id    text          NOT NULL DEFAULT '',
    UNIQUE (tenant_id, opportunity_id)
);
CREATE INDEX reservations_open ON risk.reservations (tenant_id, strategy_id) WHERE released_at IS NULL;

-- One decision per opportunity: a redelivered opportunity finds it and changes nothing.
CREATE TABLE risk.decisions (
    decision_id     text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    opportunity_id  text        NOT NULL,
    strategy_id     text        NOT NULL,
    approved        boolean     NOT NULL,
    reason_code     text        NOT NULL,
    reason          text        NOT NULL,
    reservation_id  text        NOT NULL DEFAULT '',
    -- The RiskDecision event as published (re-published as is on redelivery).
    payload         bytea       NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, opportunity_id)
);

-- Realised PnL, one entry per final execution result (exact integers, base units of `token`).
CREATE TABLE risk.pnl_entries (
    tenant_id       text          NOT NULL,
    execution_id    text          NOT NULL,
    opportunity_id  text          NOT NULL DEFAULT '',
    strategy_id     text          NOT NULL DEFAULT '',
    chain_id        bigint        NOT NULL,
    token           text          NOT NULL,
    amount          numeric(78,0) NOT NULL,
    status          text          NOT NULL,
    day             date          NOT NULL,
    booked_at       timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, execution_id)
);
CREATE INDEX pnl_by_day ON risk.pnl_entries (tenant_id, day, chain_id, token);

-- strategy_id '' = tenant-wide; tenant_id '_platform' = the platform-wide switch.
CREATE TABLE risk.kill_switches (
    tenant_id    text        NOT NULL,
    strategy_id  text        NOT NULL DEFAULT '',
    engaged      boolean     NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    changed_by   text        NOT NULL DEFAULT '',
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, strategy_id)
);

CREATE TABLE risk.breaches (
    breach_id       text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    strategy_id     text        NOT NULL DEFAULT '',
    kind            text        NOT NULL,
    -- One breach per (scope, kind, UTC day): a limit hit 200 times in a burst is one record.
    dedupe_key      text        NOT NULL,
    limit_value     text        NOT NULL,
    observed_value  text        NOT NULL,
    denomination    bytea       NOT NULL DEFAULT ''::bytea,
    action          text        NOT NULL,
    message         text        NOT NULL,
    execution_id    text        NOT NULL DEFAULT '',
    opportunity_id  text        NOT NULL DEFAULT '',
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX breaches_newest ON risk.breaches (tenant_id, occurred_at DESC, breach_id DESC);

CREATE TABLE risk.idempotency_keys (
    tenant_id     text        NOT NULL,
    method        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, method, key)
);

CREATE TABLE risk.outbox (
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
CREATE INDEX outbox_pending ON risk.outbox (id) WHERE published_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'limits', 'risk_state', 'reservations', 'decisions', 'pnl_entries',
                             'kill_switches', 'breaches', 'idempotency_keys', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE risk.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE risk.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON risk.%I USING ('
            'tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.scope'', true) = ''platform'')', t);
    END LOOP;
END $$;

-- Every tenant's decisions must see the platform-wide switch; only platform scope may change it
-- (an UPDATE must pass the tenant_isolation policy as well).
CREATE POLICY platform_switch_visible ON risk.kill_switches FOR SELECT
    USING (tenant_id = '_platform');
