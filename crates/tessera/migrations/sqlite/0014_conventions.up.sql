-- Idempotency keys (`Idempotency-Key` on state-changing requests). One row per principal and
-- key; neither is stored as sent: `scope` is an HMAC of both under a key derived from the
-- master key, so the table cannot be searched for a caller's keys. While the first request
-- runs, `status` is NULL (a second one with the same key is refused with 409); once it
-- answered 2xx, `answer` holds its status, headers and body sealed with AES-256-GCM under a
-- key derived from the master key *and the idempotency key*, which is never stored: a
-- database reader, even with the master key, cannot open an answer (a client secret shown
-- once, say) without the key only the caller holds.
CREATE TABLE idempotency_keys (
    scope TEXT PRIMARY KEY,
    -- SHA-256 of method, path and body: the same key with another request is refused (422).
    fingerprint TEXT NOT NULL,
    -- NULL while in flight.
    status INTEGER,
    -- Base64 of the sealed answer; NULL while in flight.
    answer TEXT,
    -- Unix seconds: when the request started (a row in flight longer than the request
    -- timeout belongs to a request that died and may be taken over).
    locked_at BIGINT NOT NULL,
    -- Unix seconds: the cleanup job deletes rows older than `idempotency.ttl_secs`.
    created_at BIGINT NOT NULL
);

-- Cleanup by age.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Writers of one administrative resource, one at a time: a row per resource path held while
-- an `If-Match` check and the write it guards run, so two administrators holding the same
-- ETag cannot both pass the check before either writes (a lost update).
CREATE TABLE resource_locks (
    resource TEXT PRIMARY KEY,
    -- Unix seconds; a lock older than the request timeout was left by a request that died.
    locked_at BIGINT NOT NULL
);

-- The status page: what operators (or their monitors) said about each service, newest last.
CREATE TABLE status_events (
    id TEXT PRIMARY KEY,
    -- The service the event is about (`api`, `billing`, ...).
    service TEXT NOT NULL,
    -- operational | degraded | partial_outage | major_outage | maintenance
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    -- Unix seconds: when a maintenance or incident is expected to end; NULL when unknown.
    ends_at BIGINT,
    -- Who posted it (`user:<id>` or `client:<id>`).
    author TEXT NOT NULL,
    -- Unix milliseconds.
    created_at BIGINT NOT NULL
);

-- Each service's latest event (the current status) and one service's history, newest first.
CREATE INDEX status_events_service_created ON status_events (service, created_at DESC);
-- Recent events across services, newest first.
CREATE INDEX status_events_created ON status_events (created_at DESC);
