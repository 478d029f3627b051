-- Platform scope is a separate role, not a setting (issue 10): tenancy_app sees exactly the rows of
-- app.tenant_id whatever it sets (app.scope no longer means anything); tenancy_platform, the
-- service's second login for its cross-tenant jobs (mevaas_core.db), sees every row. Tables that
-- exist already are granted to it here; later ones get it through the owner's default privileges.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenancy TO tenancy_platform;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA tenancy TO tenancy_platform;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tenancy TO tenancy_platform;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_policies WHERE schemaname = 'tenancy' AND policyname = 'tenant_isolation'
    LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON tenancy.%I USING (tenant_id = current_setting(''app.tenant_id'', true))', t);
        EXECUTE format('CREATE POLICY platform_access ON tenancy.%I TO tenancy_platform USING (true)', t);
    END LOOP;
END $$;
