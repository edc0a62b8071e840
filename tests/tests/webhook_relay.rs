//! The webhook template end to end, on both databases: the gateway's build
//! builds `plugins/template-webhook`; it is loaded into a plugin host over the
//! real core (`CoreGateway`, `DbKv`) with an `http` grant for a local server
//! (127.0.0.1, so `allow_private`), fed by the event relay, and a change made
//! through the API reaches the server as a JSON `POST` carrying the event.
//! The server's first answer is 503: the relay keeps the event and delivers
//! it again (at least once), and its cursor passes the event after the 2xx.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockgate::event_relay::{self, RelayConfig};
use lockgate::gateway::CoreGateway;
use lockgate::plugins::DbKv;
use lockgate_host::{HostConfig, PluginHost, PluginState};
use lockgate_tests::*;
use serde_json::Value;

/// One request the server received: request line, headers (lower-cased names), body.
type Received = (String, Vec<(String, String)>, Vec<u8>);

/// An HTTP/1.1 server on 127.0.0.1 answering each request with the next of
/// `statuses` (204 when none is left); every request goes to the receiver.
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
            if tx
                .send((request_line.trim_end().to_owned(), headers, body))
                .is_err()
            {
                return;
            }
        }
    });
    (addr, rx)
}

/// A directory with the built `template-webhook` plugin.
fn plugin_dir(tag: &str) -> PathBuf {
    let built = PathBuf::from(lockgate_host::TEST_PLUGINS_DIR);
    let dir = std::env::temp_dir().join(format!("lockgate-webhook-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["wasm", "toml"] {
        let f = format!("template-webhook.{ext}");
        std::fs::copy(built.join(&f), dir.join(&f))
            .unwrap_or_else(|e| panic!("the built {f}: {e}"));
    }
    dir
}

/// The next request (within 30 s), as (request line, headers, JSON body);
/// waits off the runtime's worker threads.
async fn next(rx: &Arc<Mutex<Receiver<Received>>>) -> (String, Vec<(String, String)>, Value) {
    let rx = rx.clone();
    let (line, headers, body) = tokio::task::spawn_blocking(move || {
        rx.lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .expect("the webhook received a request")
    })
    .await
    .unwrap();
    let body = serde_json::from_slice(&body).expect("a JSON body");
    (line, headers, body)
}

on_both!(
    webhook_template_delivers_events_through_the_gateway,
    |app: TestApp| async move {
        // The whole app, not only the fields used: the database lives as long as it.
        let app = app;
        let (addr, rx) = server(&[503]);
        let rx = Arc::new(Mutex::new(rx));
        let mut cfg: HostConfig = toml::from_str(&format!(
            r#"
[plugins.template-webhook]
grants = {{ log = true, config = true, http = {{ hosts = ["{addr}"], allow_private = true }} }}
config = {{ url = "http://{addr}/lockgate/events", kinds = ["domain."], headers = {{ x-site = "test" }} }}
"#
        ))
        .unwrap();
        cfg.limits.deadline_ms = 15_000;
        let host = PluginHost::new(
            cfg,
            Arc::new(DbKv::new(app.store.clone())),
            Arc::new(CoreGateway::new(app.store.clone())),
        )
        .unwrap();
        host.load_dir(&plugin_dir(&format!("{:?}-{}", app.db, app.system_id)))
            .unwrap();
        let status = host.status_of("template-webhook").unwrap();
        assert_eq!(status.state, PluginState::Enabled, "{status:?}");

        let relay = event_relay::spawn(
            app.store.clone(),
            host.clone(),
            RelayConfig {
                bridges: vec!["template-webhook".into()],
                poll_interval: Duration::from_millis(20),
                gap_grace: Duration::from_millis(500),
                max_backoff: Duration::from_millis(200),
                // As in production: a new bridge starts after the newest event.
                start_at_end: true,
                ..RelayConfig::default()
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while event_relay::cursor(&app.store, "template-webhook")
            .await
            .unwrap()
            .is_none()
        {
            assert!(tokio::time::Instant::now() < deadline, "the relay starts");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A change through the API writes the event the relay hands to the plugin.
        let name = "Webhook site";
        let domain_id = app.domain(name).await;
        let event_id: i64 = sqlx::query_scalar(
            "SELECT id FROM events WHERE object_kind = 'domain' AND object_id = $1",
        )
        .bind(domain_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();

        // First delivery: answered 503, so the relay holds the cursor and retries.
        let (line, headers, first) = next(&rx).await;
        assert_eq!(line, "POST /lockgate/events HTTP/1.1");
        assert!(headers.contains(&("x-site".into(), "test".into())));
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        assert!(headers.contains(&("x-lockgate-event-id".into(), event_id.to_string())));
        assert_eq!(first["id"], event_id);
        assert_eq!(first["kind"], "domain.created");
        assert_eq!(first["object_kind"], "domain");
        assert_eq!(first["object_id"], domain_id);
        assert_eq!(first["payload"]["label"], name);
        assert_eq!(first["payload"]["system_id"], app.system_id);
        // Redelivered, answered 204: the cursor passes it.
        let (_, _, again) = next(&rx).await;
        assert_eq!(again, first, "the same event again (at least once)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while event_relay::cursor(&app.store, "template-webhook")
            .await
            .unwrap()
            .is_none_or(|c| c < event_id)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cursor passes the delivered event"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        relay.abort();
        let stats = host.status_of("template-webhook").unwrap().stats;
        assert_eq!(stats.faults, 0);
    }
);
