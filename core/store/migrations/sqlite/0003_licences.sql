-- The licence installed per locking system (DOMAIN.md §11). Keep in step with ../postgres/0003_licences.sql.
-- Only a strictly higher number replaces the row; the rule is enforced by the conditional upsert
-- in core/store/src/licences.rs, so it holds under concurrency and across restarts.

CREATE TABLE licences (
    system_id     INTEGER PRIMARY KEY REFERENCES locking_systems(id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,       -- licence number of the installed file (0 .. 2^63-1)
    file          TEXT NOT NULL,          -- the signed licence file exactly as installed
    installed_at  TEXT NOT NULL
);
