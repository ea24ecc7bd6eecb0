-- Service accounts: OAuth 2.0 clients that obtain tokens with their own credentials (client
-- credentials grant), scoped to one tenant and to the scopes they are allowed.

CREATE TABLE clients (
    -- The client_id: UUIDv7 as text.
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    -- Hex SHA-256 of the secret. A plain hash is right for 256 random bits: nothing can be
    -- guessed from it, and checking it costs nothing an attacker could use.
    secret_hash TEXT NOT NULL,
    -- JSON array of the scopes (`resource:action`, wildcards allowed) tokens may carry.
    scopes TEXT NOT NULL,
    -- 1 or 0.
    active INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    secret_rotated_at BIGINT NOT NULL
);

-- The admin API lists a tenant's clients.
CREATE INDEX clients_tenant ON clients (tenant_id, created_at);
