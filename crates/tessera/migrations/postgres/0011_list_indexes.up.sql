-- Lists that stay fast as tenants grow: indexed account search and an audit log index in the
-- exact order it is browsed.

-- Account search (`GET /api/v1/admin/users?q=`) is `LIKE '%text%'` on the four expressions
-- below. pg_trgm's GIN indexes answer exactly that predicate (the planner rechecks every
-- candidate), so the answers are unchanged; only the cost is.
--
-- pg_trgm ships with PostgreSQL and is a trusted extension (PostgreSQL 13+): a role with
-- CREATE on the database may install it. Where it cannot be installed, the migration still
-- succeeds without these indexes and search stays correct, only unindexed; an operator can
-- later `CREATE EXTENSION pg_trgm` and create the indexes as below (README, "Lists").
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'pg_trgm unavailable (%): account search stays unindexed', SQLERRM;
    END;
    -- Wherever it lives, the operator class is named with its schema.
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX users_search_email ON users USING gin (email_normalized %I.gin_trgm_ops)', trgm_schema);
        EXECUTE format('CREATE INDEX users_search_username ON users USING gin (username_normalized %I.gin_trgm_ops)', trgm_schema);
        EXECUTE format('CREATE INDEX users_search_first_name ON users USING gin (LOWER(first_name) %I.gin_trgm_ops)', trgm_schema);
        EXECUTE format('CREATE INDEX users_search_last_name ON users USING gin (LOWER(last_name) %I.gin_trgm_ops)', trgm_schema);
    END IF;
END
$$;

-- The audit list is read newest first by (occurred_at, id), per tenant for tenant
-- administrators and across tenants for platform administrators; with `id` in the index a
-- page, a deep page and a cursor are all read in index order, with no sort.
DROP INDEX audit_events_time;
DROP INDEX audit_events_tenant_time;
CREATE INDEX audit_events_time ON audit_events (occurred_at, id);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at, id);
