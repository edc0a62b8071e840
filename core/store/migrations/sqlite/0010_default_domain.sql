-- The locking system's default domain (the one created with it): its administrators see
-- every temporary access group (manual §8.2.5). Existing systems: their first domain,
-- which `init_system` created. Keep in step with the other backend's 0010_default_domain.sql.
ALTER TABLE locking_systems ADD COLUMN default_domain_id INTEGER;
UPDATE locking_systems SET default_domain_id = (
    SELECT MIN(o.id) FROM objects o WHERE o.system_id = locking_systems.id AND o.kind = 'domain');
