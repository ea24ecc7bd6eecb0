-- Sessions (one per login) and the refresh tokens that extend them.

CREATE TABLE sessions (
    -- UUIDv7 as text; access tokens carry it as `sid`.
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    -- Unix seconds, all of them.
    created_at BIGINT NOT NULL,
    -- Moved forward by every refresh; with it the idle expiry.
    last_used_at BIGINT NOT NULL,
    -- The session ends at the earlier of these two: idle (extended by use, never past the
    -- absolute one) and absolute (fixed at login).
    idle_expires_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    -- When the user proved who they are (the login), for `auth_time`.
    auth_time BIGINT NOT NULL,
    -- Authentication methods (RFC 8176) as a JSON array, such as ["pwd"].
    amr TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    -- Set once: when, why (`logout`, `refresh_reuse`, `password_changed`, …) and by whom
    -- (`user:<id>`, `system`).
    revoked_at BIGINT,
    revoked_reason TEXT,
    revoked_by TEXT
);

-- "My sessions", newest first, and revoking all of a user's sessions.
CREATE INDEX sessions_user_created ON sessions (user_id, created_at DESC);
-- Other instances poll for recent revocations to drop them from their session caches.
CREATE INDEX sessions_revoked ON sessions (revoked_at);

CREATE TABLE refresh_tokens (
    -- Hex SHA-256 of the token: the token itself is never stored. Refresh finds its row by
    -- this, hence the primary key (a unique index).
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    -- NULL while this is the session's current token. Rotation sets it in a conditional
    -- update (`WHERE rotated_at IS NULL`), so of concurrent refreshes exactly one rotates;
    -- the time decides between the grace answer and reuse.
    rotated_at BIGINT
);

CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
