//! The bundled `email-notifier` plugin and the host's `smtp` capability against a real SMTP
//! server (the aiosmtpd peer, STARTTLS from a test CA): texts per language, the outcomes of
//! 4xx / 5xx / a connection dropped after DATA, no duplicate on redelivery, and the outbox
//! dispatcher delivering through the plugin (`PluginDeliver`).

use std::time::Duration;

use lockgate::background::PluginDeliver;
use lockgate::config::PluginsConfig;
use lockgate_api::licence::LicenceConfig;
use lockgate_host::PluginHost;
use lockgate_host::types::{Notification, NotifyError};
use lockgate_jobs::{Deliver, JobsError, OutboxMessage};
use lockgate_test_peers::{SmtpOptions, SmtpPeer};
use lockgate_tests::*;
use serde_json::{Value, json};

const PLUGIN: &str = "email-notifier";

async fn host(app: &TestApp, peer: &SmtpPeer, tls: &str, admins: &[&str]) -> PluginHost {
    let cfg: PluginsConfig = toml::from_str(&format!(
        r#"
        cache_dir = "{cache}"
        cache_key_file = "{cache}.key"
        [smtp]
        host = "127.0.0.1"
        port = {port}
        tls = "{tls}"
        ca_file = "{ca}"
        from = "Lockgate <lockgate@example.com>"
        hello_name = "gw.example.com"
        timeout_ms = 5000

        [instances.email-notifier]
        grants = {{ log = true, config = true, kv = true, smtp = true }}
        [instances.email-notifier.config]
        admin_recipients = {admins:?}
        "#,
        port = peer.port(),
        cache = plugin_cache().display(),
        ca = peer.ca_pem_path().display(),
    ))
    .expect("plugins config");
    lockgate::plugins::start(&cfg, &app.store, &LicenceConfig::default(), None, None)
        .await
        .expect("plugin host")
        .expect("enabled")
}

fn overdue(holder_email: &str, language: &str) -> Value {
    json!({
        "system_id": 1,
        "system_name": "Head office",
        "messaging_language": "en",
        "count": 1,
        "truncated": false,
        "keys": [{
            "key_id": 7, "name": "Key 7", "marking": "K-7",
            "overdue_by": "validity ended 2026-11-01",
            "holder": { "person_id": 3, "first_name": "Anna", "surname": "Berg",
                        "email": holder_email, "language": language }
        }]
    })
}

fn notification(id: &str, topic: &str, payload: &Value) -> Notification {
    Notification {
        id: id.into(),
        topic: topic.into(),
        payload: payload.to_string(),
    }
}

