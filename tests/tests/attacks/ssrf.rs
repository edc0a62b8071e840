//! Server-side request forgery through a plugin's outbound HTTP (`wasi:http`): the `http-fetch`
//! test plugin asks for private, loopback, link-local and special-purpose addresses in every
//! spelling (IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64, 6to4, decimal, octal and
//! hex IPv4, user info) and through redirects. With the guard on (`allow_private` not
//! granted) each is refused by the host, and nothing reaches the local server. (DNS
//! rebinding needs a resolver the test controls: `lockgate-host`'s unit tests
//! `http::tests::a_rebinding_name_*` script one.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use lockgate_host::types::{Event, PluginError};
use lockgate_host::{HostConfig, MemoryKv, NoGateway, PluginHost, PluginState};
use lockgate_tests::attack::Tally;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A local HTTP server answering every request with `head` (empty body); counts requests.
async fn server(head: String) -> (SocketAddr, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            counter.fetch_add(1, Ordering::SeqCst);
            let reply = format!("{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (addr, hits)
}

/// A host with `http-fetch` granted `hosts` (and `allow_private` as given).
fn host(hosts: &[String], allow_private: bool) -> PluginHost {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "lockgate-attack-ssrf-{}-{}",
        std::process::id(),
        hex::encode(b)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let built = PathBuf::from(lockgate_host::TEST_PLUGINS_DIR);
    for ext in ["wasm", "toml"] {
        let file = format!("http-fetch.{ext}");
        std::fs::copy(built.join(&file), dir.join(&file)).unwrap();
    }
    let mut cfg: HostConfig = toml::from_str(&format!(
        "[plugins.http-fetch.grants]\nlog = true\nhttp = {{ hosts = {hosts:?}, allow_private = {allow_private} }}\n"
    ))
    .unwrap();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    cfg.cache_dir = Some(tmp.join("plugin-cache"));
    cfg.cache_key_file = Some(tmp.join("plugin-cache.key"));
    cfg.limits.deadline_ms = 10_000;
    cfg.max_concurrent_instances = 4;
    let host = PluginHost::new(cfg, Arc::new(MemoryKv::default()), Arc::new(NoGateway)).unwrap();
    host.load_dir(&dir).unwrap();
    assert_eq!(
        host.status_of("http-fetch").unwrap().state,
        PluginState::Enabled,
        "the grant {hosts:?} loads"
    );
    let _ = std::fs::remove_dir_all(&dir);
    host
}

/// What the plugin got for `GET url`.
async fn fetch(host: &PluginHost, url: &str) -> Result<(), PluginError> {
    let event = Event {
        kind: "fetch".into(),
        object_kind: "key".into(),
        object_id: None,
        at: 1_700_000_000_000,
        payload: url.to_owned(),
    };
    host.publish("http-fetch", event)
        .await
        .expect("the plugin is callable")
}

/// Refused by the host's guard: a `wasi:http` denial, not a failed connection.
fn denied(r: &Result<(), PluginError>) -> bool {
    matches!(r, Err(PluginError::Denied(m))
        if m.contains("DestinationIpProhibited") || m.contains("HttpRequestDenied"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_special_addresses_are_refused_in_every_spelling() {
    let (addr, hits) = server("HTTP/1.1 200 OK".into()).await;
    let port = addr.port();
    let mut tally = Tally::new("ssrf");

    // The grant names the very spelling (as an operator who trusted a name that resolves
    // there would): the address itself must be refused. Guard on.
    let literals = [
        "127.0.0.1",
        "127.0.0.2",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "192.0.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:0:127.0.0.1]",
        "[::ffff:0:a9fe:a9fe]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b::a00:1]",
        "[64:ff9b:1::7f00:1]",
        "[64:ff9b:1::808:808]",
        "[2002:7f00:1::1]",
        "[2002:a9fe:a9fe::1]",
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd00:ec2::254]",
        "[fec0::1]",
        "[ff02::1]",
        "[2001:db8::1]",
        "[3fff::1]",
        "[5f00::1]",
        "[100::1]",
        "localhost",
    ];
    let granted: Vec<String> = literals.iter().map(|l| format!("{l}:{port}")).collect();
    let guarded = host(&granted, false);
    for l in literals {
        let r = fetch(&guarded, &format!("http://{l}:{port}/")).await;
        tally.case(format!("http://{l}:{port}/ -> {r:?}"), denied(&r));
    }
    // Other spellings of loopback, against a grant of 127.0.0.1 itself, and case and dots.
    for url in [
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://127.0.0.1.:{port}/"),
        format!("http://LOCALHOST:{port}/"),
        format!("http://localhost.:{port}/"),
    ] {
        let r = fetch(&guarded, &url).await;
        tally.case(format!("{url} -> {r:?}"), denied(&r));
    }

    // Legacy IPv4 spellings (a resolver turns them into 127.0.0.1) and user-info tricks: refused
    // even when the grant names them and allows private addresses.
    let tricks = [
        "2130706433",
        "017700000001",
        "0x7f000001",
        "0x7f.1",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "0177.1",
        "127.1",
        "127.0.1",
    ];
    let granted: Vec<String> = tricks.iter().map(|t| format!("{t}:{port}")).collect();
    let trusting = host(&granted, true);
    for t in tricks {
        let r = fetch(&trusting, &format!("http://{t}:{port}/")).await;
        tally.case(format!("http://{t}:{port}/ -> {r:?}"), denied(&r));
    }
    let loopback = host(&[format!("127.0.0.1:{port}")], false);
    for url in [
        format!("http://public@127.0.0.1:{port}/"),
        format!("http://user:pass@127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{port}@example.com/"),
    ] {
        let r = fetch(&loopback, &url).await;
        // The guest's `wasi:http` may already reject the authority (`Invalid`); either way
        // nothing is sent.
        let refused = denied(&r) || matches!(r, Err(PluginError::Invalid(_)));
        tally.case(format!("{url} -> {r:?}"), refused);
    }

    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    tally.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_private_addresses_are_not_followed() {
    let (target, target_hits) = server("HTTP/1.1 200 OK".into()).await;
    let mut tally = Tally::new("ssrf redirects");
    for location in [
        format!("http://{target}/"),
        format!("http://[::ffff:127.0.0.1]:{}/", target.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/".to_owned(),
    ] {
        for status in [
            "301 Moved Permanently",
            "302 Found",
            "307 Temporary Redirect",
        ] {
            let (redirector, hits) =
                server(format!("HTTP/1.1 {status}\r\nLocation: {location}")).await;
            // The redirector is granted (on loopback, so with allow_private); its targets are
            // not: the host hands the 3xx to the guest and never follows it, and a guest that
            // follows sends a new request through the same guard.
            let h = host(&[redirector.to_string()], true);
            let r = fetch(&h, &format!("http://{redirector}/")).await;
            let code = status.split(' ').next().unwrap_or_default();
            let refused = matches!(&r, Err(PluginError::Other(m)) if m == &format!("status {code}"))
                && hits.load(Ordering::SeqCst) == 1;
            tally.case(format!("{status} to {location} -> {r:?}"), refused);
            let follow = fetch(&h, &location).await;
            tally.case(
                format!("following {location} -> {follow:?}"),
                denied(&follow),
            );
        }
    }
    assert_eq!(
        target_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the target"
    );
    tally.finish();
}
