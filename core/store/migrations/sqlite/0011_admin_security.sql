-- Administrator security (keep in step with the other backend's 0011_admin_security.sql):
-- * api_tokens.issued_by: the C-key whose administrator issued the token. A token's rights and
--   domains are capped at its issuer's on every request; NULL (tokens from before, and the
--   bootstrap token) means the token's own C-key issued it. Deleting the issuer deletes its tokens.
-- * locking_systems.maintenance_from: the system is locked for maintenance from then on (manual §6.2).
-- * locking_systems.clock_high_water: the latest time the gateway has seen, so that a clock set
--   back does not revive an expired licence.
ALTER TABLE api_tokens ADD COLUMN issued_by INTEGER REFERENCES objects(id) ON DELETE CASCADE;
ALTER TABLE locking_systems ADD COLUMN maintenance_from TEXT;
ALTER TABLE locking_systems ADD COLUMN clock_high_water TEXT;
