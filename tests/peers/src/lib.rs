//! Real test servers for the connector tests, started by the tests themselves.
//!
//! `tests/run.sh` installs what they need (Debian `slapd` and `ldap-utils`, Python
//! `aiosmtpd`); every peer runs privately on free loopback ports out of its own temporary
//! directory, which it removes on drop.
//!
//! - [`TestCa`]: a CA and a `localhost`/`127.0.0.1` server certificate made at runtime
//!   (rcgen), written as PEM files; clients trust [`TestCa`]'s CA file.
//! - [`Slapd`]: a private OpenLDAP server (`/usr/sbin/slapd`, back-mdb) with suffix
//!   `dc=example,dc=com`, `ldap://` (StartTLS available) and `ldaps://` listeners, a service
//!   account that may read `ou=people`, and [`LdapPerson`] entries bulk-loaded by `slapadd`.
//!   Paged results (RFC 2696) and `modifyTimestamp` work.
//!   - `Slapd::start(people) -> Slapd`, `ldap_url()`, `ldaps_url()`, `ldap_port()`,
//!     `ldaps_port()`, `ca_pem_path()`, `suffix()`, `base_dn()`, `bind_dn()`,
//!     `bind_password()`, `admin_dn()`, `admin_password()`, `person_dn(uid)`;
//!   - while running: `add(&person)`, `modify(uid, attr, values)`, `modify_mail(uid, mail)`,
//!     `delete(uid)`, `search(filter, attrs)` (admin, plain LDIF text), `ldapmodify(ldif)`;
//!   - `stop()`, `start_again()` (same data, same ports), `is_running()`; drop kills slapd
//!     and removes the directory.
//! - [`CutProxy`]: a TCP proxy on a free loopback port that can cut connections:
//!   `CutProxy::start(target) -> CutProxy`, `addr()`, `port()`, `cut_after_bytes(n)` (after
//!   `n` more server→client bytes, drop both sides), `cut_now()`, `connections()`,
//!   `cuts()`. It runs on its own thread and tokio runtime, so sync and async tests can
//!   use it alike.
//! - [`SmtpPeer`]: an aiosmtpd server (`tests/peers/smtp_peer.py`) with STARTTLS from the
//!   test CA, optional AUTH PLAIN/LOGIN, storing each accepted message;
//!   `SmtpPeer::start(SmtpOptions { require_starttls, auth }) -> SmtpPeer`, `port()`,
//!   `addr()`, `ca_pem_path()`, `messages() -> Vec<ReceivedMail>`, `wait_for(n, timeout)`.
//!   Recipients steer it by local part: `tempfail@…` is refused with `451 4.3.0 try later`
//!   at RCPT, `reject@…` with `550 5.1.1 no such user`, and a message to
//!   `drop-after-data@…` is read to its end and then the connection is closed without an
//!   answer (and the message is not stored).
//!
//! - [`FakeHr`]: the fake HR system (`tests/peers/hr/fake_hr.py`, Python standard library;
//!   contract in `tests/peers/hr/README.md`): a paged REST/JSON endpoint with a
//!   `changed_since` filter and a SOAP 1.1 variant of the same generated persons;
//!   `FakeHr::start(n)`, `start_with(n, token)`, `json_url()`, `soap_url()`, `host()`, and
//!   the control endpoints `update`, `add`, `deactivate`, `remove`, `fault`, `clear`,
//!   `requests`, `watermark`. Drop stops it.
//!
//! All calls block (slapd and the SMTP peer start in well under a second; `Slapd::start`
//! with 100 000 persons takes about two); from async tests they can be called directly or
//! through `spawn_blocking`.
//!
//! Programs are looked up in `/usr/sbin`, `/usr/bin` and `PATH`; `LOCKGATE_TEST_PYTHON`
//! overrides the Python interpreter (default `python3`). Constructors panic with the
//! server's log when a peer cannot start: these are test helpers.

mod ca;
mod hr;
mod proxy;
mod slapd;
mod smtp;
mod util;

pub use ca::{TestCa, TlsFiles};
pub use hr::FakeHr;
pub use proxy::CutProxy;
pub use slapd::{LdapPerson, Slapd};
pub use smtp::{ReceivedMail, SmtpOptions, SmtpPeer};
pub use util::free_port;
