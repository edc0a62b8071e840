-- SAML single sign-on for administrators (keep in step with the other backend's 0017_sso.sql):
-- * sso_settings: per locking system (manual §6.4 "Single sign on", §8.10): enabled by the super
--   administrator, the identity provider's metadata (imported from a file or a URL), the
--   attribute that names the subject, and the service provider's certificate (its private key
--   is not kept: nothing is signed with it yet).
-- * sso_identities: the SSO subject a C-key enrolled (one per C-key, one C-key per subject);
--   only an enrolled C-key logs in by SSO (DOMAIN.md §10). Deleting the C-key forgets it.
-- * sso_requests: authentication requests sent to the identity provider and not yet answered
--   (a response must answer one of them: InResponseTo); single use, expiring.
-- * sso_assertions: assertion ids already used, kept until their NotOnOrAfter (replay cache).
-- * admin_sessions: server-side sessions of administrators logged in by SSO, found by the
--   SHA-256 of the cookie's secret; idle and absolute expiry, ended at logout.
CREATE TABLE sso_settings (
    system_id              INTEGER PRIMARY KEY REFERENCES locking_systems(id) ON DELETE CASCADE,
    enabled                INTEGER NOT NULL DEFAULT 0,
    idp_metadata           TEXT,
    idp_metadata_url       TEXT,
    idp_entity_id          TEXT,
    idp_metadata_loaded_at TEXT,
    subject_attribute      TEXT,
    sp_certificate_pem     TEXT,
    sp_certificate_created_at TEXT,
    updated_at             TEXT NOT NULL
);
CREATE TABLE sso_identities (
    c_key_id    INTEGER PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
    system_id   INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    subject     TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    UNIQUE (system_id, subject)
);
CREATE TABLE sso_requests (
    request_id  TEXT PRIMARY KEY,
    system_id   INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    c_key_id    INTEGER REFERENCES objects(id) ON DELETE CASCADE,
    return_to   TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE TABLE sso_assertions (
    system_id       INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    assertion_id    TEXT NOT NULL,
    not_on_or_after TEXT NOT NULL,
    PRIMARY KEY (system_id, assertion_id)
);
CREATE TABLE admin_sessions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    session_hash        TEXT NOT NULL UNIQUE,
    system_id           INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    c_key_id            INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    method              TEXT NOT NULL,
    csrf_token          TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    last_seen_at        TEXT NOT NULL,
    absolute_expires_at TEXT NOT NULL,
    ended_at            TEXT
);
CREATE INDEX admin_sessions_by_c_key ON admin_sessions(c_key_id);
