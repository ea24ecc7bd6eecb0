-- Tenants may require a second factor of the holders of given roles; a login then has to
-- enroll first, through a challenge of its own purpose.

-- JSON array of role names.
ALTER TABLE tenants ADD COLUMN mfa_required_roles TEXT NOT NULL DEFAULT '[]';
-- `verify` (a code completes the login) or `enroll` (the account must enroll first).
ALTER TABLE mfa_challenges ADD COLUMN purpose TEXT NOT NULL DEFAULT 'verify';
