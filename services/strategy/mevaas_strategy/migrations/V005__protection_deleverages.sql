-- Leverage protection's in-flight deleverages: one row per protection while the deleverage the
-- monitor published for it waits for execution's result (or its grace deadline), so a restarted
-- monitor, or the replica taking the tenant over, resumes waiting instead of publishing a second
-- deleverage for the same position. The primary key is the claim: a protection has at most one
-- deleverage in flight. ``result`` is execution's final ExecutionResult once it arrived, kept
-- until the monitor has settled it.
CREATE TABLE strategy.protection_deleverages (
    protection_id   text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    chain_id        bigint      NOT NULL,
    opportunity_id  text        NOT NULL UNIQUE,
    deadline_block  bigint      NOT NULL,
    result          bytea,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX protection_deleverages_tenant ON strategy.protection_deleverages (tenant_id);

ALTER TABLE strategy.protection_deleverages ENABLE ROW LEVEL SECURITY;
ALTER TABLE strategy.protection_deleverages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON strategy.protection_deleverages
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON strategy.protection_deleverages TO strategy_platform USING (true);
