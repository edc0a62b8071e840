-- lockgate schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
-- Only INTEGER, TEXT, REAL and BLOB column types: the sqlx Any driver maps nothing else.

CREATE TABLE locking_systems (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    fixed       TEXT NOT NULL,          -- JSON FixedSettings, never changed
    settings    TEXT NOT NULL,          -- JSON SystemSettings
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

-- Every administrable object: indexed projection columns plus the full JSON body.
CREATE TABLE objects (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused (events keep them)
    system_id     INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    domain_id     INTEGER REFERENCES objects(id),
    name          TEXT NOT NULL,
    name_fold     TEXT NOT NULL,
    marking       TEXT,
    marking_fold  TEXT,
    unique_name   TEXT,
    status        TEXT,
    type          TEXT,
    body          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX objects_marking_uq ON objects(system_id, kind, marking_fold) WHERE marking_fold IS NOT NULL;
CREATE UNIQUE INDEX objects_name_uq ON objects(system_id, kind, unique_name) WHERE unique_name IS NOT NULL;
CREATE INDEX objects_by_name ON objects(system_id, kind, name_fold, id);
CREATE INDEX objects_by_domain ON objects(domain_id);
CREATE INDEX objects_by_status ON objects(system_id, kind, status);

-- References between objects: deletion protection and "where used".
CREATE TABLE object_refs (
    from_id   INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    relation  TEXT NOT NULL,
    to_id     INTEGER NOT NULL REFERENCES objects(id),
    PRIMARY KEY (from_id, relation, to_id)
);
CREATE INDEX object_refs_to ON object_refs(to_id);

CREATE TABLE object_tags (
    object_id  INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    system_id  INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    tag_fold   TEXT NOT NULL,
    PRIMARY KEY (object_id, tag_fold)
);
CREATE INDEX object_tags_search ON object_tags(system_id, kind, tag_fold, object_id);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id       INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    at              TEXT NOT NULL,
    actor_id        INTEGER,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    object_kind     TEXT NOT NULL,
    object_id       INTEGER,
    object_label    TEXT NOT NULL,
    changes         TEXT NOT NULL,
    correlation_id  TEXT NOT NULL
);
CREATE INDEX events_by_object ON events(system_id, object_id, id);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused (events keep them)
    system_id     INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    c_key_id      INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_tokens_by_c_key ON api_tokens(c_key_id);
