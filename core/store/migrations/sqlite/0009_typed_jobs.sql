-- Typed job lifecycle: every job names what it is about (key | cylinder), and a block job
-- carried by a user key has a state of its own. Keep in step with the other backend's
-- 0009_typed_jobs.sql.
ALTER TABLE jobs ADD COLUMN target_kind TEXT NOT NULL DEFAULT '';
UPDATE jobs SET target_kind = 'key' WHERE kind = 'remote_update';
UPDATE jobs SET target_kind = 'cylinder' WHERE kind = 'cylinder_programming';
UPDATE jobs SET target_kind = COALESCE(
    (SELECT CASE o.kind WHEN 'key' THEN 'key' ELSE 'cylinder' END FROM objects o WHERE o.id = jobs.target_id),
    'cylinder')
  WHERE kind = 'audit_trail';
UPDATE jobs SET state = 'carried' WHERE state = 'loaded' AND carried_by IS NOT NULL;
-- The C-key holding a cylinder's job ("locked by") and the jobs waiting for a C-key.
CREATE INDEX jobs_open_by_target ON jobs(target_id, state) WHERE open = 1;
