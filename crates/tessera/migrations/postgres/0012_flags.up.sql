-- Feature flags created or overridden through the admin API. Flags declared in the config
-- file live there; a row here with origin `config` holds only the values and rules the API
-- overrode for such a flag, so the file stays the declaration and the API the live change.

CREATE TABLE flags (
    key TEXT PRIMARY KEY,
    -- `api` (the whole definition lives here) or `config` (an override of a declared flag).
    origin TEXT NOT NULL,
    -- JSON: the definition (`api`) or the overridden fields (`config`).
    definition TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A tenant's own value of a flag, set by that tenant's administrators.
CREATE TABLE flag_tenant_overrides (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    flag_key TEXT NOT NULL,
    -- JSON value of the flag's type.
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, flag_key)
);

-- Every change of a flag or override, in commit order: each instance polls the newest
-- `seq` to reload its flag set within a second, and the change streams tell subscribers.
CREATE TABLE flag_changes (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flag_key TEXT NOT NULL,
    -- The tenant whose override changed; NULL for a change every tenant sees.
    tenant_id TEXT,
    -- Unix milliseconds.
    created_at BIGINT NOT NULL
);

-- Pruning old changes reads by time.
CREATE INDEX flag_changes_created ON flag_changes (created_at);
