-- An SSO login is answered only in the browser that started it (keep in step with the other
-- backend's 0019_sso_login_binding.sql): sso_requests.browser_hash is the SHA-256 of the secret
-- the login endpoint put in the browser's login-state cookie; the ACS refuses a login response
-- posted without that cookie (login CSRF: someone else's response pushed into this browser).
-- Enrolment requests are started with the C-key's own token and carry no browser secret.
ALTER TABLE sso_requests ADD COLUMN browser_hash TEXT;
