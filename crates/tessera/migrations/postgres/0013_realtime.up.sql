-- The real-time hub's event log: every published event, in the order its number says. Each
-- instance delivers the events it reads from here to its own connections, so a publish on one
-- instance reaches subscribers on every instance; `seq` is the event id clients see and
-- resume from (`Last-Event-ID`), the same on every instance. Rows are deleted once older
-- than any history or idempotency window.
CREATE TABLE realtime_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- `user:<id>`, `session:<id>`, `tenant:<tid>:<topic…>` or `flags`.
    channel TEXT NOT NULL,
    -- The event type (`service.provisioning.progress`): SSE's `event:` field.
    event_type TEXT NOT NULL,
    -- JSON.
    data TEXT NOT NULL,
    -- Unix milliseconds.
    created_at BIGINT NOT NULL,
    -- Who published (`client:<id>`, `user:<id>` or `system`), with its Idempotency-Key
    -- and a digest of the request: the same key again replays this event instead of
    -- publishing twice.
    publisher TEXT NOT NULL,
    idempotency_key TEXT,
    request_digest TEXT
);

-- A key names one publish per publisher.
CREATE UNIQUE INDEX realtime_events_idempotency
    ON realtime_events (publisher, idempotency_key);
-- Cleanup by age.
CREATE INDEX realtime_events_created ON realtime_events (created_at);

-- Single-use tickets that open a real-time connection (or, with an audience, that a
-- service redeems) for a session, valid 30 seconds. Only a hash of the ticket is stored.
CREATE TABLE realtime_tickets (
    ticket_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    -- NULL: Tessera's own hub; otherwise the client id of the service that may redeem it.
    audience TEXT,
    -- Unix seconds.
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Counting a session's outstanding tickets, and cleanup.
CREATE INDEX realtime_tickets_session ON realtime_tickets (session_id);
CREATE INDEX realtime_tickets_expires ON realtime_tickets (expires_at);
