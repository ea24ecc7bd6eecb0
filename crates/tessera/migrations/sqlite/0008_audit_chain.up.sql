-- The audit chain: the sealer finds unsealed events through this index, and retention keeps
-- the chain verifiable by remembering where the deleted part of it ended.

CREATE INDEX audit_events_unsealed ON audit_events (occurred_at, id) WHERE seq IS NULL;

CREATE TABLE audit_checkpoints (
    -- The last event removed by retention, and its hash: verification resumes from here.
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    -- Unix milliseconds.
    created_at BIGINT NOT NULL
);
