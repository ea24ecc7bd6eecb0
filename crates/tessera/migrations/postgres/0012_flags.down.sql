-- Undoes 0012: drops the flag tables.
DROP TABLE flag_changes;
DROP TABLE flag_tenant_overrides;
DROP TABLE flags;
