DROP TABLE status_events;
DROP TABLE resource_locks;
DROP TABLE idempotency_keys;
