//! Outbound HTTP (`wasi:http`): the `http-fetch` test plugin reaches a local
//! server only when its grant names the host and allows private addresses;
//! other hosts and loopback without `allow_private` are denied with a
//! `wasi:http` error code, a plugin without an `http` grant is refused at load,
//! and the other plugins are unaffected.

mod common;

use std::sync::atomic::Ordering;

use common::{event, host, http_server, plugin_dir};
use lockgate_host::types::{Event, PluginError};
use lockgate_host::{HostConfig, PluginHost, PluginState};

/// The common test configuration with a deadline for real network round trips (these
/// tests are about what is allowed, not about deadlines; a loaded CI machine is slow).
fn config_for(grants: &str) -> HostConfig {
    let mut cfg = common::config(grants);
    cfg.limits.deadline_ms = 60_000;
    cfg
}

fn fetch(url: &str) -> Event {
    Event {
        payload: url.to_owned(),
        ..event("fetch")
    }
}

async fn noop_still_works(host: &PluginHost) {
    for kind in ["log", "kv", "other"] {
        host.publish("noop", event(kind)).await.unwrap().unwrap();
    }
    assert_eq!(host.status_of("noop").unwrap().state, PluginState::Enabled);
}

fn grants(http: &str) -> String {
    format!(
        r#"
[plugins.noop.grants]
log = true
kv = true
[plugins.http-fetch.grants]
log = true
{http}
"#
    )
}

fn denied(r: Result<(), PluginError>, code: &str) {
    match r {
        Err(PluginError::Denied(m)) => assert!(m.contains(code), "{code} not in {m}"),
        other => panic!("expected denied({code}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_private_host_is_reached() {
    let (addr, hits) = http_server(4096).await;
    let cfg = config_for(&grants(&format!(
        "http = {{ hosts = [\"{addr}\"], allow_private = true }}"
    )));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "http-fetch"]));
    assert_eq!(
        host.status_of("http-fetch").unwrap().state,
        PluginState::Enabled
    );
    host.publish("http-fetch", fetch(&format!("http://{addr}/")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Another status reaches the guest as such.
    match host
        .publish("http-fetch", fetch(&format!("http://{addr}/missing")))
        .await
        .unwrap()
    {
        Err(PluginError::Other(m)) => assert!(m.contains("404"), "{m}"),
        other => panic!("expected status 404, got {other:?}"),
    }
    noop_still_works(&host).await;
    let status = host.status_of("http-fetch").unwrap();
    assert_eq!((status.stats.faults, status.stats.completed), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_capped() {
    let (addr, hits) = http_server(64 * 1024).await;
    let mut cfg = config_for(&grants(&format!(
        "http = {{ hosts = [\"{addr}\"], allow_private = true }}"
    )));
    cfg.limits.http_response_bytes = 16 * 1024;
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "http-fetch"]));
    for path in ["big", "stream"] {
        match host
            .publish("http-fetch", fetch(&format!("http://{addr}/{path}")))
            .await
            .unwrap()
        {
            // Before the body (`Content-Length`) as the error code, or while reading it.
            Err(PluginError::Other(m)) => assert!(
                m.contains("HttpResponseBodySize") || m.contains("body size exceeds"),
                "{m}"
            ),
            other => panic!("/{path}: expected a body size error, got {other:?}"),
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_denied_without_allow_private() {
    let (addr, hits) = http_server(0).await;
    let cfg = config_for(&grants(&format!("http = [\"{addr}\"]")));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "http-fetch"]));
    assert_eq!(
        host.status_of("http-fetch").unwrap().state,
        PluginState::Enabled
    );
    for url in [
        format!("http://{addr}/"),
        format!("http://[::ffff:127.0.0.1]:{}/", addr.port()),
    ] {
        // The IPv4-mapped spelling is the same host, and just as loopback.
        let r = host.publish("http-fetch", fetch(&url)).await.unwrap();
        denied(r, "DestinationIpProhibited");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    noop_still_works(&host).await;
    // A refusal is an expected error, not a fault: no back-off.
    let status = host.status_of("http-fetch").unwrap();
    assert_eq!((status.stats.faults, status.stats.expected_errors), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_grant_are_denied() {
    let (addr, hits) = http_server(0).await;
    let cfg = config_for(&grants(&format!(
        "http = {{ hosts = [\"{addr}\"], allow_private = true }}"
    )));
    let (host, _, _) = host(cfg, &plugin_dir(&["noop", "http-fetch"]));
    let port = addr.port();
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1)),
        "http://127.0.0.1/".to_owned(),
        format!("https://example.com:{port}/"),
        format!("ftp://{addr}/"),
    ] {
        let r = host.publish("http-fetch", fetch(&url)).await.unwrap();
        denied(r, "HttpRequestDenied");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    noop_still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_without_http_grant_is_refused_at_load() {
    for http in ["", "http = []", "http = { allow_private = true }"] {
        let (host, _, _) = host(
            config_for(&grants(http)),
            &plugin_dir(&["noop", "http-fetch"]),
        );
        match host.status_of("http-fetch").unwrap().state {
            PluginState::Refused { reason } => assert!(
                reason.contains("wasi:http/") && reason.contains("`http` is not granted"),
                "{reason}"
            ),
            other => panic!("expected refused, got {other:?}"),
        }
        assert!(
            host.publish("http-fetch", fetch("http://127.0.0.1/"))
                .await
                .is_err()
        );
        noop_still_works(&host).await;
    }
}
