-- The key structure (generation, firmware, key group, access-list capacity) last written
-- at a local PD: a key whose structure changed since needs a re-edition there, which a
-- remote update cannot perform. NULL: not recorded yet (taken at the next confirmation).
ALTER TABLE key_actual ADD COLUMN structure TEXT;
