DROP TABLE audit_events;
DROP TABLE user_roles;
DROP TABLE users;
DROP TABLE tenants;
