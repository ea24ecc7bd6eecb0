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
    -- Hex SHA-256 of the session's current refresh token. Rotation is one conditional update
    -- of this row (`WHERE refresh_hash = <presented>`): of concurrent refreshes with the same
    -- token exactly one matches, on both databases, in a single statement.
    refresh_hash TEXT NOT NULL,
    -- The token it replaced and when, which tells the grace answer (the same token again
    -- within seconds: a second tab) from reuse (later: a copy in someone else's hands).
    previous_refresh_hash TEXT,
    refreshed_at BIGINT,
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
-- Every refresh finds its session by the presented token.
CREATE UNIQUE INDEX sessions_refresh_hash ON sessions (refresh_hash);

CREATE TABLE refresh_tokens (
    -- Every refresh token ever issued, as hex SHA-256 (the token itself is never stored), and
    -- its session: a token that is no longer its session's current or previous one is found
    -- here and recognised as reuse, which revokes the session.
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);

CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
