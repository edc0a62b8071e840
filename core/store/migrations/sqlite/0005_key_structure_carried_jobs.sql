-- The key structure (generation, firmware, key group, access-list capacity) last written
-- at a local PD: a key whose structure changed since needs a re-edition there, which a
-- remote update cannot perform. NULL: not recorded yet (taken at the next confirmation).
ALTER TABLE key_actual ADD COLUMN structure TEXT;

-- A block job carried to its cylinder by a user key ("block lost key with user keys").
ALTER TABLE jobs ADD COLUMN carried_by INTEGER REFERENCES objects(id) ON DELETE SET NULL;
