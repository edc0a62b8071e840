-- Liveness of remote PDs (keep in step with the other backend's 0014_pd_status.sql): the last
-- heartbeat, what the PD reported with it, and whether it counts as online. A PD that missed
-- [background] pd_missed_heartbeats heartbeats is marked offline (an event) until it is heard
-- from again (an event).
CREATE TABLE pd_status (
    pd_id          INTEGER PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
    system_id      INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    online         INTEGER NOT NULL,
    last_seen      TEXT NOT NULL,
    offline_since  TEXT,
    firmware       TEXT
);
