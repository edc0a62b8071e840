-- The durable background runtime (lockgate-jobs): one job queue for all background work and
-- the transactional outbox. Gateway-wide (not per locking system): a job that concerns one
-- system names it in its payload. Keep in step with ../postgres/0007_queue.sql.
-- Timestamps are RFC 3339 UTC text with microseconds (fixed width, so text order is time order).

CREATE TABLE queue_jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT NOT NULL,         -- handler the job is for
    payload           TEXT NOT NULL,         -- JSON
    state             TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'done', 'dead')),
    attempts          INTEGER NOT NULL DEFAULT 0, -- claims so far (a claim starts an attempt)
    max_attempts      INTEGER NOT NULL,
    run_at            TEXT NOT NULL,         -- not claimable before (retry backoff)
    lease_owner       TEXT,                  -- worker holding the lease (state leased)
    lease_expires_at  TEXT,                  -- claimable again from then on
    fencing           INTEGER NOT NULL DEFAULT 0, -- +1 on every claim; complete/fail/extend must match
    last_error        TEXT,
    unique_key        TEXT,                  -- dedupe: one ready/leased job per (kind, unique_key)
    periodic_task     TEXT,                  -- periodic task name, with its slot
    slot              INTEGER,               -- floor(epoch ms / interval ms)
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (periodic_task, slot)             -- one job per periodic slot, however many replicas
);
CREATE UNIQUE INDEX queue_jobs_unique_active ON queue_jobs(kind, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('ready', 'leased');
CREATE INDEX queue_jobs_ready ON queue_jobs(run_at, id) WHERE state = 'ready';
CREATE INDEX queue_jobs_leased ON queue_jobs(lease_expires_at) WHERE state = 'leased';
CREATE INDEX queue_jobs_by_state ON queue_jobs(state, id);
CREATE INDEX queue_jobs_done ON queue_jobs(updated_at) WHERE state = 'done';

-- Outbound side effects (email, MQTT, ...), inserted in the transaction of the change that
-- causes them and delivered at least once, each under its stable message_id.
CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id        TEXT NOT NULL UNIQUE,  -- stable id (UUID form): receivers dedupe on it
    topic             TEXT NOT NULL,         -- channel (e.g. mail, mqtt/<topic>)
    payload           TEXT NOT NULL,         -- JSON
    created_at        TEXT NOT NULL,
    next_attempt_at   TEXT NOT NULL,         -- not claimable before (retry backoff)
    dispatched_at     TEXT,                  -- delivered
    dead_at           TEXT,                  -- given up after max attempts (kept for inspection)
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    lease_owner       TEXT,
    lease_expires_at  TEXT,
    fencing           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox(next_attempt_at, id)
    WHERE dispatched_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_dispatched ON outbox(dispatched_at) WHERE dispatched_at IS NOT NULL;
