//! Attacks on the API's transport, from someone on the building network: old TLS versions,
//! plain HTTP to the TLS port, slow clients (an unfinished TLS handshake, a request head or
//! body sent byte by byte), oversized heads and bodies, connection slots held by silent
//! clients, and plain HTTP configured on a non-loopback address. A real rustls client on
//! the real listener (`lockgate::serve::serve_http`) with the real API router.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use lockgate::serve::{HttpOptions, serve_http};
use lockgate_api::{ApiConfig, AppState};
use lockgate_test_peers::TestCa;
use lockgate_tests::{Db, TestApp, attack::Tally};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// The header-read and handshake timeout of the listener under attack.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(800);
/// Longest a dropped client may stay connected: the timeout plus scheduling slack.
const DROPPED_WITHIN: Duration = Duration::from_millis(3000);

struct Server {
    addr: SocketAddr,
    ca: TestCa,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    app: TestApp,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(tls: bool, max_connections: usize) -> Server {
    let app = TestApp::new(Db::Sqlite).await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let files = ca.write_to(dir.path());
    let config = ApiConfig {
        max_body_bytes: 4096,
        request_timeout: Duration::from_millis(1500),
        hsts_max_age: tls.then_some(Duration::from_secs(31_536_000)),
        ..ApiConfig::default()
    };
    let router = lockgate_api::router(AppState::new(app.store.clone(), config));
    let tls_config = tls.then(|| {
        let tls = lockgate::config::ServerTlsConfig {
            cert_file: files.cert_pem.clone(),
            key_file: files.key_pem.clone(),
            hsts_max_age: lockgate::config::Span::secs(31_536_000),
            handshake_timeout: lockgate::config::Span(CLIENT_TIMEOUT),
        };
        (tls.server_config().expect("TLS config"), CLIENT_TIMEOUT)
    });
    let options = HttpOptions {
        tls: tls_config,
        header_read_timeout: CLIENT_TIMEOUT,
        max_header_bytes: 16 * 1024,
        max_headers: 64,
        max_connections,
        shutdown_grace: Duration::from_secs(1),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_http(listener, router, options, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        ca,
        stop: Some(stop),
        app,
        _dir: dir,
    }
}

/// A rustls client that trusts the test CA, limited to `versions`.
fn client(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    s: &Server,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(s.addr).await?;
    client(&s.ca, versions)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Write `request`, read to the end (or 5 s); the response text.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> String {
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// How long until the server closes `stream` (reads return 0 or fail), at most 10 s.
async fn closed_after<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// A TLS ClientHello offering only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1) with CBC
/// suites of that era, no `supported_versions` extension.
fn legacy_client_hello(version: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    let suites: [u16; 4] = [0xc013, 0xc009, 0x002f, 0x0035];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    // Extensions: supported_groups (secp256r1), ec_point_formats (uncompressed).
    let ext: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,
    ];
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(ext);
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_listener_refuses_weak_and_slow_clients() {
    let s = start(true, 64).await;
    let mut tally = Tally::new("transport");

    // The good path: TLS 1.3 and TLS 1.2 clients are served, with HSTS.
    for (name, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        let mut tls = tls_connect(&s, &[version]).await.expect(name);
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(version.version),
            "{name}"
        );
        let resp = exchange(&mut tls, HEALTHZ).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{name}: {resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
            "{name}: HSTS on every response: {resp}"
        );
    }

    // TLS 1.0 and 1.1: the server answers no ServerHello (an alert or a close).
    for (name, version) in [("TLS 1.0 hello", 0x0301), ("TLS 1.1 hello", 0x0302)] {
        let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
        tcp.write_all(&legacy_client_hello(version))
            .await
            .expect("hello");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        let server_hello = answer.first() == Some(&0x16) && answer.get(5) == Some(&0x02);
        tally.case(name, !server_hello && answer.len() < 64);
    }

    // Plain HTTP to the TLS port: no HTTP answer.
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    let resp = exchange(&mut tcp, HEALTHZ).await;
    tally.case("plain HTTP to the TLS port", !resp.contains("HTTP/1.1 200"));

    // A client that opens the connection and never completes the handshake (half a
    // ClientHello) is dropped within the handshake timeout, and others are served meanwhile.
    let mut silent = TcpStream::connect(s.addr).await.expect("connect");
    let hello = legacy_client_hello(0x0303);
    silent.write_all(&hello[..20]).await.expect("half a hello");
    let other = tokio::spawn({
        let (addr, ca) = (s.addr, s.ca.clone());
        async move {
            let started = Instant::now();
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let mut tls = client(&ca, &[&rustls::version::TLS13])
                .connect(ServerName::try_from("localhost").expect("name"), tcp)
                .await
                .expect("handshake");
            let resp = exchange(&mut tls, HEALTHZ).await;
            (resp.starts_with("HTTP/1.1 200"), started.elapsed())
        }
    });
    let held = closed_after(&mut silent).await;
    let (served, took) = other.await.expect("other client");
    assert!(
        served && took < CLIENT_TIMEOUT,
        "another client is served while one stalls its handshake ({took:?})"
    );
    tally.case(
        format!("unfinished TLS handshake (dropped after {held:?})"),
        held < DROPPED_WITHIN,
    );

    // A request head sent one byte every 100 ms over TLS: dropped at the header timeout.
    let mut slow = tls_connect(&s, &[&rustls::version::TLS13])
        .await
        .expect("handshake");
    let start = Instant::now();
    let mut answered = String::new();
    for b in HEALTHZ
        .iter()
        .chain(b"X-Padding: ".iter().cycle().take(200))
    {
        if slow.write_all(&[*b]).await.is_err() || slow.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > DROPPED_WITHIN * 2 {
            break;
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        slow.read_to_string(&mut answered),
    )
    .await;
    let lasted = start.elapsed();
    tally.case(
        format!("request head byte by byte over TLS (lasted {lasted:?})"),
        lasted < DROPPED_WITHIN && !answered.contains(" 200 "),
    );

    // An idle keep-alive connection is closed at the header timeout too.
    let mut idle = tls_connect(&s, &[&rustls::version::TLS13])
        .await
        .expect("handshake");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let held = closed_after(&mut idle).await;
    tally.case(
        format!("idle keep-alive connection (closed after {held:?})"),
        held < DROPPED_WITHIN,
    );

    // Oversized heads: 431 (or a close), never served.
    let mut tls = tls_connect(&s, &[&rustls::version::TLS13])
        .await
        .expect("handshake");
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let resp = exchange(&mut tls, big.as_bytes()).await;
    tally.case(
        "a 40 KiB header",
        !resp.contains(" 200 ") && (resp.is_empty() || resp.starts_with("HTTP/1.1 431")),
    );
    let mut tls = tls_connect(&s, &[&rustls::version::TLS13])
        .await
        .expect("handshake");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req =
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n");
    let resp = exchange(&mut tls, req.as_bytes()).await;
    tally.case(
        "200 header fields",
        !resp.contains(" 200 ") && (resp.is_empty() || resp.starts_with("HTTP/1.1 431")),
    );

    // A body over the limit: 413. A body sent slowly: 408 at the request timeout.
    let mut tls = tls_connect(&s, &[&rustls::version::TLS13])
        .await
        .expect("handshake");
    let body = format!("{{\"name\":\"{}\"}}", "x".repeat(8192));
    let req = format!(
        "POST /api/v1/domains HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.app.token,
        body.len()
    );
    let resp = exchange(&mut tls, req.as_bytes()).await;
    tally.case(
        "an 8 KiB body over a 4 KiB limit",
        resp.starts_with("HTTP/1.1 413"),
    );
    let mut tls = tls_connect(&s, &[&rustls::version::TLS13])
        .await
        .expect("handshake");
    let head = format!(
        "POST /api/v1/domains HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{{",
        s.app.token
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    let start = Instant::now();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tls.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(6), trickle).await;
    let mut resp = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.read_to_string(&mut resp)).await;
    let lasted = start.elapsed();
    tally.case(
        format!(
            "a body one byte every 200 ms (answered {:?} after {lasted:?})",
            resp.lines().next()
        ),
        resp.starts_with("HTTP/1.1 408"),
    );
    tally.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_cannot_hold_every_connection_slot() {
    let mut tally = Tally::new("transport: connection slots");
    for tls in [true, false] {
        let s = start(tls, 2).await;
        // Two silent connections take both slots ...
        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(TcpStream::connect(s.addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ... a real client waits in the backlog until the listener drops them, then is served.
        let start = Instant::now();
        let served = if tls {
            match tls_connect(&s, &[&rustls::version::TLS13]).await {
                Ok(mut c) => exchange(&mut c, HEALTHZ).await.starts_with("HTTP/1.1 200"),
                Err(_) => false,
            }
        } else {
            let mut c = TcpStream::connect(s.addr).await.expect("connect");
            exchange(&mut c, HEALTHZ).await.starts_with("HTTP/1.1 200")
        };
        let took = start.elapsed();
        let name = if tls { "TLS" } else { "plain loopback" };
        tally.case(
            format!("{name}: two silent clients on two slots (served after {took:?})"),
            served && took < DROPPED_WITHIN,
        );
        for mut c in silent {
            let held = closed_after(&mut c).await;
            assert!(held < DROPPED_WITHIN, "{name}: silent client held {held:?}");
        }
    }
    tally.finish();
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let mut tally = Tally::new("transport: configuration");
    let plain = |listen: &str, allow: bool| {
        let mut cfg = lockgate::Config::default();
        cfg.server.listen = listen.into();
        cfg.server.allow_plain_http = allow;
        cfg.validate()
    };
    for listen in [
        "0.0.0.0:8080",
        "[::]:8080",
        "192.0.2.10:8080",
        "[2001:db8::1]:443",
    ] {
        let refused = match plain(listen, false) {
            Err(e) => {
                let e = e.to_string();
                e.contains("server.listen")
                    && e.contains("server.tls")
                    && e.contains("server.allow_plain_http")
            }
            Ok(()) => false,
        };
        tally.case(format!("plain HTTP on {listen}"), refused);
    }
    // Loopback, an explicit opt-in, and TLS are accepted.
    for (listen, allow) in [
        ("127.0.0.1:8080", false),
        ("[::1]:8080", false),
        ("0.0.0.0:8080", true),
    ] {
        plain(listen, allow).unwrap_or_else(|e| panic!("{listen} {allow}: {e}"));
    }
    let mut cfg = lockgate::Config::default();
    cfg.server.listen = "0.0.0.0:8443".into();
    cfg.server.tls = Some(lockgate::config::ServerTlsConfig {
        cert_file: "/etc/lockgate/tls/cert.pem".into(),
        key_file: "/etc/lockgate/tls/key.pem".into(),
        hsts_max_age: lockgate::config::Span::secs(86_400),
        handshake_timeout: lockgate::config::Span::secs(10),
    });
    cfg.validate().expect("TLS on any address");
    tally.finish();
}
