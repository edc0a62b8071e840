-- SCIM 2.0 provisioning (keep in step with the other backend's 0018_scim.sql):
-- * api_tokens.purpose: what a token may be used for: 'api' (the REST API) or 'scim' (only the
--   SCIM endpoints under /scim/v2, by a C-key holding the Web service role).
-- * scim_resources: the SCIM users and groups of a locking system, as the provisioning client
--   last wrote them (body: the resource without id and meta, so a read returns what was
--   written), with the employee a user maintains (person_id; the employee carries
--   synced_from = 'scim'). Groups are tags on their members' employees, and belong to the domain
--   of the client that created them (domain_id; a user's domain is its employee's). version is
--   the ETag.
ALTER TABLE api_tokens ADD COLUMN purpose TEXT NOT NULL DEFAULT 'api';
CREATE TABLE scim_resources (
    system_id     BIGINT NOT NULL REFERENCES locking_systems(id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    name_fold     TEXT NOT NULL,
    external_id   TEXT,
    person_id     BIGINT REFERENCES objects(id) ON DELETE CASCADE,
    domain_id     BIGINT,
    body          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (system_id, id),
    UNIQUE (system_id, resource_type, name_fold)
);
CREATE INDEX scim_resources_by_person ON scim_resources(person_id);
