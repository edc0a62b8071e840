//! The `template-webhook` plugin (an event bridge over the SDK's HTTP helper)
//! against a local HTTP server: an event becomes one JSON `POST` with the
//! configured headers and the token from `token_env`; the kind filter holds
//! back other events; a 5xx or an unreachable receiver is `unavailable` (the
//! relay retries), a 422 is skipped; the host's grant rules apply (no grant:
//! refused at load; loopback without `allow_private`: denied).

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, host, plugin_dir};
use lockgate_host::types::{Event, PluginError};
use lockgate_host::{HostConfig, PluginState};

/// One request the server received.
#[derive(Debug)]
struct Received {
    request_line: String,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering each request with the next
/// status of `statuses` (204 when none is left); every request goes to the
/// receiver.
fn server(statuses: &[u16]) -> (SocketAddr, Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let statuses = Arc::new(Mutex::new(
        statuses.iter().copied().collect::<VecDeque<_>>(),
    ));
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((n, v)) = line.trim_end().split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let status = statuses.lock().unwrap().pop_front().unwrap_or(204);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tx.send(Received {
                request_line: request_line.trim_end().to_owned(),
                headers,
                body,
            });
        }
    });
    (addr, rx)
}

/// A variable of this process with a plain name and a short non-empty value
/// (tests cannot set one).
fn some_variable() -> (String, String) {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(name, value)| {
            !value.is_empty()
                && value.len() < 200
                && value.bytes().all(|b| (0x21..0x7f).contains(&b))
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    vars.sort();
    vars.into_iter()
        .next()
        .expect("the test process has an environment variable")
}

fn webhook_config(http: &str, settings: &str) -> HostConfig {
    let mut cfg = config(&format!(
        r#"
[plugins.template-webhook]
grants = {{ log = true, config = true, {http} }}
config = {{ {settings} }}
"#
    ));
    // Real round trips on a loaded machine: these tests are not about deadlines.
    cfg.limits.deadline_ms = 10_000;
    cfg
}

fn event(kind: &str, id: i64) -> Event {
    Event {
        kind: kind.into(),
        object_kind: "key".into(),
        object_id: Some(7),
        at: 1_700_000_000_000,
        payload: format!(r#"{{"id":{id},"label":"K-7"}}"#),
    }
}

fn next(rx: &Receiver<Received>) -> Received {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server received a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_posted_as_json_with_the_token_from_the_environment() {
    let (addr, rx) = server(&[]);
    let (var, token) = some_variable();
    let cfg = webhook_config(
        &format!("http = {{ hosts = [\"{addr}\"], allow_private = true }}"),
        &format!(
            r#"url = "http://{addr}/hooks/lockgate?src=test", token_env = "{var}", headers = {{ x-site = "a" }}, kinds = ["key."]"#
        ),
    );
    let (host, _, _) = host(cfg, &plugin_dir(&["template-webhook"]));
    let status = host.status_of("template-webhook").unwrap();
    assert_eq!(status.state, PluginState::Enabled, "{status:?}");

    host.publish("template-webhook", event("key.handed_out", 41))
        .await
        .unwrap()
        .unwrap();
    let r = next(&rx);
    assert_eq!(r.request_line, "POST /hooks/lockgate?src=test HTTP/1.1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("authorization").map(str::to_owned),
        Some(format!("Bearer {token}"))
    );
    assert_eq!(r.header("x-site"), Some("a"));
    assert_eq!(r.header("x-lockgate-event-id"), Some("41"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], 41);
    assert_eq!(body["kind"], "key.handed_out");
    assert_eq!(body["object_id"], 7);
    assert_eq!(body["payload"]["label"], "K-7");

    // Outside the kind filter: accepted without a request.
    host.publish("template-webhook", event("job.finished", 42))
        .await
        .unwrap()
        .unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_decide_between_retry_and_skip() {
    let (addr, rx) = server(&[503, 422]);
    let cfg = webhook_config(
        &format!("http = {{ hosts = [\"{addr}\"], allow_private = true }}"),
        &format!(r#"url = "http://{addr}/""#),
    );
    let (host, _, _) = host(cfg, &plugin_dir(&["template-webhook"]));
    match host
        .publish("template-webhook", event("key.lost", 1))
        .await
        .unwrap()
    {
        Err(PluginError::Unavailable(m)) => assert!(m.contains("503"), "{m}"),
        other => panic!("503: expected unavailable, got {other:?}"),
    }
    next(&rx);
    // A refused event is skipped (logged), not retried.
    host.publish("template-webhook", event("key.lost", 1))
        .await
        .unwrap()
        .unwrap();
    next(&rx);
    let stats = host.status_of("template-webhook").unwrap().stats;
    assert_eq!((stats.faults, stats.expected_errors), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_rules_apply() {
    let (addr, rx) = server(&[]);
    // Loopback without allow_private: denied by the host, nothing sent.
    let cfg = webhook_config(
        &format!("http = [\"{addr}\"]"),
        &format!(r#"url = "http://{addr}/""#),
    );
    let (denying, _, _) = host(cfg, &plugin_dir(&["template-webhook"]));
    match denying
        .publish("template-webhook", event("key.lost", 1))
        .await
        .unwrap()
    {
        Err(PluginError::Denied(m)) => assert!(m.contains("DestinationIpProhibited"), "{m}"),
        other => panic!("expected denied, got {other:?}"),
    }
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());

    // No http grant at all: refused at load.
    let cfg = webhook_config("kv = false", &format!(r#"url = "http://{addr}/""#));
    let (refused, _, _) = host(cfg, &plugin_dir(&["template-webhook"]));
    match refused.status_of("template-webhook").unwrap().state {
        PluginState::Refused { reason } => assert!(reason.contains("wasi:http/"), "{reason}"),
        other => panic!("expected refused, got {other:?}"),
    }

    // A configuration error names the key.
    let cfg = webhook_config(
        &format!("http = {{ hosts = [\"{addr}\"], allow_private = true }}"),
        r#"uri = "http://x/""#,
    );
    let (misconfigured, _, _) = host(cfg, &plugin_dir(&["template-webhook"]));
    match misconfigured
        .publish("template-webhook", event("key.lost", 1))
        .await
        .unwrap()
    {
        Err(PluginError::Invalid(m)) => assert!(m.contains("`uri`"), "{m}"),
        other => panic!("expected invalid, got {other:?}"),
    }
}
