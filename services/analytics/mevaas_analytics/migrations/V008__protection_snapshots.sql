-- Leverage protection's snapshots of protected positions (strategy's protect.<tenant>.position):
-- the collateral each ACTIVE protection held at a block, which the yearly leverage-protection fee
-- is charged on (each snapshot stands until the next one, at most valid_seconds).
CREATE TABLE analytics.protection_snapshots (
    tenant_id     text        NOT NULL,
    protection_id text        NOT NULL,
    chain_id      bigint      NOT NULL,
    account       text        NOT NULL,
    block_number  bigint      NOT NULL,
    at            timestamptz NOT NULL,
    valid_seconds bigint      NOT NULL,
    -- events.v1.ProtectedPositionSnapshot as published.
    payload       bytea       NOT NULL,
    PRIMARY KEY (tenant_id, protection_id, block_number)
);
CREATE INDEX protection_snapshots_by_time ON analytics.protection_snapshots (tenant_id, at);
ALTER TABLE analytics.protection_snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.protection_snapshots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics.protection_snapshots
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON analytics.protection_snapshots TO analytics_platform USING (true);
