DROP TABLE realtime_tickets;
DROP TABLE realtime_events;
