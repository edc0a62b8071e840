-- Event retention (`[background] event_retention_days`): the purge deletes each system's
-- oldest events in bounded batches. Keep in step with ../sqlite/0008_events_by_time.sql.
CREATE INDEX events_by_time ON events(system_id, at, id);
