//! Jobs reach the hardware, end to end on SQLite and PostgreSQL: the API served on a port,
//! the PD listener with the bundled device-protocol plugins (`pd-wall-gen1`,
//! `pd-wall-gen2`, `pd-mobile`) behind it, and PDs speaking the protocol of `docs/pds/`
//! over mutual TLS (the simulator's own implementation of it, `tools/sim`). The simulator
//! run closes the loop (change → job → PD → key → report → actual = defined, checked
//! against `can-open`) with faults injected; the protocol test checks each generation's
//! rules and every refusal.

use std::{sync::Arc, time::Duration};

use lockgate::pd_listener::{self as pd, PdListenerOptions, PluginFrames};
use lockgate::{gateway::CoreGateway, plugins::DbKv};
use lockgate_api::{ApiConfig, AppState};
use lockgate_devices::transport::FrameLimits;
use lockgate_host::{HostConfig, PluginHost};
use lockgate_sim::pd::{PdConnection, Refusal};
use lockgate_sim::wire::{Generation, program_hash};
use lockgate_tests::*;
use serde_json::json;

/// A gateway on ports: the API and the PD listener with the device-protocol plugins.
struct Site {
    api: String,
    pd_addr: String,
    token: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn site(app: &TestApp, certificate_days: u32) -> Site {
    let pds = lockgate::config::PdsConfig {
        certificate_days,
        ..Default::default()
    };
    let authority = Arc::new(
        pd::open_authority(
            &app.store,
            &pds,
            &lockgate_devices::ca::SealingKey::generate().expect("sealing key"),
        )
        .await
        .expect("PD CA"),
    );
    let router = lockgate_api::router(AppState::with_app(
        lockgate_app::App::new(app.store.clone()).with_pd_authority(authority.clone()),
        ApiConfig::default(),
    ));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}/api/v1", http.local_addr().expect("addr"));
    let api_task = tokio::spawn(async move {
        let _ = axum::serve(http, router).await;
    });
    let mut cfg: HostConfig = toml::from_str(
        r#"
[plugins.pd-wall-gen1]
grants = { device = true }
[plugins.pd-wall-gen2]
grants = { device = true }
[plugins.pd-mobile]
grants = { device = true, kv = true }
"#,
    )
    .expect("host config");
    cfg.limits.deadline_ms = 20_000;
    let host = PluginHost::new(
        cfg,
        Arc::new(DbKv::new(app.store.clone())),
        Arc::new(CoreGateway::new(app.store.clone()).with_pd_authority(authority.clone())),
    )
    .expect("plugin host");
    host.load_dir(std::path::Path::new(lockgate_host::BUNDLED_PLUGINS_DIR))
        .expect("bundled plugins");
    for name in ["pd-wall-gen1", "pd-wall-gen2", "pd-mobile"] {
        let status = host.status_of(name).expect("loaded");
        assert_eq!(
            status.state,
            lockgate_host::PluginState::Enabled,
            "{name}: {status:?}"
        );
    }
    let trusted = Arc::new(pd::TrustedDevices::default());
    trusted.refresh(&app.store).await.expect("refresh");
    let tls = pd::tls_config(&authority, &["localhost".into()], trusted.clone()).expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let pd_addr = listener.local_addr().expect("addr").to_string();
    let options = PdListenerOptions {
        server_names: vec!["localhost".into()],
        handshake_timeout: Duration::from_secs(5),
        limits: FrameLimits {
            max_frame_bytes: 256 << 10,
            idle: Duration::from_secs(30),
            frame: Duration::from_secs(5),
        },
        max_connections: 64,
        refresh_every: Duration::from_millis(200),
    };
    let pd_task = tokio::spawn(pd::serve(
        listener,
        tls,
        options,
        app.store.clone(),
        trusted,
        Arc::new(PluginFrames::new(
            host,
            Default::default(),
            32,
            Duration::from_secs(5),
        )),
        std::future::pending(),
    ));
    Site {
        api,
        pd_addr,
        token: app.token.clone(),
        tasks: vec![api_task, pd_task],
    }
}

