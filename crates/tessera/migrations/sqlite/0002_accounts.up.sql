-- Tenants, users and their roles, and the audit log every account change writes to in the
-- same transaction.

CREATE TABLE tenants (
    -- UUIDv7 as text.
    id TEXT PRIMARY KEY,
    -- Stable URL-safe name users type at login (`tenant` field); lowercase.
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- 1 or 0: integers, because booleans do not decode through sqlx's Any driver on SQLite.
    active INTEGER NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL
);

-- The tenant every installation starts with; its id is fixed so every instance agrees on it.
INSERT INTO tenants (id, slug, name, active, created_at)
VALUES ('00000000-0000-7000-8000-000000000001', 'default', 'Default', 1, 0);

CREATE TABLE users (
    -- UUIDv7 as text: time-ordered, so new rows append to the index.
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    -- As the user typed it, for display and mail.
    email TEXT NOT NULL,
    -- Lowercased: uniqueness and login compare this, so case never splits an account.
    email_normalized TEXT NOT NULL,
    username TEXT,
    username_normalized TEXT,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    -- PHC string (Argon2id), or a legacy hash until the next successful login upgrades it.
    -- NULL for accounts that cannot log in with a password.
    password_hash TEXT,
    -- 1 or 0 (see tenants.active).
    active INTEGER NOT NULL,
    -- `password` for local accounts; other providers arrive with federation.
    auth_provider TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT
);

-- Login looks accounts up by (tenant, email) and (tenant, username).
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, email_normalized);
CREATE UNIQUE INDEX users_tenant_username ON users (tenant_id, username_normalized);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Role name within the user's tenant (`admin`, `user`, `viewer`, or a custom role).
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- Security-relevant events. `seq` and `hash` stay NULL when written: a single background
-- sealer numbers events in order and chains their hashes, so request writes never wait on
-- each other for tamper evidence.
CREATE TABLE audit_events (
    -- UUIDv7 as text.
    id TEXT PRIMARY KEY,
    -- Unix milliseconds.
    occurred_at BIGINT NOT NULL,
    tenant_id TEXT,
    -- `user`, `client`, `system` (CLI, bootstrap) or `anonymous`.
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    -- Dotted verb such as `user.created` or `login.failed`.
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    -- `success` or `failure`.
    outcome TEXT NOT NULL,
    -- Why, for failures and revocations; never a secret.
    reason TEXT,
    ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    -- Further facts as a JSON object.
    details TEXT,
    -- Filled by the sealer: position in the chain, and the hash linking to the previous event.
    seq BIGINT UNIQUE,
    hash TEXT
);

-- The admin log is browsed by time, per tenant and per actor.
CREATE INDEX audit_events_time ON audit_events (occurred_at);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_actor_time ON audit_events (actor_id, occurred_at);
