//! Remote PD identity end to end, on SQLite and PostgreSQL: an administrator creates a
//! one-time enrolment code on a PD's record, the PD enrols with a certificate signing request
//! and connects to the PD listener over mutual TLS with the certificate it got; the listener
//! names the PD from that certificate only. Codes are single use; a bad request leaves the
//! code usable; foreign, missing, expired, revoked and deleted-PD certificates fail; an oversized
//! frame closes only its connection, and a stalled device does not hold up the others.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use lockgate::pd_listener::{self as pd, Device, FrameHandler, FrameReply, PdListenerOptions};
use lockgate_api::{ApiConfig, AppState};
use lockgate_devices::transport::{FrameLimits, read_frame, write_frame};
use lockgate_tests::*;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, pem::PemObject,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Answers every frame with the identity the listener gave it and the frame.
#[derive(Debug)]
struct Echo;

#[async_trait]
impl FrameHandler for Echo {
    async fn handle(
        &self,
        device: &Device,
        _: &mut Vec<u8>,
        frame: Vec<u8>,
    ) -> Result<FrameReply, String> {
        let mut answer = format!("{}/{}:", device.system_id, device.pd_id).into_bytes();
        answer.extend(frame);
        Ok(FrameReply {
            frames: vec![answer],
            close: false,
        })
    }
}

fn limits() -> FrameLimits {
    FrameLimits {
        max_frame_bytes: 1024,
        idle: Duration::from_secs(5),
        frame: Duration::from_millis(500),
    }
}

/// A device's key and its certificate signing request (asking for more than it gets).
fn device_key() -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".into()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "I am the master PD");
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (key, csr)
}

