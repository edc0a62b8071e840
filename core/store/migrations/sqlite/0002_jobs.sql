-- Actual state confirmed by hardware, and the jobs that bring it to the defined state.
-- Keep in step with ../postgres/0002_jobs.sql.

CREATE TABLE key_actual (
    key_id        INTEGER PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
    system_id     INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    program       TEXT NOT NULL,          -- JSON KeyProgram
    clock         TEXT NOT NULL,          -- JSON KeyClock
    confirmed_at  TEXT NOT NULL
);

CREATE TABLE cylinder_actual (
    cylinder_id   INTEGER PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
    system_id     INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    program       TEXT NOT NULL,          -- JSON CylinderProgram
    confirmed_at  TEXT NOT NULL
);

-- Remote update jobs (keys) and cylinder programming jobs (cylinders).
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id     INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,          -- remote_update | cylinder_programming
    target_id     INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    state         TEXT NOT NULL,          -- created | awaiting_approval | loaded | finished | failed | cancelled | replaced
    open          INTEGER NOT NULL,       -- 1 while not final (at most one open job per target)
    program       TEXT NOT NULL,          -- JSON target program
    actions       TEXT NOT NULL,          -- JSON list of cylinder actions
    priority      TEXT NOT NULL,
    loaded_on     INTEGER,                -- C-key holding a loaded cylinder job
    assigned_to   INTEGER,                -- C-key a prepared job waits for
    replaced_by   INTEGER,
    reason        TEXT,
    created_by    INTEGER,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX jobs_one_open_per_target ON jobs(target_id) WHERE open = 1;
CREATE INDEX jobs_by_system_state ON jobs(system_id, state, id);
CREATE INDEX jobs_by_target ON jobs(target_id, id);
