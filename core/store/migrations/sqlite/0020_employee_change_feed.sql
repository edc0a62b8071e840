-- The employees' change feed of the web services (ListChanges, Store::employee_changes; keep in
-- step with the other backend's 0020): events of one system and object kind read forward from
-- a position, without scanning the other kinds' events.
CREATE INDEX events_by_kind ON events(system_id, object_kind, id);
