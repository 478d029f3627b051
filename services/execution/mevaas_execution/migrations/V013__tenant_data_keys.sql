-- Per-tenant data keys (issue 11): each tenant's wallets are wrapped under the tenant's own data
-- key, and only that key is wrapped under the platform KEK (mevaas_execution.keys). A dedicated
-- tenant's execution worker holds its data key, never the KEK: it opens that tenant's wallets
-- and nobody else's. key_id is what execution.wallets.kek_id names for a wallet under it.
-- Wallets wrapped straight under a KEK before this migration are moved under their tenant's key
-- by the service (at start, and by mevaas-execution-rekey): that takes the KEK, which SQL has not.
CREATE TABLE execution.tenant_data_keys (
    key_id       text        PRIMARY KEY CHECK (key_id LIKE 'tdk-%'),
    tenant_id    text        NOT NULL UNIQUE,
    kek_id       text        NOT NULL,
    wrapped_key  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE execution.tenant_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.tenant_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.tenant_data_keys
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON execution.tenant_data_keys TO execution_platform USING (true);
