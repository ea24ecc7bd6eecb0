-- Roles and their permissions, per tenant, and the `system` tenant whose platform admins
-- manage every tenant.

-- Platform administration lives in a tenant of its own, so no ordinary tenant's admin can
-- ever hold a cross-tenant role. Its id is fixed like the default tenant's.
INSERT INTO tenants (id, slug, name, active, created_at)
VALUES ('00000000-0000-7000-8000-000000000000', 'system', 'System', 1, 0);

CREATE TABLE roles (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    -- The name users hold in user_roles; lowercase.
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of `resource:action` strings; `*` on either side is a wildcard.
    permissions TEXT NOT NULL,
    -- 1 for admin, user, viewer (and platform_admin): they cannot be deleted or renamed.
    built_in INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at)
VALUES
    ('00000000-0000-7000-8000-000000000001', 'admin', 'Everything within the tenant', '["*:*"]', 1, 0, 0),
    ('00000000-0000-7000-8000-000000000001', 'user', 'A signed-in member', '["profile:*"]', 1, 0, 0),
    ('00000000-0000-7000-8000-000000000001', 'viewer', 'Reads everything, changes nothing', '["*:read"]', 1, 0, 0),
    ('00000000-0000-7000-8000-000000000000', 'admin', 'Everything within the system tenant', '["*:*"]', 1, 0, 0),
    ('00000000-0000-7000-8000-000000000000', 'platform_admin', 'Manages every tenant', '["*:*", "tenants:*"]', 1, 0, 0);
