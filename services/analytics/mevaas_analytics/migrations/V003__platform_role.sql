-- Platform scope is a separate role, not a setting (issue 10): analytics_app sees exactly the rows of
-- app.tenant_id whatever it sets (app.scope no longer means anything); analytics_platform, the
-- service's second login for its cross-tenant jobs (mevaas_core.db), sees every row. Tables that
-- exist already are granted to it here; later ones get it through the owner's default privileges.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA analytics TO analytics_platform;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA analytics TO analytics_platform;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA analytics TO analytics_platform;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_policies WHERE schemaname = 'analytics' AND policyname = 'tenant_isolation'
    LOOP
        -- Rows of the platform itself (market data) stay readable by every tenant; backtests never had them.
        EXECUTE format('ALTER POLICY tenant_isolation ON analytics.%I USING (%s)', t,
            CASE WHEN t = 'backtests' THEN 'tenant_id = current_setting(''app.tenant_id'', true)'
                 ELSE 'tenant_id = current_setting(''app.tenant_id'', true) OR tenant_id = ''_platform''' END);
        EXECUTE format('CREATE POLICY platform_access ON analytics.%I TO analytics_platform USING (true)', t);
    END LOOP;
END $$;
