//! A private OpenLDAP server per test: `slapd.conf` in a temporary directory, data bulk-loaded
//! with `slapadd`, `ldap://` and `ldaps://` listeners on free loopback ports.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

use crate::ca::{TestCa, TlsFiles};
use crate::util::{free_port, poll, program, terminate};

const SUFFIX: &str = "dc=example,dc=com";
const PEOPLE: &str = "ou=people,dc=example,dc=com";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
const ADMIN_PASSWORD: &str = "admin-secret";
const SERVICE_DN: &str = "cn=lockgate,ou=services,dc=example,dc=com";
const SERVICE_PASSWORD: &str = "lockgate-service-secret";
/// How long slapd may take to answer after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A person of `ou=people` (`objectClass: inetOrgPerson`, `cn` = "given_name sn").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LdapPerson {
    /// `uid`, also the RDN: `uid=…,ou=people,dc=example,dc=com`.
    pub uid: String,
    /// `givenName`.
    pub given_name: String,
    /// `sn`.
    pub sn: String,
    /// `mail`.
    pub mail: Option<String>,
    /// `telephoneNumber`.
    pub telephone: Option<String>,
    /// `departmentNumber`.
    pub department: Option<String>,
    /// `preferredLanguage`.
    pub preferred_language: Option<String>,
    /// Further attributes, written as they are (`("employeeNumber", "E-1")`, `("ou", "R&D")`).
    pub extra: Vec<(String, String)>,
}

impl LdapPerson {
    /// A person with only the required attributes.
    pub fn new(uid: &str, given_name: &str, sn: &str) -> LdapPerson {
        LdapPerson {
            uid: uid.to_owned(),
            given_name: given_name.to_owned(),
            sn: sn.to_owned(),
            ..LdapPerson::default()
        }
    }

    /// Sets `mail`.
    pub fn mail(mut self, mail: &str) -> LdapPerson {
        self.mail = Some(mail.to_owned());
        self
    }

    /// Sets `telephoneNumber`.
    pub fn telephone(mut self, telephone: &str) -> LdapPerson {
        self.telephone = Some(telephone.to_owned());
        self
    }

    /// Sets `departmentNumber`.
    pub fn department(mut self, department: &str) -> LdapPerson {
        self.department = Some(department.to_owned());
        self
    }

    /// Sets `preferredLanguage`.
    pub fn preferred_language(mut self, language: &str) -> LdapPerson {
        self.preferred_language = Some(language.to_owned());
        self
    }

    /// Adds a further attribute value.
    pub fn attr(mut self, name: &str, value: &str) -> LdapPerson {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The entry's DN.
    pub fn dn(&self) -> String {
        person_dn(&self.uid)
    }

    /// The entry as LDIF (ending with an empty line).
    pub fn to_ldif(&self) -> String {
        let mut out = String::new();
        ldif_line(&mut out, "dn", &self.dn());
        out.push_str("objectClass: inetOrgPerson\n");
        ldif_line(&mut out, "uid", &self.uid);
        ldif_line(&mut out, "cn", &format!("{} {}", self.given_name, self.sn));
        ldif_line(&mut out, "givenName", &self.given_name);
        ldif_line(&mut out, "sn", &self.sn);
        let optional = [
            ("mail", &self.mail),
            ("telephoneNumber", &self.telephone),
            ("departmentNumber", &self.department),
            ("preferredLanguage", &self.preferred_language),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                ldif_line(&mut out, name, value);
            }
        }
        for (name, value) in &self.extra {
            ldif_line(&mut out, name, value);
        }
        out.push('\n');
        out
    }
}

fn person_dn(uid: &str) -> String {
    format!("uid={},{PEOPLE}", escape_dn_value(uid))
}

/// RFC 4514 escaping of an attribute value inside a DN.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
        if edge || matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `name: value` LDIF line, base64 (`name:: …`) when the value is not a safe string.
fn ldif_line(out: &mut String, name: &str, value: &str) {
    let safe = value
        .bytes()
        .all(|b| b.is_ascii() && b != b'\n' && b != b'\r' && b != 0)
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        let _ = writeln!(out, "{name}: {value}");
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        let _ = writeln!(out, "{name}:: {encoded}");
    }
}

