-- People sign in (issue 12): a user's password hash (Argon2id) and TOTP secret, the failures
-- that lock an account, one-time enrolment tokens, user sessions (hashed tokens) and the
-- tenant's OIDC provider. Tenant tables like every other: tenant_id and row-level security.

CREATE TABLE tenancy.user_credentials (
    user_id          text        PRIMARY KEY REFERENCES tenancy.users (user_id),
    tenant_id        text        NOT NULL REFERENCES tenancy.tenants (tenant_id),
    password_hash    text        NOT NULL,
    totp_secret      text        NOT NULL,
    -- The last TOTP time step accepted: a code is good once (RFC 6238 section 5.2).
    totp_last_step   bigint      NOT NULL DEFAULT 0,
    failed_attempts  integer     NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenancy.enrolments (
    enrolment_id  text        PRIMARY KEY,
    tenant_id     text        NOT NULL REFERENCES tenancy.tenants (tenant_id),
    user_id       text        NOT NULL REFERENCES tenancy.users (user_id),
    secret_hash   text        NOT NULL,
    totp_secret   text        NOT NULL,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);

CREATE TABLE tenancy.user_sessions (
    session_id    text        PRIMARY KEY,
    tenant_id     text        NOT NULL REFERENCES tenancy.tenants (tenant_id),
    user_id       text        NOT NULL REFERENCES tenancy.users (user_id),
    secret_hash   text        NOT NULL,
    method        text        NOT NULL CHECK (method IN ('password', 'oidc')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX user_sessions_by_user ON tenancy.user_sessions (user_id) WHERE ended_at IS NULL;

CREATE TABLE tenancy.oidc_providers (
    tenant_id      text        PRIMARY KEY REFERENCES tenancy.tenants (tenant_id),
    issuer         text        NOT NULL,
    client_id      text        NOT NULL,
    client_secret  text        NOT NULL DEFAULT '',
    email_claim    text        NOT NULL DEFAULT 'email',
    updated_at     timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['user_credentials', 'enrolments', 'user_sessions', 'oidc_providers']
    LOOP
        EXECUTE format('ALTER TABLE tenancy.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE tenancy.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON tenancy.%I USING (tenant_id = current_setting(''app.tenant_id'', true))', t);
        EXECUTE format('CREATE POLICY platform_access ON tenancy.%I TO tenancy_platform USING (true)', t);
    END LOOP;
END $$;
