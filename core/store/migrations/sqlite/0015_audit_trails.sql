-- Audit trails read from keys at remote PDs (keep in step with the other backend's
-- 0015_audit_trails.sql): one row per use of a key at a cylinder, as the key recorded it. The
-- primary key de-duplicates: a record uploaded again (by the same or another PD) is skipped.
CREATE TABLE audit_trail_entries (
    system_id    INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    key_id       INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    cylinder_id  INTEGER NOT NULL,
    at           TEXT NOT NULL,
    opened       INTEGER NOT NULL,
    pd_id        INTEGER,
    uploaded_at  TEXT NOT NULL,
    PRIMARY KEY (system_id, key_id, cylinder_id, at)
);
CREATE INDEX audit_trail_entries_by_cylinder ON audit_trail_entries (system_id, cylinder_id, at);
