-- Every final execution valued in USD when it was recorded (see mevaas_analytics.domain.valuation
-- and docs/pricing.md): one row per valued component (realized_profit, expected_profit, gas_cost).
-- usd_price (per whole token) and usd_value are rounded half-even to 18 decimal places; both are
-- NULL, and priced is false, when the price source could not price the token (never 0).
CREATE TABLE analytics.execution_valuations (
    tenant_id          text           NOT NULL,
    execution_id       text           NOT NULL,
    status             integer        NOT NULL,
    component          text           NOT NULL,
    chain_id           bigint         NOT NULL,
    token              text           NOT NULL,  -- "<chain>:<address>" or "<chain>:native"
    amount             numeric(78, 0) NOT NULL,  -- base units
    decimals           integer        NOT NULL,
    priced             boolean        NOT NULL,
    usd_price          numeric,
    usd_value          numeric,
    price_source       text           NOT NULL,  -- e.g. "pool-mid:31337:WETH/USDC@0x..", "fixed:config"
    price_block        bigint         NOT NULL,  -- block the price reflects; 0 = not block-based
    price_observed_at  timestamptz,
    unpriced_reason    text           NOT NULL,
    valued_at          timestamptz    NOT NULL,
    PRIMARY KEY (tenant_id, execution_id, status, component),
    CHECK (priced = (usd_value IS NOT NULL) AND priced = (usd_price IS NOT NULL))
);

ALTER TABLE analytics.execution_valuations ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.execution_valuations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics.execution_valuations
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON analytics.execution_valuations TO analytics_platform USING (true);
