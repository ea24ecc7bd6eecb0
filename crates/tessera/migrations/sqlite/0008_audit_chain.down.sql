DROP TABLE audit_checkpoints;
DROP INDEX audit_events_unsealed;
