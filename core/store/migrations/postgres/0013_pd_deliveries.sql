-- Jobs a remote PD delivered to a key (keep in step with the other backend's
-- 0013_pd_deliveries.sql): the hash of the program the PD wrote, and the report that closed the
-- job. Only the PD that delivered a job can confirm it, and only for the program it delivered;
-- a retransmitted report finds reported_at set and changes nothing.
CREATE TABLE pd_deliveries (
    job_id        BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    pd_id         BIGINT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    system_id     BIGINT NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    program_hash  TEXT NOT NULL,
    delivered_at  TEXT NOT NULL,
    reported_at   TEXT,
    outcome       TEXT,
    report_key    TEXT,
    PRIMARY KEY (job_id, pd_id)
);
