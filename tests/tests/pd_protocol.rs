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

async fn site(app: &TestApp) -> Site {
    let authority = Arc::new(
        pd::open_authority(
            &app.store,
            &lockgate::config::PdsConfig::default(),
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
        Arc::new(PluginFrames {
            host,
            protocols: Default::default(),
        }),
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
        let site = site(&app).await;
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
    let site = site(&app).await;
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
    let (_, mut g1) = pd_of(&site, &api, "PD-G1", Generation::WallGen1).await;
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
    assert_eq!(s1["settings"]["key_updater_mode"], false);
    assert!(s1["settings"].get("log_level").is_none());
    assert_eq!(
        refusal(g1.keys_inserted(&keys[2..4]).await.unwrap_err()).code,
        "bad-message"
    );

    // Mobile: offline updates only for the last 10 keys updated there.
    let (_, mut m) = pd_of(&site, &api, "PD-M", Generation::Mobile).await;
    for k in &keys {
        m.key_inserted(*k).await.unwrap();
    }
    let sm = m.heartbeat("3.0.0", None).await.unwrap();
    assert_eq!(sm["offline_keys"], json!(keys[2..].to_vec()));

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
