ALTER TABLE mfa_challenges DROP COLUMN purpose;
ALTER TABLE tenants DROP COLUMN mfa_required_roles;
