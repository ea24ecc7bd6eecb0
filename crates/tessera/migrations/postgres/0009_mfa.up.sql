-- TOTP second factor: the sealed secret of each enrolled (or enrolling) account, the hashes of
-- its single-use recovery codes, and the short-lived challenges between password and code.

CREATE TABLE mfa_totp (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    -- The secret, sealed under a key derived from the master key (base64).
    secret_sealed TEXT NOT NULL,
    -- Unix seconds; NULL until the first code confirmed the enrollment.
    confirmed_at BIGINT,
    -- The last time step accepted: a code is accepted once.
    last_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE mfa_recovery_codes (
    -- HMAC-SHA256 (key derived from the master key) of the code, hex.
    code_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    used_at BIGINT
);

CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

CREATE TABLE mfa_challenges (
    -- SHA-256 of the mfa_token, hex.
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    -- `body` or `cookie`: how the tokens go once the code is right.
    delivery TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);