/// A private slapd: see the crate documentation. Drop kills it and removes its directory.
#[derive(Debug)]
pub struct Slapd {
    dir: TempDir,
    tls: TlsFiles,
    ldap_port: u16,
    ldaps_port: u16,
    child: Option<Child>,
    load_time: Duration,
    start_time: Duration,
}

impl Slapd {
    /// Writes the configuration and a fresh test CA into a temporary directory, bulk-loads
    /// the suffix, `ou=people` (with `people`), `ou=services` and the service account with
    /// `slapadd`, starts slapd and waits until it answers a bind.
    pub fn start(people: impl IntoIterator<Item = LdapPerson>) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("lockgate-slapd-")
            .tempdir()
            .expect("create slapd's temporary directory");
        let tls = TestCa::new().write_to(dir.path());
        std::fs::create_dir(dir.path().join("data")).expect("create slapd's data directory");
        std::fs::write(dir.path().join("slapd.conf"), config(dir.path(), &tls))
            .expect("write slapd.conf");

        let started = Instant::now();
        let ldif = dir.path().join("init.ldif");
        write_initial_ldif(&ldif, people).expect("write init.ldif");
        let out = Command::new(program("slapadd"))
            .arg("-q")
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(&ldif)
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&ldif);
        let load_time = started.elapsed();

        let mut slapd = Slapd {
            dir,
            tls,
            ldap_port: 0,
            ldaps_port: 0,
            child: None,
            load_time,
            start_time: Duration::ZERO,
        };
        // The ports were free a moment ago; another process may take one meanwhile: retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            slapd.ldap_port = free_port();
            slapd.ldaps_port = free_port();
            match slapd.spawn() {
                Ok(()) => return slapd,
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("slapd did not start: {e}"),
            }
        }
        panic!("slapd did not start: {last_error}");
    }

    /// Stops slapd (SIGTERM, so back-mdb closes cleanly); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }

    /// Starts slapd again after [`Slapd::stop`], with the same data and the same ports.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "slapd is still running");
        let mut last_error = String::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not start again: {last_error}");
    }

    /// Whether slapd is running (started and not stopped, and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("slapd.log");
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new(program("slapd"))
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{} {}", self.ldap_url(), self.ldaps_url()))
            // -d keeps slapd in the foreground (a child we can wait for). Level `none`: no
            // debug output, but errors (bind failures, configuration) still reach the log.
            .arg("-d")
            .arg("none")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn slapd: {e}"))?;
        let port = self.ldap_port;
        let ready = poll(START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("slapd exited ({status})")));
            }
            anonymous_bind(port).then_some(Ok(()))
        });
        let outcome = match ready {
            Some(outcome) => outcome,
            None => Err(format!("slapd did not answer within {START_TIMEOUT:?}")),
        };
        match outcome {
            Ok(()) => {
                self.start_time = started.elapsed();
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                terminate(&mut child, Duration::from_secs(1));
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(format!("{e}; slapd's log:\n{log}"))
            }
        }
    }

    /// `ldap://127.0.0.1:P1` (plain; StartTLS available).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:P2` (TLS from the first byte).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The `ldap://` port.
    pub fn ldap_port(&self) -> u16 {
        self.ldap_port
    }

    /// The `ldaps://` port.
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    /// The test CA's certificate (PEM), which signed the server certificate.
    pub fn ca_pem_path(&self) -> &Path {
        &self.tls.ca_pem
    }

    /// The CA and server certificate files.
    pub fn tls_files(&self) -> &TlsFiles {
        &self.tls
    }

    /// The temporary directory (configuration, certificates, `data/`, `slapd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `dc=example,dc=com`.
    pub fn suffix(&self) -> &'static str {
        SUFFIX
    }

    /// `ou=people,dc=example,dc=com`: where the persons are.
    pub fn base_dn(&self) -> &'static str {
        PEOPLE
    }

    /// The service account, which may read `ou=people`:
    /// `cn=lockgate,ou=services,dc=example,dc=com`.
    pub fn bind_dn(&self) -> &'static str {
        SERVICE_DN
    }

    /// The service account's password.
    pub fn bind_password(&self) -> &'static str {
        SERVICE_PASSWORD
    }

    /// The root DN, `cn=admin,dc=example,dc=com` (may do everything).
    pub fn admin_dn(&self) -> &'static str {
        ADMIN_DN
    }

    /// The root DN's password.
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// The DN of the person with this `uid`.
    pub fn person_dn(&self, uid: &str) -> String {
        person_dn(uid)
    }

    /// How long writing the LDIF and `slapadd` took in [`Slapd::start`].
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// How long the last start took, from spawning slapd until it answered a bind.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// Adds a person while slapd runs.
    pub fn add(&self, person: &LdapPerson) {
        self.ldapmodify(&person.to_ldif());
    }

    /// Replaces all values of `attr` of the person `uid` with `values` (none: removes it).
    pub fn modify(&self, uid: &str, attr: &str, values: &[&str]) {
        let mut ldif = String::new();
        ldif_line(&mut ldif, "dn", &person_dn(uid));
        ldif.push_str("changetype: modify\n");
        ldif_line(&mut ldif, "replace", attr);
        for value in values {
            ldif_line(&mut ldif, attr, value);
        }
        ldif.push_str("-\n\n");
        self.ldapmodify(&ldif);
    }

    /// Replaces the `mail` of the person `uid`.
    pub fn modify_mail(&self, uid: &str, mail: &str) {
        self.modify(uid, "mail", &[mail]);
    }

    /// Deletes the person `uid`.
    pub fn delete(&self, uid: &str) {
        let mut ldif = String::new();
        ldif_line(&mut ldif, "dn", &person_dn(uid));
        ldif.push_str("changetype: delete\n\n");
        self.ldapmodify(&ldif);
    }

    /// Applies LDIF with `ldapmodify -a` bound as the root DN (entries without a
    /// `changetype` are added). Panics with ldapmodify's output when it fails.
    pub fn ldapmodify(&self, ldif: &str) {
        let out = self.ldap_tool("ldapmodify", &["-a"], Some(ldif));
        assert!(
            out.status.success(),
            "ldapmodify failed ({}):\n{}{}\nLDIF:\n{ldif}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Searches `ou=people` as the root DN (`ldapsearch -LLL`, no line wrapping) and
    /// returns the LDIF text; `attrs` empty: all user attributes.
    pub fn search(&self, filter: &str, attrs: &[&str]) -> String {
        let mut args = vec!["-LLL", "-o", "ldif-wrap=no", "-b", PEOPLE, filter];
        args.extend_from_slice(attrs);
        let out = self.ldap_tool("ldapsearch", &args, None);
        assert!(
            out.status.success(),
            "ldapsearch failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ldap_tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut child = Command::new(program(tool))
            // Ignore ldap.conf, ~/.ldaprc and LDAP* variables: plain ldap:// on loopback.
            .env("LDAPNOINIT", "1")
            .args([
                "-x",
                "-H",
                &self.ldap_url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("write to {tool}: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for {tool}: {e}"))
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config(dir: &Path, tls: &TlsFiles) -> String {
    let d = dir.display();
    let data = dir.join("data");
    let data = data.display();
    let (ca, cert, key) = (
        tls.ca_pem.display(),
        tls.cert_pem.display(),
        tls.key_pem.display(),
    );
    format!(
        r#"# A private slapd for one test (lockgate-test-peers).
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
loglevel none
# The default soft limit of 500 entries would also cap paged searches in total.
sizelimit unlimited
timelimit unlimited
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 4294967296
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {data}
index objectClass eq
index uid,mail eq

access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to dn.subtree="{PEOPLE}"
  by dn.exact="{SERVICE_DN}" read
  by * none
access to * by * none
"#
    )
}

fn write_initial_ldif(
    path: &Path,
    people: impl IntoIterator<Item = LdapPerson>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    write!(
        out,
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: lockgate\nuserPassword: {SERVICE_PASSWORD}\n\n"
    )?;
    for person in people {
        out.write_all(person.to_ldif().as_bytes())?;
    }
    out.flush()
}

/// An anonymous simple bind (message 1) over plain LDAP: true when slapd answers success.
fn anonymous_bind(port: u16) -> bool {
    const BIND: [u8; 14] = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(&BIND).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        // BindResponse (0x61) with resultCode ENUMERATED 0 (0x0a 0x01 0x00).
        let response = &buf[..got];
        if let Some(at) = response.iter().position(|&b| b == 0x61) {
            return response[at..].windows(3).any(|w| w == [0x0a, 0x01, 0x00]);
        }
    }
    false
}
