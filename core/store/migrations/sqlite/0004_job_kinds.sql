-- Audit-trail requests are jobs of their own kind: one open job per target and kind.
-- Keep in step with ../postgres/0004_job_kinds.sql.
DROP INDEX jobs_one_open_per_target;
CREATE UNIQUE INDEX jobs_one_open_per_target_kind ON jobs(target_id, kind) WHERE open = 1;
