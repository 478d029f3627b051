-- Strategy's own schema: strategy definitions with immutable versions, the execution session state
-- and tenant plans consumed from events (what the engine and the plan checks need), idempotency
-- and outbox. Every table carries tenant_id under row-level security (see mevaas_core.db).

CREATE TABLE strategy.strategies (
    strategy_id       text        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    name              text        NOT NULL,
    type              integer     NOT NULL,
    current_version   bigint      NOT NULL,
    status            text        NOT NULL DEFAULT 'active',
    alloc_chain_id    bigint      NOT NULL,
    alloc_token       text        NOT NULL,
    alloc_amount      numeric(78,0) NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CHECK (status IN ('active', 'deleted'))
);
CREATE UNIQUE INDEX strategies_name_per_tenant ON strategy.strategies (tenant_id, lower(name)) WHERE status = 'active';
CREATE INDEX strategies_by_tenant ON strategy.strategies (tenant_id, created_at, strategy_id);

CREATE TABLE strategy.strategy_versions (
    strategy_id   text        NOT NULL REFERENCES strategy.strategies (strategy_id),
    version       bigint      NOT NULL,
    tenant_id     text        NOT NULL,
    config        bytea       NOT NULL,
    created_by    text        NOT NULL,
    change_note   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (strategy_id, version)
);

-- Latest state of each strategy's execution session, from exec.<tenant>.session events. A newer
-- session replaces an older one; within a session only a higher sequence applies (redeliveries
-- and reordering change nothing).
CREATE TABLE strategy.sessions (
    strategy_id       text        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    session_id        text        NOT NULL,
    strategy_version  bigint      NOT NULL,
    state             integer     NOT NULL,
    sequence          bigint      NOT NULL,
    occurred_at       timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_running ON strategy.sessions (state);

-- The tenant's plan and status from tenant.* events; older snapshot versions are ignored.
CREATE TABLE strategy.tenant_plans (
    tenant_id   text        PRIMARY KEY,
    version     bigint      NOT NULL,
    tier        integer     NOT NULL,
    status      integer     NOT NULL,
    plan        bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE strategy.idempotency_keys (
    tenant_id     text        NOT NULL,
    method        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, method, key)
);

CREATE TABLE strategy.outbox (
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
CREATE INDEX outbox_pending ON strategy.outbox (id) WHERE published_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['strategies', 'strategy_versions', 'sessions', 'tenant_plans', 'idempotency_keys', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE strategy.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE strategy.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON strategy.%I USING ('
            'tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.scope'', true) = ''platform'')', t);
    END LOOP;
END $$;