async fn peer(options: SmtpOptions) -> SmtpPeer {
    tokio::task::spawn_blocking(move || SmtpPeer::start(options))
        .await
        .expect("smtp peer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_reminders_go_out_over_starttls_in_each_language() {
    let app = TestApp::new(Db::Sqlite).await;
    let peer = peer(SmtpOptions {
        require_starttls: true,
        auth: None,
    })
    .await;
    let host = host(&app, &peer, "starttls", &["security@example.com"]).await;
    host.notify(
        PLUGIN,
        notification(
            "overdue-keys:1:a",
            "notify.overdue_keys",
            &overdue("anna@example.com", "de-CH"),
        ),
    )
    .await
    .expect("plugin ran")
    .expect("delivered");
    let mails = peer.wait_for(2, Duration::from_secs(10));
    let admin = mails
        .iter()
        .find(|m| m.rcpt_tos == ["security@example.com"])
        .expect("the administrators' summary");
    assert!(
        admin.raw.contains("Subject: 1 overdue keys in Head office"),
        "{}",
        admin.raw
    );
    assert!(
        admin
            .raw
            .contains("Message-ID: <overdue-keys:1:a.0@gw.example.com>"),
        "{}",
        admin.raw
    );
    assert!(admin.raw.contains("Content-Language: en"), "{}", admin.raw);
    let holder = mails
        .iter()
        .find(|m| m.rcpt_tos == ["anna@example.com"])
        .expect("the holder's reminder");
    assert!(
        holder.raw.contains("Content-Language: de"),
        "{}",
        holder.raw
    );
    assert!(holder.raw.contains("Subject: Ihr "), "{}", holder.raw);
    assert_eq!(admin.mail_from, "lockgate@example.com");

    // A redelivery of the same notification sends nothing again.
    host.notify(
        PLUGIN,
        notification(
            "overdue-keys:1:a",
            "notify.overdue_keys",
            &overdue("anna@example.com", "de-CH"),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(peer.messages().len(), 2, "no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_answers_map_to_retry_failure_and_unknown() {
    let app = TestApp::new(Db::Sqlite).await;
    let peer = peer(SmtpOptions::default()).await;
    let host = host(&app, &peer, "starttls", &["security@example.com"]).await;

    // 4xx for the holder after the administrators' mail went out: retry later, and the
    // retry does not send the administrators' mail twice.
    let n = notification(
        "overdue-keys:1:b",
        "notify.overdue_keys",
        &overdue("tempfail@example.com", "en"),
    );
    for _ in 0..2 {
        match host.notify(PLUGIN, n.clone()).await.unwrap() {
            Err(NotifyError::RetryLater(m)) => assert!(m.contains("451"), "{m}"),
            other => panic!("a 451 must be retried: {other:?}"),
        }
    }
    peer.wait_for(1, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        peer.messages().len(),
        1,
        "the administrators' mail went out once"
    );

    // 5xx: failed, no retry.
    let n = notification(
        "overdue-keys:1:c",
        "notify.overdue_keys",
        &overdue("reject@example.com", "en"),
    );
    match host.notify(PLUGIN, n).await.unwrap() {
        Err(NotifyError::Failed(m)) => assert!(m.contains("550"), "{m}"),
        other => panic!("a 550 fails: {other:?}"),
    }

    // The connection drops after DATA: unknown, not blindly resent.
    let n = notification(
        "overdue-keys:1:d",
        "notify.overdue_keys",
        &overdue("drop-after-data@example.com", "en"),
    );
    match host.notify(PLUGIN, n).await.unwrap() {
        Err(NotifyError::Unknown(m)) => assert!(m.contains("may have accepted"), "{m}"),
        other => panic!("a drop after DATA is unknown: {other:?}"),
    }

    // A malformed notification fails without touching the relay.
    match host
        .notify(
            PLUGIN,
            Notification {
                id: "x".into(),
                topic: "notify.bogus".into(),
                payload: "{}".into(),
            },
        )
        .await
        .unwrap()
    {
        Err(NotifyError::Failed(m)) => assert!(m.contains("unknown notification topic"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_delivers_through_the_notifier() {
    let app = TestApp::new(Db::Sqlite).await;
    let peer = peer(SmtpOptions::default()).await;
    let host = host(&app, &peer, "starttls", &["security@example.com"]).await;
    let deliver = PluginDeliver {
        host: host.clone(),
        notifier: PLUGIN.into(),
    };
    let message = |id: &str, payload: Value| OutboxMessage {
        id: 1,
        message_id: id.into(),
        topic: "notify.licence_expiry".into(),
        payload,
        attempt: 1,
        created_at: chrono::Utc::now(),
        fencing: 1,
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(1),
    };
    let licence = json!({
        "system_name": "Head office", "messaging_language": "de", "number": 7,
        "soft_expiry": "2026-11-01", "hard_expiry": "2026-12-01"
    });
    deliver
        .deliver(&message("licence:1:2026-W48", licence.clone()))
        .await
        .expect("delivered");
    let mail = &peer.wait_for(1, Duration::from_secs(5))[0];
    assert!(mail.raw.contains("Content-Language: de"), "{}", mail.raw);
    assert!(mail.raw.contains("Lizenz 7"), "{}", mail.raw);

    // 4xx → a retryable failure; unknown → straight to the dead letters (permanent).
    let tempfail = host_for(&app, &peer, &["tempfail@example.com"]).await;
    let d = PluginDeliver {
        host: tempfail,
        notifier: PLUGIN.into(),
    };
    assert!(matches!(
        d.deliver(&message("licence:1:x", licence.clone())).await,
        Err(JobsError::Failed(_))
    ));
    let dropper = host_for(&app, &peer, &["drop-after-data@example.com"]).await;
    let d = PluginDeliver {
        host: dropper,
        notifier: PLUGIN.into(),
    };
    match d.deliver(&message("licence:1:y", licence)).await {
        Err(JobsError::Permanent(m)) => assert!(m.contains("unknown"), "{m}"),
        other => panic!("{other:?}"),
    }
}

async fn host_for(app: &TestApp, peer: &SmtpPeer, admins: &[&str]) -> PluginHost {
    host(app, peer, "starttls", admins).await
}

/// Compiled components shared by the tests (keyed by engine and component hash).
fn plugin_cache() -> std::path::PathBuf {
    std::env::temp_dir().join("lockgate-test-plugin-cache")
}
