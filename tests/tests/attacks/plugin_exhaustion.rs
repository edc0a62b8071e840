//! Plugins cannot exhaust the gateway: a plugin that never yields does not stall the API
//! (on a runtime with two workers, as small as the gateway runs), is still trapped at its
//! deadline, and after its back-off gets one trial call, not a batch.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockgate::event_relay::{self, RelayConfig};
use lockgate_host::types::Event;
use lockgate_host::{FaultKind, HostConfig, HostError, MemoryKv, NoGateway, PluginHost};
use lockgate_tests::attack::Tally;
use lockgate_tests::{Db, TestApp};

/// How long one API answer may take while a plugin spins (a behaviour bound, not a benchmark).
const ANSWER_BOUND: Duration = Duration::from_secs(1);
/// The spinning plugin's call deadline: well above the bound.
const SPIN_DEADLINE_MS: u64 = 3_000;

fn unique() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    format!("{}-{}", std::process::id(), hex::encode(b))
}

/// A plugin directory with the test plugins `names` (component and manifest).
fn plugin_dir(names: &[&str]) -> PathBuf {
    let from = PathBuf::from(lockgate_host::TEST_PLUGINS_DIR);
    let dir = std::env::temp_dir().join(format!("lockgate-exhaustion-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        for ext in ["wasm", "toml"] {
            let f = format!("{name}.{ext}");
            std::fs::copy(from.join(&f), dir.join(&f)).unwrap();
        }
    }
    dir
}

fn spin_host(deadline_ms: u64, backoff_ms: u64) -> PluginHost {
    let mut cfg = HostConfig::default();
    cfg.limits.deadline_ms = deadline_ms;
    cfg.backoff.base_ms = backoff_ms;
    cfg.backoff.max_ms = backoff_ms * 4;
    let host = PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).unwrap();
    host.load_dir(&plugin_dir(&["spin"])).unwrap();
    host
}

fn event(n: u64) -> Event {
    Event {
        kind: "key.handed_out".into(),
        object_kind: "key".into(),
        object_id: Some(n),
        at: 0,
        payload: "{}".into(),
    }
}

/// One HTTP/1.1 request from a plain OS thread (independent of the runtime under test):
/// the status line and how long the answer took (`None`: no answer within 10 s).
fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lockgate\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let status = String::from_utf8_lossy(&answer).lines().next()?.to_owned();
    Some((status, started.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_event_bridge_does_not_stall_the_api() {
    let mut tally = Tally::new("plugin exhaustion: API while a bridge spins");
    let app = TestApp::new(Db::Sqlite).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert!(http_get(addr, "/healthz", None).is_some_and(|(s, _)| s.contains("200")));

    // Events of distinct objects: the relay hands a wave of them to `spin` at once.
    for i in 0..8i64 {
        sqlx::query(
            "INSERT INTO events (system_id, at, actor_id, actor, action, object_kind, object_id, object_label, changes, correlation_id) \
             VALUES ($1, $2, NULL, 'test', 'handed_out', 'key', $3, 'K', '{}', 'c')",
        )
        .bind(app.system_id)
        .bind("2026-01-01T00:00:00.000000Z")
        .bind(i + 1)
        .execute(app.store.pool())
        .await
        .unwrap();
    }
    let host = spin_host(SPIN_DEADLINE_MS, 60_000);

    // From plain OS threads, independent of the runtime under test: a monitor notes when
    // `spin` runs (first called until first trapped), probes send requests meanwhile.
    let monitor = {
        let host = host.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut spin_start = None;
            while started.elapsed() < Duration::from_secs(15) {
                let stats = host.status_of("spin").unwrap().stats;
                if stats.calls > 0 {
                    spin_start.get_or_insert_with(Instant::now);
                }
                if stats.faults > 0 {
                    return spin_start.zip(Some(Instant::now()));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            None
        })
    };
    let probes = {
        let token = app.token.clone();
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(SPIN_DEADLINE_MS + 3_000) {
                for (path, token) in [("/healthz", None), ("/api/v1/system", Some(token.as_str()))]
                {
                    answers.push((path, Instant::now(), http_get(addr, path, token)));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            answers
        })
    };
    let relay = event_relay::spawn(
        app.store.clone(),
        host.clone(),
        RelayConfig {
            bridges: vec!["spin".into()],
            poll_interval: Duration::from_millis(20),
            concurrency: 4,
            start_at_end: false,
            ..RelayConfig::default()
        },
    );

    // While the instances spin (their deadline is 3 s), health and API requests answer.
    let (answers, spun) =
        tokio::task::spawn_blocking(move || (probes.join().unwrap(), monitor.join().unwrap()))
            .await
            .unwrap();
    let (spin_start, spin_end) = spun.expect("the relay called spin, and spin was trapped");
    for path in ["/healthz", "/api/v1/system"] {
        // The probes that were in flight while spin ran.
        let mine: Vec<_> = answers
            .iter()
            .filter(|(p, sent, answer)| {
                let took = answer.as_ref().map_or(Duration::MAX, |(_, t)| *t);
                *p == path
                    && *sent < spin_end
                    && sent.checked_add(took).is_none_or(|a| a > spin_start)
            })
            .map(|(_, _, a)| a)
            .collect();
        let slowest = mine
            .iter()
            .map(|a| a.as_ref().map_or(Duration::MAX, |(_, t)| *t))
            .max()
            .unwrap_or(Duration::MAX);
        let all_ok = mine
            .iter()
            .all(|a| a.as_ref().is_some_and(|(s, _)| s.contains(" 200 ")));
        println!(
            "{path}: {} probes in flight while spin ran for {:?}, slowest {slowest:?}",
            mine.len(),
            spin_end - spin_start
        );
        tally.case(
            format!(
                "{path} answers 200 within {ANSWER_BOUND:?} while spin runs for {:?} \
                 ({} probes, slowest {slowest:?})",
                spin_end - spin_start,
                mine.len()
            ),
            mine.len() >= 3 && all_ok && slowest <= ANSWER_BOUND,
        );
    }

    // The deadline still holds: every spinning call is trapped at it.
    let started = Instant::now();
    let status = loop {
        let s = host.status_of("spin").unwrap();
        if s.stats.faults > 0 && s.stats.faults == s.stats.calls - s.stats.rejected_backing_off {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "spin was never stopped: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fault = status.last_fault.clone().unwrap();
    tally.case(
        format!(
            "spin is trapped at its {SPIN_DEADLINE_MS} ms deadline ({})",
            fault.message
        ),
        fault.kind == FaultKind::Deadline && status.stats.completed == 0,
    );
    relay.abort();
    tally.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_back_off_one_trial_call_runs_not_a_batch() {
    let mut tally = Tally::new("plugin exhaustion: back-off");
    let host = spin_host(300, 200);
    let first = host.publish("spin", event(0)).await;
    assert!(matches!(first, Err(HostError::Fault { .. })), "{first:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The back-off has ended: eight calls at once, one of them is the trial.
    let calls: Vec<_> = (1..=8)
        .map(|n| {
            let host = host.clone();
            tokio::spawn(async move { host.publish("spin", event(n)).await })
        })
        .collect();
    let (mut ran, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Err(HostError::Fault { .. }) => ran += 1,
            Err(HostError::BackingOff { .. }) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    tally.case(
        format!("after the back-off, {ran} of 8 concurrent calls ran (one trial)"),
        ran == 1 && refused == 7,
    );
    let stats = host.status_of("spin").unwrap().stats;
    tally.case(
        "the failed trial backs the plugin off again",
        stats.consecutive_faults == 2 && stats.backing_off_until_ms.is_some(),
    );
    tally.finish();
}
