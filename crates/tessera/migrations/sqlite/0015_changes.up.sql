-- Cache invalidations every instance must apply: a role definition, a service account, a
-- tenant, the signing keys or an account's details changed. Written in the changing
-- transaction; the change bus tells every instance the new `seq`, and each reads the rows
-- after the last one it applied, so a lost message costs a delay (the bus's reconciliation
-- read), never a stale cache. SQLite has one writer at a time, so numbers are in commit order.
CREATE TABLE cache_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- `roles`, `client`, `tenant`, `keys` or `user`.
    kind TEXT NOT NULL,
    -- What changed: the tenant of `roles` and `tenant`, the client or user id; empty for `keys`.
    subject TEXT NOT NULL,
    -- Unix milliseconds, only for pruning (no instance compares it with its own clock).
    created_at BIGINT NOT NULL
);

-- Pruning reads by time.
CREATE INDEX cache_changes_created ON cache_changes (created_at);
