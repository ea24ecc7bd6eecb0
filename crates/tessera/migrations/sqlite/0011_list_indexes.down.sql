DROP INDEX audit_events_tenant_time;
DROP INDEX audit_events_time;
CREATE INDEX audit_events_time ON audit_events (occurred_at);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at);

DROP TRIGGER users_search_update;
DROP TRIGGER users_search_delete;
DROP TRIGGER users_search_insert;
DROP TABLE users_search;
