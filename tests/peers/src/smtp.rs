//! The SMTP test peer: `smtp_peer.py` (aiosmtpd) in a temporary directory, with STARTTLS
//! from the test CA, optional AUTH, and the accepted messages as files.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::ca::{TestCa, TlsFiles};
use crate::util::{free_port, poll};

/// The Python server, next to this crate's manifest.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_peer.py");
/// How long the peer may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the SMTP peer behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpOptions {
    /// Refuse MAIL before STARTTLS (`530`). STARTTLS is offered either way.
    pub require_starttls: bool,
    /// Require AUTH PLAIN or LOGIN with this user and password. AUTH is accepted without
    /// TLS unless `require_starttls` is set.
    pub auth: Option<(String, String)>,
}

/// A message the peer accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The accepted envelope recipients (`RCPT TO`), in order.
    pub rcpt_tos: Vec<String>,
    /// The message as received after DATA (headers and body, CRLF line ends; lossy UTF-8).
    pub raw: String,
}

/// A running SMTP peer; see the crate documentation. Drop kills it and removes its directory.
#[derive(Debug)]
pub struct SmtpPeer {
    dir: TempDir,
    tls: TlsFiles,
    port: u16,
    child: Child,
}

impl SmtpPeer {
    /// Starts `smtp_peer.py` on a free loopback port and waits for its ready line.
    pub fn start(options: SmtpOptions) -> SmtpPeer {
        let dir = tempfile::Builder::new()
            .prefix("lockgate-smtp-")
            .tempdir()
            .expect("create the SMTP peer's temporary directory");
        let tls = TestCa::new().write_to(dir.path());
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("create the mail directory");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn(dir.path(), &mail_dir, &tls, port, &options) {
                Ok(child) => {
                    return SmtpPeer {
                        dir,
                        tls,
                        port,
                        child,
                    };
                }
                Err(e) => {
                    last_error = e;
                    if !last_error.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("the SMTP peer did not start: {last_error}");
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The test CA's certificate (PEM), which signed the STARTTLS certificate.
    pub fn ca_pem_path(&self) -> &Path {
        &self.tls.ca_pem
    }

    /// The temporary directory (certificates, `mail/`, `smtp_peer.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The messages accepted so far, in order of arrival.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let mail_dir = self.dir.path().join("mail");
        let mut numbers: Vec<u64> = std::fs::read_dir(&mail_dir)
            .expect("read the mail directory")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".eml")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        numbers
            .into_iter()
            .map(|n| read_mail(&mail_dir, n))
            .collect()
    }

    /// Waits until at least `n` messages arrived and returns them all; panics after
    /// `timeout` with what did arrive.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        if let Some(mails) = poll(timeout, || {
            let mails = self.messages();
            (mails.len() >= n).then_some(mails)
        }) {
            return mails;
        }
        let got = self.messages();
        panic!(
            "expected {n} messages within {timeout:?}, got {}: {got:#?}\nsmtp_peer.log:\n{}",
            got.len(),
            std::fs::read_to_string(self.dir.path().join("smtp_peer.log")).unwrap_or_default()
        );
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    dir: &Path,
    mail_dir: &Path,
    tls: &TlsFiles,
    port: u16,
    options: &SmtpOptions,
) -> Result<Child, String> {
    let python = std::env::var("LOCKGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let log_path = dir.join("smtp_peer.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut command = Command::new(&python);
    command
        .arg(SCRIPT)
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(mail_dir)
        .arg("--cert")
        .arg(&tls.cert_pem)
        .arg("--key")
        .arg(&tls.key_pem)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if options.require_starttls {
        command.arg("--require-starttls");
    }
    if let Some((user, password)) = &options.auth {
        command
            .arg("--auth-user")
            .arg(user)
            .arg("--auth-password")
            .arg(password);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawn {python} {SCRIPT}: {e}"))?;
    let stdout = child.stdout.take().expect("stdout pipe");
    let (ready_tx, ready_rx) = mpsc::channel();
    // Reads the ready line, then drains stdout until the process ends.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("READY") {
                let _ = ready_tx.send(());
            }
        }
    });
    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let why = match e {
                mpsc::RecvTimeoutError::Timeout => {
                    format!("no ready line within {START_TIMEOUT:?}")
                }
                mpsc::RecvTimeoutError::Disconnected => "it exited".to_owned(),
            };
            Err(format!(
                "{why}; smtp_peer.log:\n{log}\n(is aiosmtpd installed? run tests/run.sh once)"
            ))
        }
    }
}

fn read_mail(mail_dir: &Path, n: u64) -> ReceivedMail {
    let path = |ext: &str| -> PathBuf { mail_dir.join(format!("{n}.{ext}")) };
    let envelope = std::fs::read(path("json")).expect("read the envelope");
    let envelope: serde_json::Value =
        serde_json::from_slice(&envelope).expect("parse the envelope");
    let raw = std::fs::read(path("eml")).expect("read the message");
    ReceivedMail {
        mail_from: envelope["mail_from"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        rcpt_tos: envelope["rcpt_tos"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
    }
}
