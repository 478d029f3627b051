-- One audit trail for the platform (issue 10): tenancy keeps every service's records (consumed
-- from audit.*.record), so each row says which service wrote it, for which request, and the
-- roles the actor held.
ALTER TABLE tenancy.audit_records
    ADD COLUMN service      text   NOT NULL DEFAULT 'tenancy',
    ADD COLUMN request_id   text   NOT NULL DEFAULT '',
    ADD COLUMN actor_roles  text[] NOT NULL DEFAULT '{}';