on_both!(
    the_simulator_closes_the_loop_with_faults,
    |app: TestApp| async move {
        let site = site(&app, 365).await;
        let summary = lockgate_sim::run(lockgate_sim::Options {
            api: site.api.clone(),
            token: site.token.clone(),
            pd_addr: site.pd_addr.clone(),
            pds: 3,
            keys: 12,
            cylinders: 4,
            duration: Duration::from_secs(4),
            insert_every: Duration::from_millis(10),
            heartbeat_every: Duration::from_secs(1),
            faults: true,
            seed: 7,
            ..Default::default()
        })
        .await
        .expect("simulation");
        println!("{summary}");
        assert!(summary.clean(), "{summary}");
        assert_eq!(summary.pairs_checked, 12 * 4, "{summary}");
        assert!(
            summary.jobs_written >= 12,
            "every key had its first update: {summary}"
        );
        assert!(summary.reports_applied >= 12, "{summary}");
        assert!(summary.cylinder_jobs >= 4, "{summary}");
        assert!(summary.faults_handled > 0, "{summary}");
        assert!(summary.reports_repeated > 0, "{summary}");
        assert!(summary.audit_records_new > 0, "{summary}");
        // The second PD's outage: offline updates within the limits, refusals past them and for
        // the key reported lost (on the revocation list of its next heartbeat).
        assert!(summary.offline_updates > 0, "{summary}");
        assert!(summary.offline_refused > 0, "{summary}");
        // Nothing is left open: the actual state is the defined state.
        let open = app.get("/api/v1/jobs?open=true").await.expect(200).body["items"]
            .as_array()
            .expect("items")
            .len();
        assert_eq!(open, 0);
    }
);

/// A remote PD of `generation`, enrolled; its connection.
async fn pd_of(
    site: &Site,
    api: &lockgate_sim::api::Api,
    name: &str,
    g: Generation,
) -> (u64, PdConnection) {
    let id = api.create_pd(name, g).await.expect("PD");
    let identity = api.enrol(id, name).await.expect("enrol");
    let tls = lockgate_sim::pd::tls_config(&identity).expect("tls");
    let conn = PdConnection::connect_with_retry(&site.pd_addr, "localhost", tls, g, 5)
        .await
        .expect("connect");
    (id, conn)
}

fn refusal(e: anyhow::Error) -> Refusal {
    e.downcast::<Refusal>().expect("an ERROR answer")
}

