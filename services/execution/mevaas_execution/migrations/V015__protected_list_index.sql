-- ListProtectedTransactions (protection/store.py LIST_PROTECTED) pages a tenant's protected
-- transactions newest received first, keyset-paged on (received_at, protected_transaction_id).
-- Without this index every page read all of the tenant's rows and sorted them (the only index
-- that starts with tenant_id is UNIQUE (tenant_id, tx_hash)); with it a page is a range of the
-- index, already in order, that stops at the page's size.
--
-- Not CONCURRENTLY: the runner applies each file inside a transaction (mevaas_core.migrations),
-- where PostgreSQL refuses CREATE INDEX CONCURRENTLY. The build holds writes to the table (not
-- reads) while it runs. Where the table is already large, build the index beforehand, outside a
-- transaction, under the same name (check it is valid: pg_index.indisvalid; drop a failed build
-- first), and this migration finds it and does nothing:
--   CREATE INDEX CONCURRENTLY protected_by_tenant_received ON execution.protected_transactions
--       (tenant_id, received_at DESC, protected_transaction_id DESC);
CREATE INDEX IF NOT EXISTS protected_by_tenant_received ON execution.protected_transactions
    (tenant_id, received_at DESC, protected_transaction_id DESC);
