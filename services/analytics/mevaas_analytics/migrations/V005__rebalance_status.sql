-- The status execution reports for each rebalance (execution.v1.RebalanceUpdated on
-- exec.<tenant>.rebalance_status): its latest result, and the sequence that orders the reports so
-- an older one never replaces a newer one.
ALTER TABLE analytics.rebalances ADD COLUMN execution_result bytea;
ALTER TABLE analytics.rebalances ADD COLUMN execution_sequence bigint NOT NULL DEFAULT 0;
