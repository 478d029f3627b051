-- Leverage protection: positions a tenant asked the engine to watch and deleverage. Levels are
-- health factors in WAD (1e18 = 1.0), exact integers. State moves only as
-- mevaas_strategy.protection.domain.TRANSITIONS allows (active <-> paused, either -> removed).
CREATE TABLE strategy.protections (
    protection_id            text        PRIMARY KEY,
    tenant_id                text        NOT NULL,
    chain_id                 bigint      NOT NULL,
    account                  text        NOT NULL,
    executor_address         text        NOT NULL DEFAULT '',
    trigger_health_factor    numeric(78, 0) NOT NULL,
    target_health_factor     numeric(78, 0) NOT NULL,
    emergency_enabled        boolean     NOT NULL,
    emergency_health_factor  numeric(78, 0) NOT NULL,
    collateral_asset         text        NOT NULL DEFAULT '',
    debt_asset               text        NOT NULL DEFAULT '',
    registered_health_factor numeric(78, 0),
    state                    text        NOT NULL CHECK (state IN ('active', 'paused', 'removed')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK (emergency_health_factor > 1000000000000000000
           AND emergency_health_factor <= trigger_health_factor
           AND trigger_health_factor < target_health_factor)
);
-- One live protection per account and chain.
CREATE UNIQUE INDEX protections_live_account ON strategy.protections (tenant_id, chain_id, lower(account))
    WHERE state <> 'removed';
CREATE INDEX protections_tenant_created ON strategy.protections (tenant_id, created_at, protection_id);

ALTER TABLE strategy.protections ENABLE ROW LEVEL SECURITY;
ALTER TABLE strategy.protections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON strategy.protections
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON strategy.protections TO strategy_platform USING (true);
