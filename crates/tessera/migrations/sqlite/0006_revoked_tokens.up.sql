-- Access tokens revoked before their expiry (RFC 7009), by their `jti`. A row only matters
-- until the token would have expired anyway; every instance keeps the unexpired ones in
-- memory and polls for new ones.

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    -- The token's own `exp` (Unix seconds): after it, the row can go.
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);

-- Instances poll for recent revocations; cleanup drops expired rows.
CREATE INDEX revoked_tokens_revoked ON revoked_tokens (revoked_at);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);
