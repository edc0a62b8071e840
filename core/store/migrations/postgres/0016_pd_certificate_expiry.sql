-- When a PD certificate's coming expiry was announced (keep in step with the other backend's
-- 0016_pd_certificate_expiry.sql): the warning (an event and a notification) goes out once
-- per certificate, unless the PD renewed it first.
ALTER TABLE pd_certificates ADD COLUMN expiry_warned_at TEXT;
-- The issue time of the newest key revocation list a PD was given (at heartbeat or on
-- request): its age shows in the PD's status.
ALTER TABLE pd_status ADD COLUMN krl_issued_at TEXT;
-- The boot-loader firmware a generation 1 wall PD reported at its last heartbeat.
ALTER TABLE pd_status ADD COLUMN bootloader TEXT;