struct Listener {
    addr: std::net::SocketAddr,
    ca: CertificateDer<'static>,
    trusted: Arc<pd::TrustedDevices>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_listener(app: &TestApp, authority: &lockgate_app::PdAuthority) -> Listener {
    let trusted = Arc::new(pd::TrustedDevices::default());
    trusted.refresh(&app.store).await.expect("refresh");
    let tls = pd::tls_config(authority, &["localhost".into()], trusted.clone()).expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let options = PdListenerOptions {
        server_names: vec!["localhost".into()],
        handshake_timeout: Duration::from_secs(2),
        limits: limits(),
        max_connections: 16,
        refresh_every: Duration::from_millis(100),
    };
    let task = tokio::spawn(pd::serve(
        listener,
        tls,
        options,
        app.store.clone(),
        trusted.clone(),
        Arc::new(Echo),
        std::future::pending(),
    ));
    Listener {
        addr,
        ca: authority.ca.certificate_der().clone(),
        trusted,
        task,
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects as a device with `cert`/`key` (none: no client certificate).
async fn connect(l: &Listener, client: Option<(&str, &rcgen::KeyPair)>) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(l.ca.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((pem, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(pem.as_bytes()).expect("cert")];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(l.addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Connects and sends one frame: the answer, or why there is none. With TLS 1.3 a refused
/// client certificate shows on the first read, not in `connect`.
async fn exchange(
    l: &Listener,
    client: Option<(&str, &rcgen::KeyPair)>,
    frame: &[u8],
) -> Result<Vec<u8>, String> {
    let mut s = connect(l, client).await.map_err(|e| e.to_string())?;
    write_frame(&mut s, frame, &limits())
        .await
        .map_err(|e| e.to_string())?;
    match read_frame(&mut s, &limits()).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err("closed".into()),
        Err(e) => Err(e.to_string()),
    }
}

on_both!(enrolment_and_mutual_tls, |app: TestApp| async move {
    let mut app = app;
    let sealing = lockgate_devices::ca::SealingKey::generate().expect("key");
    let other_issuer = lockgate_devices::ca::CertificateAuthority::create(
        chrono::Utc::now(),
        "vendor content server",
        &sealing,
    )
    .expect("issuer")
    .0;
    let mut cfg = lockgate::config::PdsConfig::default();
    let issuer_file = std::env::temp_dir().join(format!(
        "lockgate-pd-issuer-{}-{:?}.pem",
        std::process::id(),
        app.db
    ));
    std::fs::write(&issuer_file, other_issuer.certificate_pem()).expect("issuer file");
    cfg.trusted_issuer_files = vec![issuer_file.clone()];
    let authority = Arc::new(
        pd::open_authority(&app.store, &cfg, &sealing)
            .await
            .expect("authority"),
    );
    // A second start opens the same CA (stored, sealed).
    let again = pd::open_authority(&app.store, &cfg, &sealing)
        .await
        .expect("again");
    assert_eq!(again.ca.certificate_der(), authority.ca.certificate_der());
    assert!(
        pd::open_authority(
            &app.store,
            &cfg,
            &lockgate_devices::ca::SealingKey::generate().unwrap()
        )
        .await
        .is_err(),
        "another sealing key opens the CA"
    );
    app.router = lockgate_api::router(AppState::with_app(
        lockgate_app::App::new(app.store.clone()).with_pd_authority(authority.clone()),
        ApiConfig::default(),
    ));

    let pd_id = app
        .post(
            "/api/v1/remote-pds",
            json!({ "name": "Lobby", "marking": "PD-1", "type": "wall_gen2" }),
        )
        .await
        .expect(201)
        .id();
    let code = app
        .post(
            &format!("/api/v1/remote-pds/{pd_id}/enrolment-code"),
            json!({}),
        )
        .await
        .expect(201)
        .body["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let enrol = |code: &str, csr: &str| {
        let body = json!({ "code": code, "csr_pem": csr });
        let app = &app;
        async move {
            app.call(
                axum::http::Method::POST,
                "/api/v1/pd-enrolment",
                None,
                Some(body),
            )
            .await
        }
    };
    // A request that does not verify: refused, naming the field; the code stays usable.
    let (key, csr) = device_key();
    let broken = csr.replace("MII", "MIJ");
    let r = enrol(&code, &broken).await;
    r.expect_field(422, "csr_pem");
    // The code, typed in lower case without dashes, enrols.
    let typed = code.replace('-', "").to_lowercase();
    let enrolled = enrol(&typed, &csr).await.expect(201).body;
    assert_eq!(enrolled["pd_id"], pd_id);
    let cert_pem = enrolled["certificate_pem"]
        .as_str()
        .expect("cert")
        .to_owned();
    assert_eq!(
        enrolled["ca_pem"].as_str(),
        Some(authority.ca.certificate_pem())
    );
    // Single use.
    enrol(&code, &csr).await.expect_field(422, "code");
    // An unknown code looks the same.
    enrol("0000-0000", &csr).await.expect_field(422, "code");
    // The listing shows the certificate, not the key.
    let list = app
        .get(&format!("/api/v1/remote-pds/{pd_id}/certificates"))
        .await
        .expect(200)
        .body;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["source"], "enrolment");
    let ca = app.get("/api/v1/pd-ca").await.expect(200).body;
    assert_eq!(
        ca["certificate_pem"].as_str(),
        Some(authority.ca.certificate_pem())
    );
    let actions = app
        .event_actions(&format!("/api/v1/remote-pds/{pd_id}"))
        .await;
    assert!(
        actions.iter().any(|a| a == "enrolled")
            && actions.iter().any(|a| a == "enrolment_code_created"),
        "{actions:?}"
    );

    let l = start_listener(&app, &authority).await;
    // The identity is the PD of the code, whatever the request asked for.
    let system = app.system_id;
    assert_eq!(
        exchange(&l, Some((&cert_pem, &key)), b"hello")
            .await
            .expect("echo"),
        format!("{system}/{pd_id}:hello").into_bytes()
    );
    // No client certificate, or a certificate of another CA: refused.
    assert!(exchange(&l, None, b"x").await.is_err());
    let stranger = rcgen::KeyPair::generate().unwrap();
    let self_signed = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&stranger)
        .unwrap()
        .pem();
    assert!(
        exchange(&l, Some((&self_signed, &stranger)), b"x")
            .await
            .is_err()
    );

    // An oversized frame closes that connection only; a stalled device holds only its own.
    let mut big = connect(&l, Some((&cert_pem, &key))).await.expect("connect");
    big.write_all(&(1_000_000u32).to_be_bytes()).await.unwrap();
    big.flush().await.unwrap();
    assert!(matches!(
        read_frame(&mut big, &limits()).await,
        Ok(None) | Err(_)
    ));
    let mut stalled = connect(&l, Some((&cert_pem, &key))).await.expect("connect");
    stalled.write_all(&[0, 0]).await.unwrap();
    stalled.flush().await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        exchange(&l, Some((&cert_pem, &key)), b"other")
            .await
            .is_ok()
    );
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "the stalled device held others up"
    );

    // Upload: a certificate of an untrusted issuer is refused; one of a trusted issuer is
    // recorded and connects.
    let (key2, csr2) = device_key();
    let subject = lockgate_devices::ca::DeviceSubject {
        system_id: system,
        pd_id,
        marking: "PD-1".into(),
    };
    let (untrusted, _) = lockgate_devices::ca::CertificateAuthority::create(
        chrono::Utc::now(),
        "untrusted",
        &sealing,
    )
    .unwrap();
    let foreign = untrusted
        .issue_device(&csr2, &subject, chrono::Utc::now(), 30)
        .unwrap();
    app.post(
        &format!("/api/v1/remote-pds/{pd_id}/certificates"),
        json!({ "certificate_pem": foreign.pem }),
    )
    .await
    .expect_field(422, "certificate_pem");
    let vendor = other_issuer
        .issue_device(&csr2, &subject, chrono::Utc::now(), 30)
        .unwrap();
    let uploaded = app
        .post(
            &format!("/api/v1/remote-pds/{pd_id}/certificates"),
            json!({ "certificate_pem": vendor.pem }),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(uploaded["source"], "upload");
    l.trusted.refresh(&app.store).await.unwrap();
    assert!(exchange(&l, Some((&vendor.pem, &key2)), b"v").await.is_ok());

    // An expired certificate of the gateway's own CA, recorded for the PD (as an old upload
    // would be): the handshake refuses it, whatever the store says.
    let (key3, csr3) = device_key();
    let expired = authority
        .ca
        .issue_device(
            &csr3,
            &subject,
            chrono::Utc::now() - chrono::Duration::days(10),
            1,
        )
        .unwrap();
    app.store
        .add_pd_certificate(
            system,
            pd_id,
            &lockgate_store::devices::NewPdCertificate {
                fingerprint: expired.fingerprint.clone(),
                serial: expired.serial.clone(),
                certificate_pem: expired.pem.clone(),
                source: lockgate_store::devices::CertificateSource::Upload,
                not_before: expired.not_before,
                not_after: expired.not_after,
            },
            &lockgate_store::Actor::system(),
        )
        .await
        .unwrap();
    l.trusted.refresh(&app.store).await.unwrap();
    assert!(
        exchange(&l, Some((&expired.pem, &key3)), b"old")
            .await
            .is_err(),
        "an expired certificate connects"
    );

    // Revoking the enrolled certificate: the next connection with it fails at once, even
    // before the handshake's view is refreshed (the store is asked per connection).
    let revoked = app
        .post(
            &format!("/api/v1/remote-pds/{pd_id}/certificates/revoke"),
            json!({ "certificate_id": list["items"][0]["id"], "reason": "stolen" }),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(revoked["revoked"], 1);
    assert!(exchange(&l, Some((&cert_pem, &key)), b"x").await.is_err());
    l.trusted.refresh(&app.store).await.unwrap();
    assert!(exchange(&l, Some((&cert_pem, &key)), b"x").await.is_err());
    assert!(exchange(&l, Some((&vendor.pem, &key2)), b"v").await.is_ok());

    // Deleting the PD: its certificates go with it.
    let version = app
        .get(&format!("/api/v1/remote-pds/{pd_id}"))
        .await
        .expect(200)
        .body["version"]
        .clone();
    app.call(
        axum::http::Method::DELETE,
        &format!("/api/v1/remote-pds/{pd_id}"),
        Some(&app.token),
        None,
    )
    .await
    .expect(204);
    let _ = version;
    assert!(
        exchange(&l, Some((&vendor.pem, &key2)), b"v")
            .await
            .is_err()
    );

    // Permissions: a remote-PD viewer lists, but cannot create codes or revoke.
    let pd2 = app
        .post(
            "/api/v1/remote-pds",
            json!({ "name": "Yard", "marking": "PD-2", "type": "wall_gen1" }),
        )
        .await
        .expect(201)
        .id();
    let (_, viewer) = app
        .admin_with("V", json!({ "remote_pds": "view" }), &[])
        .await;
    app.call(
        axum::http::Method::GET,
        &format!("/api/v1/remote-pds/{pd2}/certificates"),
        Some(&viewer),
        None,
    )
    .await
    .expect(200);
    app.call(
        axum::http::Method::POST,
        &format!("/api/v1/remote-pds/{pd2}/enrolment-code"),
        Some(&viewer),
        Some(json!({})),
    )
    .await
    .expect(403);
    app.post(
        &format!("/api/v1/remote-pds/{pd2}/enrolment-code"),
        json!({ "valid_minutes": 0 }),
    )
    .await
    .expect_field(422, "valid_minutes");
    l.task.abort();
    let _ = std::fs::remove_file(issuer_file);
});
