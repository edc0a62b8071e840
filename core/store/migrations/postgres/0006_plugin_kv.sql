-- Durable key-value storage of the WebAssembly plugins (lockgate:host/kv), scoped by plugin
-- name: a plugin only ever reads and writes rows under its own name. Gateway-wide (plugins are
-- not per locking system). Keep in step with ../sqlite/0006_plugin_kv.sql.
-- Keys use the "C" collation: bytewise order as on SQLite, so a prefix listing is one ordered
-- range scan and both databases list keys in the same order.

CREATE TABLE plugin_kv (
    plugin      TEXT NOT NULL,          -- the plugin's manifest name
    key         TEXT COLLATE "C" NOT NULL, -- 1..512 bytes (checked by the plugin host)
    value       BYTEA NOT NULL,         -- at most 1 MiB (checked by the plugin host)
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
);
