-- The revocation feed: every revocation that services verifying tokens locally must honour,
-- in the order written. Services follow it by cursor (`seq`) and drop an entry once
-- `expires_at` has passed, because no token it covers can still be valid then. Cleanup
-- deletes such entries here too.

CREATE TABLE revocations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    -- `session` (subject: a session id), `subject` (a user or client id: every token of
    -- theirs issued at or before `issued_before`), `token` (a jti).
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    issued_before BIGINT,
    -- Unix seconds after which no token the entry covers is valid.
    expires_at BIGINT NOT NULL,
    -- Unix milliseconds; also tells a gap left by a rolled-back write from one still being
    -- committed.
    created_at BIGINT NOT NULL
);

CREATE INDEX revocations_expires ON revocations (expires_at);
