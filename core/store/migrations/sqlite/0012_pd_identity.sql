-- Remote PD identity (keep in step with the other backend's 0012_pd_identity.sql):
-- * pd_ca: the gateway's PD certificate authority, one row: its certificate, its private key and
--   the Ed25519 key that signs key revocation lists, both sealed with a key kept outside the
--   database ([pds] ca_key_file / LOCKGATE_PD_CA_KEY).
-- * pd_enrolment_codes: one-time codes an administrator creates on a PD's record; stored as
--   SHA-256 hashes, single use (used_at), expiring.
-- * pd_certificates: every certificate a PD has held (issued at enrolment or uploaded). A
--   connection's client certificate is matched by fingerprint; a revoked one, or one whose PD
--   is deleted (cascade), fails at the next handshake.
CREATE TABLE pd_ca (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    certificate_pem TEXT NOT NULL,
    sealed_key      TEXT NOT NULL,
    sealed_krl_key  TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE pd_enrolment_codes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id   INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    pd_id       INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX pd_enrolment_codes_by_pd ON pd_enrolment_codes(pd_id);
CREATE TABLE pd_certificates (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id         INTEGER NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    pd_id             INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    fingerprint       TEXT NOT NULL UNIQUE,
    serial            TEXT NOT NULL,
    certificate_pem   TEXT NOT NULL,
    source            TEXT NOT NULL,
    not_before        TEXT NOT NULL,
    not_after         TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    revoked_at        TEXT,
    revocation_reason TEXT
);
CREATE INDEX pd_certificates_by_pd ON pd_certificates(pd_id);
