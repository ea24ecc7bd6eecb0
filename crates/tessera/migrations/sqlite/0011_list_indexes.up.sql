-- Lists that stay fast as tenants grow: an indexed search over accounts and an audit log
-- index in the exact order it is browsed.

-- Account search (`GET /api/v1/admin/users?q=`) is a substring match on the four columns
-- below. A trigram index answers it without reading every account: any text of three or more
-- characters contained in a column shares all its trigrams with it. The index only narrows the
-- candidates; the query still applies the exact `LIKE` rule to each, so an index that misses
-- nothing can never change an answer. It folds case for every script, a superset of the
-- ASCII folding `LIKE` does here, so it misses nothing.
--
-- External content: the text stays in `users` alone, linked by rowid. `users` has indexes, so
-- VACUUM keeps its rowids (it renumbers only tables without any).
CREATE VIRTUAL TABLE users_search USING fts5 (
    email_normalized, username_normalized, first_name, last_name,
    content = 'users', content_rowid = 'rowid', tokenize = 'trigram'
);

-- Kept in step by triggers, so every write path (create, import, rename) is covered.
CREATE TRIGGER users_search_insert AFTER INSERT ON users BEGIN
    INSERT INTO users_search (rowid, email_normalized, username_normalized, first_name, last_name)
    VALUES (new.rowid, new.email_normalized, new.username_normalized, new.first_name, new.last_name);
END;

CREATE TRIGGER users_search_delete AFTER DELETE ON users BEGIN
    INSERT INTO users_search (users_search, rowid, email_normalized, username_normalized, first_name, last_name)
    VALUES ('delete', old.rowid, old.email_normalized, old.username_normalized, old.first_name, old.last_name);
END;

CREATE TRIGGER users_search_update
AFTER UPDATE OF email_normalized, username_normalized, first_name, last_name ON users BEGIN
    INSERT INTO users_search (users_search, rowid, email_normalized, username_normalized, first_name, last_name)
    VALUES ('delete', old.rowid, old.email_normalized, old.username_normalized, old.first_name, old.last_name);
    INSERT INTO users_search (rowid, email_normalized, username_normalized, first_name, last_name)
    VALUES (new.rowid, new.email_normalized, new.username_normalized, new.first_name, new.last_name);
END;

INSERT INTO users_search (users_search) VALUES ('rebuild');

-- The audit list is read newest first by (occurred_at, id), per tenant for tenant
-- administrators and across tenants for platform administrators; with `id` in the index a
-- page, a deep page and a cursor are all read in index order, with no sort.
DROP INDEX audit_events_time;
DROP INDEX audit_events_tenant_time;
CREATE INDEX audit_events_time ON audit_events (occurred_at, id);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at, id);
