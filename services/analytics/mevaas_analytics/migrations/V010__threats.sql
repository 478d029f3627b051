-- Sandwich threats seen on the tenant's own pending swaps (strategy's protect.<tenant>.threat,
-- events.v1.SandwichThreat; Nats-Msg-Id "<chain>:<tx hash>:threat"): one row per (tenant, chain,
-- tx hash), written once (a redelivered threat changes nothing). The execution report lists them.
CREATE TABLE analytics.threats (
    tenant_id          text           NOT NULL,
    chain_id           bigint         NOT NULL,
    tx_hash            text           NOT NULL,  -- lower-case
    event_id           text           NOT NULL,
    sender             text           NOT NULL,  -- the victim wallet, lower-case
    block_number       bigint         NOT NULL,  -- the head the threat was computed on
    pool               text           NOT NULL,
    token              text           NOT NULL,  -- attacker's profit token, lower-case address
    attacker_profit    numeric(78, 0) NOT NULL,  -- base units of token
    exposure_token     text           NOT NULL,  -- victim's output (exact in) or input token
    exposure           numeric(78, 0) NOT NULL,  -- base units of exposure_token
    safe_slippage_bps  integer        NOT NULL,
    seen_at            timestamptz    NOT NULL,
    payload            bytea          NOT NULL,  -- events.v1.SandwichThreat
    PRIMARY KEY (tenant_id, chain_id, tx_hash)
);
CREATE INDEX threats_by_time ON analytics.threats (tenant_id, seen_at);

ALTER TABLE analytics.threats ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.threats FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics.threats
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON analytics.threats TO analytics_platform USING (true);

-- Each threat's amounts valued in USD as of the threat's block, when it was recorded, exactly as
-- execution_valuations (mevaas_analytics.domain.threats, docs/pricing.md): one row per component
-- (victim_loss: exposure in exposure_token; attacker_profit in token). usd_price / usd_value are
-- NULL and priced false when the token could not be priced (never 0); a redelivery may replace an
-- unpriced row by a priced one, never the reverse.
CREATE TABLE analytics.threat_valuations (
    tenant_id          text           NOT NULL,
    chain_id           bigint         NOT NULL,
    tx_hash            text           NOT NULL,
    component          text           NOT NULL,
    token              text           NOT NULL,  -- "<chain>:<address>"
    amount             numeric(78, 0) NOT NULL,  -- base units
    decimals           integer,                  -- NULL: unknown to the chain registry
    priced             boolean        NOT NULL,
    usd_price          numeric,
    usd_value          numeric,
    price_source       text           NOT NULL,
    price_block        bigint         NOT NULL,  -- block the price reflects; 0 = not block-based
    price_observed_at  timestamptz,
    unpriced_reason    text           NOT NULL,
    valued_at          timestamptz    NOT NULL,
    PRIMARY KEY (tenant_id, chain_id, tx_hash, component),
    CHECK (priced = (usd_value IS NOT NULL) AND priced = (usd_price IS NOT NULL))
);

ALTER TABLE analytics.threat_valuations ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.threat_valuations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics.threat_valuations
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON analytics.threat_valuations TO analytics_platform USING (true);