on_both!(each_generation_keeps_its_rules, |app: TestApp| async move {
    // Certificates of 20 days: within the 30 days before expiry, so they renew at once.
    let site = site(&app, 20).await;
    let api = lockgate_sim::api::Api::new(&site.api, &site.token);
    let group = api
        .create("/key-groups", json!({"name": "Staff", "kind": "dynamic"}))
        .await
        .unwrap();
    let door = api
        .create(
            "/cylinders",
            json!({"name": "Door", "marking": "C-1", "side_a": "electronic", "firmware": "10.2",
                   "access_list": {"key_groups": [{"key_group_id": group}]}}),
        )
        .await
        .unwrap();
    let mut keys = Vec::new();
    for i in 0..12 {
        keys.push(
            api.create(
                "/keys",
                json!({"name": format!("K{i}"), "marking": format!("K-{i}"), "type": "dynamic",
                       "generation": "2", "firmware": "12.7.0", "key_group_id": group,
                       "cylinder_ids": [door]}),
            )
            .await
            .unwrap(),
        );
    }
    let public_key = api.krl_public_key().await.unwrap();

    // Generation 2 speaks version 2: parallel insertions, log level, no key-updater mode.
    let (gen2, mut g2) = pd_of(&site, &api, "PD-G2", Generation::WallGen2).await;
    assert_eq!(g2.version, 2);
    let settings = g2.heartbeat("2.4.0", None).await.unwrap();
    assert_eq!(settings["settings"]["log_level"], "general");
    assert!(settings["settings"].get("key_updater_mode").is_none());
    let krl = lockgate_sim::pd::verify_krl(&settings["krl"], &public_key).expect("signed list");
    assert_eq!(krl["keys"], json!([]));
    let status = app
        .get(&format!("/api/v1/remote-pds/{gen2}/status"))
        .await
        .expect(200)
        .body;
    assert_eq!(status["online"], true, "{status}");
    assert_eq!(status["firmware"], "2.4.0");
    assert!(status["krl_issued_at"].is_string(), "{status}");
    assert!(
        status["krl_age_minutes"]
            .as_i64()
            .is_some_and(|m| (0..=60).contains(&m)),
        "{status}"
    );
    let both = g2.keys_inserted(&keys[..2]).await.unwrap();
    assert_eq!(both.iter().map(|(k, _)| *k).collect::<Vec<_>>(), keys[..2]);
    let job = both[0].1[0].clone();
    let job_id = job["job_id"].as_u64().unwrap();
    let hash = job["program_hash"].as_str().unwrap().to_owned();
    assert_eq!(program_hash(&job["program"]), hash, "the documented hash");
    let nine: Vec<u64> = keys[..9].to_vec();
    assert_eq!(
        refusal(g2.keys_inserted(&nine).await.unwrap_err()).code,
        "bad-message"
    );
    // A report of another program is refused, then the right one applies once.
    let wrong = g2
        .report_done(job_id, &"0".repeat(64), "r-1")
        .await
        .unwrap_err();
    assert_eq!(refusal(wrong).code, "refused");
    assert_eq!(
        g2.report_done(job_id, &hash, "r-1").await.unwrap(),
        "applied"
    );
    assert_eq!(
        g2.report_done(job_id, &hash, "r-1").await.unwrap(),
        "already_applied"
    );
    let other_key = g2.report_done(job_id, &hash, "r-2").await.unwrap_err();
    assert_eq!(refusal(other_key).code, "refused");
    // A bad body keeps the connection; the next request is served.
    let bad = g2
        .request(
            lockgate_sim::wire::kind::JOB_REPORT,
            json!({"job_id": "x"}),
            1,
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(bad).code, "bad-message");
    // Audit trail: new records count once; unknown cylinders and a skewed clock are refused.
    let now = chrono::Utc::now().timestamp_millis();
    let entries = [(door, now - 5_000, true), (door, now - 4_000, true)];
    assert_eq!(g2.audit_trail(keys[0], &entries).await.unwrap(), 2);
    assert_eq!(g2.audit_trail(keys[0], &entries).await.unwrap(), 0);
    let unknown = g2
        .audit_trail(keys[0], &[(999_999, now, true)])
        .await
        .unwrap_err();
    assert_eq!(refusal(unknown).code, "refused");
    let ahead = g2
        .audit_trail(keys[0], &[(door, now + 2 * 86_400_000, true)])
        .await
        .unwrap_err();
    assert_eq!(refusal(ahead).code, "refused");
    assert!(
        app.event_actions(&format!("/api/v1/keys/{}", keys[0]))
            .await
            .contains(&"audit_trail_uploaded".to_owned())
    );
    g2.log(&["boot ok", "slot 2 jammed"]).await.unwrap();
    let pd_events = app
        .event_actions(&format!("/api/v1/remote-pds/{gen2}"))
        .await;
    assert!(
        pd_events.contains(&"log_uploaded".to_owned()),
        "{pd_events:?}"
    );
    assert!(pd_events.contains(&"online".to_owned()), "{pd_events:?}");
    // A job delivered by generation 2 cannot be reported by another PD.
    let (gen1, mut g1) = pd_of(&site, &api, "PD-G1", Generation::WallGen1).await;
    let jobs = g2.key_inserted(keys[1]).await.unwrap();
    let (id1, h1) = (
        jobs[0]["job_id"].as_u64().unwrap(),
        jobs[0]["program_hash"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        refusal(g1.report_done(id1, &h1, "x").await.unwrap_err()).code,
        "refused"
    );
    assert_eq!(g2.report_done(id1, &h1, "y").await.unwrap(), "applied");

    // Generation 1: version 1 only, one key at a time, the boot loader at every heartbeat.
    assert_eq!(g1.version, 1);
    let no_loader = g1.heartbeat("1.9.0", None).await.unwrap_err();
    assert_eq!(refusal(no_loader).code, "bad-message");
    let s1 = g1.heartbeat("1.9.0", Some("1.2.0")).await.unwrap();
    let st = app
        .get(&format!("/api/v1/remote-pds/{gen1}/status"))
        .await
        .expect(200)
        .body;
    assert_eq!(
        (st["firmware"].as_str(), st["bootloader"].as_str()),
        (Some("1.9.0"), Some("1.2.0")),
        "{st}"
    );
    assert_eq!(s1["settings"]["key_updater_mode"], false);
    assert!(s1["settings"].get("log_level").is_none());
    assert_eq!(
        refusal(g1.keys_inserted(&keys[2..4]).await.unwrap_err()).code,
        "bad-message"
    );

    // C-keys: one before firmware 12.0.0 is refused at a PD and keeps the manual
    // confirmation; one with 12.7.0 fetches the cylinder job loaded on it, reports it with
    // the cylinder's audit trail, and its job is never confirmed by hand.
    let me = api.get("/me").await.unwrap();
    let master = me["c_key_id"].as_u64().unwrap();
    let door_job = api
        .open_jobs()
        .await
        .unwrap()
        .into_iter()
        .find(|j| j["kind"] == "cylinder_programming" && j["target_id"].as_u64() == Some(door));
    let door_job = door_job.expect("the door's programming job")["id"]
        .as_u64()
        .unwrap();
    api.post(
        &format!("/jobs/{door_job}/load"),
        json!({"c_key_id": master}),
    )
    .await
    .unwrap();
    let old = g1.c_key_inserted(master).await.unwrap_err();
    assert_eq!(refusal(old).code, "refused");
    api.patch(
        &format!("/c-keys/{master}"),
        json!({"generation": "2", "firmware": "12.7.0"}),
    )
    .await
    .unwrap();
    let by_hand = api
        .post(&format!("/jobs/{door_job}/confirm"), json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        by_hand
            .downcast_ref::<lockgate_sim::api::ApiError>()
            .map(|e| e.status),
        Some(409),
        "{by_hand:#}"
    );
    let carried = g1.c_key_inserted(master).await.unwrap();
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(carried[0]["job_id"].as_u64(), Some(door_job));
    let chash = carried[0]["program_hash"].as_str().unwrap().to_owned();
    assert_eq!(program_hash(&carried[0]["program"]), chash);
    let trail = [(keys[0], now - 3_000, true), (keys[5], now - 2_000, false)];
    assert_eq!(
        g1.report_cylinder_done(door_job, &chash, "c-1", &trail)
            .await
            .unwrap(),
        "applied"
    );
    assert!(
        app.event_actions(&format!("/api/v1/cylinders/{door}"))
            .await
            .contains(&"audit_trail_uploaded".to_owned())
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_trail_entries WHERE cylinder_id = $1")
            .bind(i64::try_from(door).unwrap())
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    // Two records from key 0's own trail (the same door, other instants) and two from the
    // door's.
    assert_eq!(stored, 4);
    // A key job's report carries no cylinder audit trail.
    let kj = g2.key_inserted(keys[6]).await.unwrap();
    let (kid, khash) = (
        kj[0]["job_id"].as_u64().unwrap(),
        kj[0]["program_hash"].as_str().unwrap().to_owned(),
    );
    let wrong_trail = g2
        .report_cylinder_done(kid, &khash, "k-6", &trail)
        .await
        .unwrap_err();
    assert_eq!(refusal(wrong_trail).code, "refused");
    // With PDs enrolled, a key's job is not confirmed by hand: the PD's report closes it.
    let key_by_hand = api
        .post(&format!("/jobs/{kid}/confirm"), json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        key_by_hand
            .downcast_ref::<lockgate_sim::api::ApiError>()
            .map(|e| e.status),
        Some(409),
        "{key_by_hand:#}"
    );

    // Mobile: offline updates only for the last 10 keys updated there.
    let (_, mut m) = pd_of(&site, &api, "PD-M", Generation::Mobile).await;
    for k in &keys {
        m.key_inserted(*k).await.unwrap();
    }
    let sm = m.heartbeat("3.0.0", None).await.unwrap();
    assert_eq!(sm["offline_keys"], json!(keys[2..].to_vec()));

    // Renewal: a new certificate for a new key over the connection; once per certificate;
    // the new one connects; expiry warnings go to PDs that did not renew, once.
    let renewed = m.renew("PD-M").await.unwrap();
    let again = m.renew("PD-M").await.unwrap_err();
    assert_eq!(refusal(again).code, "refused");
    let tls = lockgate_sim::pd::tls_config(&renewed).unwrap();
    let mut m2 =
        PdConnection::connect_with_retry(&site.pd_addr, "localhost", tls, Generation::Mobile, 5)
            .await
            .expect("the renewed certificate connects");
    m2.heartbeat("3.0.0", None).await.unwrap();
    let core = lockgate_app::App::new(app.store.clone());
    let warned = core
        .warn_expiring_pd_certificates(chrono::Duration::days(30))
        .await
        .unwrap();
    assert!(warned >= 3, "{warned}");
    assert_eq!(
        core.warn_expiring_pd_certificates(chrono::Duration::days(30))
            .await
            .unwrap(),
        0,
        "once per certificate"
    );
    let g2_events = app
        .event_actions(&format!("/api/v1/remote-pds/{gen2}"))
        .await;
    assert!(
        g2_events.contains(&"certificate_expiring".to_owned()),
        "{g2_events:?}"
    );
    let expiring: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE topic = 'notify.pd_certificate_expiring'",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(expiring, i64::try_from(warned).unwrap());

    // A PD of one generation speaking another's frames is refused and disconnected.
    let id = api.create_pd("PD-X", Generation::WallGen2).await.unwrap();
    let identity = api.enrol(id, "PD-X").await.unwrap();
    let tls = lockgate_sim::pd::tls_config(&identity).unwrap();
    assert!(
        PdConnection::connect_with_retry(&site.pd_addr, "localhost", tls, Generation::WallGen1, 5)
            .await
            .is_err()
    );
});
