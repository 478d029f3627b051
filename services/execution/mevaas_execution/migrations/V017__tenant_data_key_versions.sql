-- Rotating a tenant's own data key (mevaas-execution-rotate-data-key, mevaas_execution.keys.data_key_rotation):
-- a tenant's data key has versions, and exactly one, the current (retired_at IS NULL), wraps the
-- tenant's wallets. A rotation adds version n+1, re-wraps every wallet of the tenant under it and
-- retires version n in one transaction. A retired version keeps its id, number and dates for the
-- audit trail but not its key: wrapped_key is erased as it retires, so it unwraps nothing, even
-- out of a later backup of this table.
ALTER TABLE execution.tenant_data_keys DROP CONSTRAINT tenant_data_keys_tenant_id_key;
ALTER TABLE execution.tenant_data_keys ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE execution.tenant_data_keys ADD COLUMN retired_at timestamptz;
ALTER TABLE execution.tenant_data_keys ALTER COLUMN wrapped_key DROP NOT NULL;
ALTER TABLE execution.tenant_data_keys ADD CONSTRAINT tenant_data_keys_retired_hold_no_key
    CHECK ((retired_at IS NULL) = (wrapped_key IS NOT NULL));
ALTER TABLE execution.tenant_data_keys ADD CONSTRAINT tenant_data_keys_tenant_version
    UNIQUE (tenant_id, version);
CREATE UNIQUE INDEX tenant_data_keys_current ON execution.tenant_data_keys (tenant_id)
    WHERE retired_at IS NULL;
