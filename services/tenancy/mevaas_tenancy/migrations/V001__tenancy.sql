-- Tenancy's own schema: tenants, plans, users, API keys, branding, audit, idempotency, outbox.
-- Every table carries tenant_id and is guarded by row-level security keyed on the per-transaction
-- setting app.tenant_id (app.scope = 'platform' for platform-admin work across tenants).

CREATE TABLE tenancy.tenants (
    tenant_id         text        PRIMARY KEY,
    slug              text        NOT NULL UNIQUE,
    display_name      text        NOT NULL,
    contact_email     text        NOT NULL DEFAULT '',
    tier              text        NOT NULL,
    isolation         text        NOT NULL,
    status            text        NOT NULL DEFAULT 'active',
    onboarding_phase  text        NOT NULL DEFAULT 'discovery',
    suspended_reason  text        NOT NULL DEFAULT '',
    plan              bytea       NOT NULL,
    version           bigint      NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CHECK (status IN ('active', 'suspended', 'deleted')),
    CHECK (onboarding_phase IN ('discovery', 'setup', 'deployment', 'optimization', 'live'))
);

CREATE TABLE tenancy.users (
    user_id       text        PRIMARY KEY,
    tenant_id     text        NOT NULL REFERENCES tenancy.tenants (tenant_id),
    email         text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    roles         text[]      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE UNIQUE INDEX users_email_per_tenant ON tenancy.users (tenant_id, lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE tenancy.api_keys (
    key_id        text        PRIMARY KEY,
    tenant_id     text        NOT NULL REFERENCES tenancy.tenants (tenant_id),
    name          text        NOT NULL,
    secret_hash   text        NOT NULL,
    roles         text[]      NOT NULL,
    user_id       text        NOT NULL DEFAULT '',
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_by_tenant ON tenancy.api_keys (tenant_id, created_at, key_id);

CREATE TABLE tenancy.branding (
    tenant_id        text        PRIMARY KEY REFERENCES tenancy.tenants (tenant_id),
    display_name     text        NOT NULL DEFAULT '',
    logo_url         text        NOT NULL DEFAULT '',
    primary_color    text        NOT NULL DEFAULT '',
    secondary_color  text        NOT NULL DEFAULT '',
    custom_domain    text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX branding_custom_domain ON tenancy.branding (lower(custom_domain)) WHERE custom_domain IS NOT NULL;

-- Append-only: the app role may insert and read, never change or remove (enforced by trigger,
-- so even a privileged mistake cannot rewrite history).
CREATE TABLE tenancy.audit_records (
    record_id        bigserial   PRIMARY KEY,
    event_id         text        NOT NULL UNIQUE,
    tenant_id        text        NOT NULL,
    actor_kind       text        NOT NULL,
    actor_id         text        NOT NULL,
    actor_tenant_id  text        NOT NULL,
    action           text        NOT NULL,
    resource         text        NOT NULL,
    outcome          text        NOT NULL,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key  text        NOT NULL DEFAULT '',
    occurred_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_by_tenant_time ON tenancy.audit_records (tenant_id, record_id);

CREATE FUNCTION tenancy.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON tenancy.audit_records
    FOR EACH ROW EXECUTE FUNCTION tenancy.refuse_audit_change();

CREATE TABLE tenancy.idempotency_keys (
    tenant_id     text        NOT NULL,
    method        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, method, key)
);

CREATE TABLE tenancy.outbox (
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
CREATE INDEX outbox_pending ON tenancy.outbox (id) WHERE published_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'users', 'api_keys', 'branding', 'audit_records', 'idempotency_keys', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE tenancy.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE tenancy.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON tenancy.%I USING ('
            'tenant_id = current_setting(''app.tenant_id'', true) '
            'OR current_setting(''app.scope'', true) = ''platform'')', t);
    END LOOP;
END $$;
