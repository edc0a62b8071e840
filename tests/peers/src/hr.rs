//! The fake HR system: `tests/peers/hr/fake_hr.py` (Python standard library) on a free
//! loopback port, with its control endpoints as methods. The contract is in
//! `tests/peers/hr/README.md`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::terminate;

/// The Python server, below this crate's manifest.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hr/fake_hr.py");
/// How long the server may take to print its ready line (10 000 persons take well under 1 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running fake HR system; see the crate documentation. Drop stops it.
#[derive(Debug)]
pub struct FakeHr {
    child: Child,
    port: u16,
}

impl FakeHr {
    /// Starts the server with `persons` generated persons (`E000000`, `E000001`, ...).
    pub fn start(persons: usize) -> FakeHr {
        FakeHr::start_with(persons, None)
    }

    /// Starts the server; with `token`, every HR request needs `Authorization: Bearer TOKEN`.
    pub fn start_with(persons: usize, token: Option<&str>) -> FakeHr {
        let python = std::env::var("LOCKGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut command = Command::new(&python);
        command
            .arg(SCRIPT)
            .arg("--persons")
            .arg(persons.to_string())
            .arg("--port")
            .arg("0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = token {
            command.arg("--token").arg(token);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {python} {SCRIPT}: {e}"));
        let stdout = child.stdout.take().expect("stdout pipe");
        let (ready_tx, ready_rx) = mpsc::channel();
        // Reads the ready line (`READY <port>`), then drains stdout until the process ends.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(port)) => FakeHr { child, port },
            other => {
                terminate(&mut child, Duration::from_secs(2));
                panic!("the fake HR server did not start ({other:?})");
            }
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: the entry of the plugin's `http` grant.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The REST/JSON endpoint (`GET`, paged, `changed_since`).
    pub fn json_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/employees", self.port)
    }

    /// The SOAP 1.1 endpoint (`POST`, action `urn:lockgate:fake-hr#ListEmployees`).
    pub fn soap_url(&self) -> String {
        format!("http://127.0.0.1:{}/soap", self.port)
    }

    /// One plain HTTP/1.1 request to the server: (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to fake HR");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send to fake HR");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("read from fake HR");
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"));
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// A control request; panics unless it answers 200.
    pub fn control(&self, path: &str, body: Value) -> Value {
        let (status, text) = self.http("POST", &format!("/control/{path}"), &body.to_string());
        assert_eq!(status, 200, "control {path}: {text}");
        serde_json::from_str(&text).expect("control answer is JSON")
    }

    /// Sets fields of persons (`given`, `family`, `email`, `phone`, `department`, `status`;
    /// null clears one) and marks them changed.
    pub fn update(&self, changes: &[(&str, Value)]) {
        let changes: Vec<Value> = changes
            .iter()
            .map(|(id, set)| json!({ "id": id, "set": set }))
            .collect();
        self.control("update", json!({ "changes": changes }));
    }

    /// Adds persons (`{"id", "given", "family", ...}`), marked changed.
    pub fn add(&self, persons: Vec<Value>) {
        self.control("add", json!({ "persons": persons }));
    }

    /// Sets `status = "inactive"` and marks them changed.
    pub fn deactivate(&self, ids: &[&str]) {
        self.control("deactivate", json!({ "ids": ids }));
    }

    /// Removes persons: they are no longer returned at all.
    pub fn remove(&self, ids: &[&str]) {
        self.control("remove", json!({ "ids": ids }));
    }

    /// Arms a fault (`malformed`, `doctype`, `deep`, `soap-fault`, `status-503`) for the
    /// next request of `format` (`json`, `soap`, none: either) asking for `page` (none: any).
    pub fn fault(&self, kind: &str, format: Option<&str>, page: Option<u32>) {
        self.control(
            "fault",
            json!({ "kind": kind, "format": format, "page": page, "times": 1 }),
        );
    }

    /// Disarms every fault and forgets the request log.
    pub fn clear(&self) {
        self.control("clear", json!({}));
    }

    /// The HR requests served since the start or the last `clear`: the path with the query
    /// of each `GET`, `POST /soap <envelope>` of each SOAP request.
    pub fn requests(&self) -> Vec<String> {
        let (status, text) = self.http("GET", "/control/requests", "");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("request log")
    }

    /// The latest change marker the server handed out (`changed` of the last change).
    pub fn watermark(&self) -> String {
        let (status, text) = self.http("GET", "/control/state", "");
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("state");
        v["watermark"].as_str().expect("watermark").to_owned()
    }
}

impl Drop for FakeHr {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(2));
    }
}
