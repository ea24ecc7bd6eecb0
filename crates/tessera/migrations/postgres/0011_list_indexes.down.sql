DROP INDEX audit_events_tenant_time;
DROP INDEX audit_events_time;
CREATE INDEX audit_events_time ON audit_events (occurred_at);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at);

-- The extension stays: other databases objects may use it, and it holds no data of ours.
DROP INDEX IF EXISTS users_search_last_name;
DROP INDEX IF EXISTS users_search_first_name;
DROP INDEX IF EXISTS users_search_username;
DROP INDEX IF EXISTS users_search_email;
