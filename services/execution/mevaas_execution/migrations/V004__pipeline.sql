-- The pipeline: every execution names its action kind (the Opportunity.action oneof field), so
-- the tracker books it with that kind's executor; and every executor contract deployment is
-- recorded, the redeploys that replace a missing or foreign executor included.
ALTER TABLE execution.executions ADD COLUMN action_kind text NOT NULL DEFAULT '';
UPDATE execution.executions
    SET action_kind = CASE WHEN cardinality(leg_tx_hashes) > 0 THEN 'cross_chain' ELSE 'swap_cycle' END;

CREATE TABLE execution.executor_deployments (
    tenant_id         text        NOT NULL,
    wallet_address    text        NOT NULL,
    chain_id          bigint      NOT NULL,
    address           text        NOT NULL,
    deploy_tx_hash    text        NOT NULL,
    -- the executor this one replaced ('' for the first), and why it had to be replaced
    replaced_address  text        NOT NULL DEFAULT '',
    reason            text        NOT NULL DEFAULT '',
    deployed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chain_id, address)
);
CREATE INDEX executor_deployments_by_wallet
    ON execution.executor_deployments (tenant_id, wallet_address, chain_id, deployed_at DESC);
INSERT INTO execution.executor_deployments (tenant_id, wallet_address, chain_id, address, deploy_tx_hash, deployed_at)
    SELECT tenant_id, wallet_address, chain_id, address, deploy_tx_hash, created_at FROM execution.executors;

ALTER TABLE execution.executor_deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE execution.executor_deployments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON execution.executor_deployments
    USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_access ON execution.executor_deployments TO execution_platform USING (true);
