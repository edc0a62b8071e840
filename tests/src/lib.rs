//! Test harness for lockgate's end-to-end suites: a fresh database per test (SQLite file or a
//! PostgreSQL database created and dropped on 127.0.0.1:5432), the real router driven with
//! `oneshot`, and helpers to create administrators with chosen roles and domains.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use lockgate_api::{ApiConfig, AppState};
use lockgate_model::system::FixedSettings;
use lockgate_store::{ConnectOptions, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

pub mod attack;
pub mod sso;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Admin URL of the PostgreSQL server the suite uses (override with LOCKGATE_TEST_PG).
pub fn pg_admin_url() -> String {
    std::env::var("LOCKGATE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).expect("randomness");
    format!(
        "lgt_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hex::encode(b)
    )
}

/// A database that exists for one test and is removed afterwards.
#[derive(Debug)]
pub struct TestDatabase {
    pub db: Db,
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create(db: Db) -> TestDatabase {
        let name = unique_name();
        match db {
            Db::Sqlite => {
                let dir = std::env::temp_dir().join("lockgate-tests");
                std::fs::create_dir_all(&dir).expect("temp dir");
                let path = dir.join(format!("{name}.db"));
                TestDatabase {
                    db,
                    url: format!("sqlite://{}", path.display()),
                    name: path.display().to_string(),
                }
            }
            Db::Postgres => {
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url())
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (the README's test command starts it)");
                sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create database");
                let base = pg_admin_url();
                let url = format!(
                    "{}/{name}",
                    base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base)
                );
                TestDatabase { db, url, name }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.db {
            Db::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
                }
            }
            Db::Postgres => {
                let name = self.name.clone();
                // Drop from a fresh runtime on another thread: the test's runtime may be gone.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async move {
                        if let Ok(mut c) =
                            <sqlx::AnyConnection as sqlx::Connection>::connect(&pg_admin_url())
                                .await
                        {
                            let _ = sqlx::Executor::execute(
                                &mut c,
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The person with this identifier among bodies such as [`TestApp::employee_bodies`] returns.
pub fn find_person<'a>(list: &'a [Value], identifier: &str) -> Option<&'a Value> {
    list.iter().find(|p| p["identifier"] == identifier)
}

/// A listener on a free loopback port and its base URL (`http://127.0.0.1:PORT`).
pub async fn loopback_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

/// A running app on a fresh database with one locking system and its super-administrator.
#[derive(Debug)]
pub struct TestApp {
    pub store: Store,
    pub router: Router,
    pub system_id: i64,
    pub master_c_key_id: i64,
    pub default_domain: i64,
    /// Super-administrator token.
    pub token: String,
    pub db: Db,
    /// The PD certificate authority behind the router, once [`TestApp::with_pd_authority`] ran.
    pd_authority: Option<std::sync::Arc<lockgate_app::PdAuthority>>,
    _database: TestDatabase,
}

/// A type with `Drop` is never captured field by field: a test closure that uses only
/// `app.store` still captures the whole app, so its database lives until the test ends
/// (without this, the database was dropped as soon as the closure started).
impl Drop for TestApp {
    fn drop(&mut self) {}
}

/// A response: status, headers and the body as JSON (or `Value::String` for non-JSON bodies).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The `id` of a created object.
    pub fn id(&self) -> i64 {
        self.body["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no id in {} {}", self.status, self.body))
    }

    /// Assert the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Assert the status and that the problem document names `field` among its errors.
    #[track_caller]
    pub fn expect_field(self, status: u16, field: &str) -> Resp {
        let r = self.expect(status);
        assert!(
            r.error_fields().iter().any(|f| f == field),
            "the problem does not name `{field}`: {}",
            r.body
        );
        r
    }

    /// Field names of a problem document's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn fixed(cylinder_groups: bool) -> FixedSettings {
    FixedSettings {
        remote: true,
        cylinder_groups,
        base_time_zone: "Europe/Berlin".into(),
        audit_trail_approvals: false,
    }
}

/// The public base URL of [`TestApp::with_sso`].
pub const SSO_PUBLIC_URL: &str = "https://lockgate.test";

impl TestApp {
    pub async fn new(db: Db) -> TestApp {
        TestApp::with_fixed(db, fixed(true)).await
    }

    /// A test app whose locking system has these fixed settings.
    pub async fn with_fixed(db: Db, fixed_settings: FixedSettings) -> TestApp {
        let database = TestDatabase::create(db).await;
        let store = Store::connect(&ConnectOptions::new(&database.url))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let b = store
            .init_system("Test site", fixed_settings)
            .await
            .expect("init");
        let router = lockgate_api::router(AppState::new(store.clone(), ApiConfig::default()));
        TestApp {
            store,
            router,
            system_id: b.system.id,
            master_c_key_id: b.master_c_key_id,
            default_domain: b.default_domain_id,
            token: b.token,
            db,
            pd_authority: None,
            _database: database,
        }
    }

    /// The same app with the gateway's PD certificate authority (default `[pds]`, a fresh
    /// sealing key) behind its router, so the PD identity endpoints answer.
    pub async fn with_pd_authority(mut self) -> TestApp {
        let authority = lockgate::pd_listener::open_authority(
            &self.store,
            &lockgate::config::PdsConfig::default(),
            &lockgate_devices::ca::SealingKey::generate().expect("sealing key"),
        )
        .await
        .expect("PD CA");
        let authority: std::sync::Arc<lockgate_app::PdAuthority> = std::sync::Arc::new(authority);
        self.router = lockgate_api::router(AppState::with_app(
            lockgate_app::App::new(self.store.clone()).with_pd_authority(authority.clone()),
            ApiConfig::default(),
        ));
        self.pd_authority = Some(authority);
        self
    }

    /// The same app with single sign-on behind its router: `[sso]` at [`SSO_PUBLIC_URL`] and
    /// the bundled `saml-sso` plugin (docs/connectors/saml.md), which may fetch metadata from
    /// `metadata_host` (`host:port`, loopback allowed); keeps the PD authority.
    pub fn with_sso(mut self, metadata_host: &str) -> TestApp {
        let mut cfg: lockgate_host::HostConfig = toml::from_str(&format!(
            "[plugins.saml-sso]\ngrants = {{ log = true, clock = true, http = {{ hosts = [\"{metadata_host}\"], allow_private = true }} }}\n"
        ))
        .expect("host config");
        cfg.limits.deadline_ms = 20_000;
        let host = lockgate_host::PluginHost::new(
            cfg,
            std::sync::Arc::new(lockgate::plugins::DbKv::new(self.store.clone())),
            std::sync::Arc::new(lockgate::gateway::CoreGateway::new(self.store.clone())),
        )
        .expect("plugin host");
        host.load_dir(std::path::Path::new(lockgate_host::BUNDLED_PLUGINS_DIR))
            .expect("bundled plugins");
        let status = host.status_of("saml-sso").expect("loaded");
        assert_eq!(
            status.state,
            lockgate_host::PluginState::Enabled,
            "{status:?}"
        );
        let config = ApiConfig {
            sso: Some(lockgate_api::sso::SsoConfig {
                public_url: SSO_PUBLIC_URL.into(),
                session_idle: chrono::Duration::minutes(30),
                session_absolute: chrono::Duration::hours(8),
                clock_skew_seconds: 60,
                request_lifetime: chrono::Duration::minutes(10),
                certificate_days: 365,
            }),
            ..ApiConfig::default()
        };
        let mut layer = lockgate_app::App::new(self.store.clone());
        if let Some(a) = &self.pd_authority {
            layer = layer.with_pd_authority(a.clone());
        }
        self.router = lockgate_api::router(AppState::with_app(layer, config).with_sso(
            std::sync::Arc::new(lockgate::plugins::HostSso {
                host,
                plugin: "saml-sso".into(),
            }),
        ));
        self
    }

    /// The same app with SCIM provisioning under `/scim/v2`, `meta.location` values based on
    /// `public_url` (docs/connectors/scim.md).
    pub fn with_scim(mut self, public_url: &str) -> TestApp {
        let config = ApiConfig {
            scim: Some(lockgate_api::scim::ScimConfig {
                public_url: public_url.trim_end_matches('/').into(),
            }),
            ..ApiConfig::default()
        };
        self.router = lockgate_api::router(AppState::new(self.store.clone(), config));
        self
    }

    /// The same app with the bundled `hr-soap` plugin mounted at `/ws/hr`
    /// (docs/connectors/hr-web-services.md), its WSDL naming `endpoint`; keeps the PD
    /// authority.
    pub fn with_hr_web_service(mut self, endpoint: &str) -> TestApp {
        let cfg: lockgate_host::HostConfig = toml::from_str(&format!(
            "[plugins.hr-soap]\ngrants = {{ log = true, config = true, employees = true }}\n\
             [plugins.hr-soap.config]\nendpoint = \"{endpoint}\"\n"
        ))
        .expect("host config");
        let host = lockgate_host::PluginHost::new(
            cfg,
            std::sync::Arc::new(lockgate::plugins::DbKv::new(self.store.clone())),
            std::sync::Arc::new(lockgate::gateway::CoreGateway::new(self.store.clone())),
        )
        .expect("plugin host");
        // Only this plugin: compiling every bundled one takes minutes in a debug build.
        host.load_manifest(
            &std::path::Path::new(lockgate_host::BUNDLED_PLUGINS_DIR).join("hr-soap.toml"),
        );
        let status = host.status_of("hr-soap").expect("loaded");
        assert_eq!(
            status.state,
            lockgate_host::PluginState::Enabled,
            "{status:?}"
        );
        let config = ApiConfig {
            web_services: lockgate_api::web_services::WebServicesConfig {
                mounts: [("hr".to_owned(), "hr-soap".to_owned())].into(),
                // The tests' listener is plain HTTP on loopback.
                loopback_passwords: true,
                ..Default::default()
            },
            ..ApiConfig::default()
        };
        let mut layer = lockgate_app::App::new(self.store.clone());
        if let Some(a) = &self.pd_authority {
            layer = layer.with_pd_authority(a.clone());
        }
        self.router = lockgate_api::router(AppState::with_app(layer, config).with_web_services(
            std::sync::Arc::new(lockgate::plugins::HostWebServices(host)),
        ));
        self
    }

    /// Serves the app's router on `listener` (see [`loopback_listener`]) through the gateway's
    /// own listener code (plain HTTP, so requests carry their transport), until the test's
    /// runtime ends.
    pub fn serve(&self, listener: tokio::net::TcpListener) {
        tokio::spawn(lockgate::serve::serve_http(
            listener,
            self.router.clone(),
            lockgate::serve::HttpOptions::default(),
            std::future::pending(),
        ));
    }

    /// A web-service client: a C-key holding the pre-defined Web service role in these
    /// domains, and a token issued to it for `purpose` (`web_service`, `scim`); returns the
    /// C-key's id and the token. The C-key is named `Provisioning MARKING`.
    pub async fn web_service_client(
        &self,
        marking: &str,
        domains: &[i64],
        purpose: &str,
    ) -> (i64, String) {
        let roles = self
            .get("/api/v1/roles?limit=100&with_body=true")
            .await
            .expect(200);
        let role = roles.body["items"]
            .as_array()
            .expect("roles")
            .iter()
            .find(|r| r["body"]["predefined"] == "web_service")
            .and_then(|r| r["id"].as_i64())
            .expect("the Web service role");
        self.c_key_and_token(
            &format!("Provisioning {marking}"),
            marking,
            role,
            domains,
            purpose,
        )
        .await
    }

    /// A SCIM request with a provisioning token, a JSON body (`application/scim+json`) and extra
    /// headers.
    pub async fn scim_call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/scim+json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    /// A provisioning client: a C-key holding the pre-defined Web service role and a token
    /// issued to it for SCIM; returns the C-key's id and the token.
    pub async fn scim_client(&self, marking: &str) -> (i64, String) {
        self.scim_client_in(marking, &[self.default_domain]).await
    }

    /// [`TestApp::scim_client`] whose C-key administers these domains.
    pub async fn scim_client_in(&self, marking: &str, domains: &[i64]) -> (i64, String) {
        self.web_service_client(marking, domains, "scim").await
    }

    /// A normal C-key holding `role` in these domains, and a token issued to it for `purpose`.
    async fn c_key_and_token(
        &self,
        name: &str,
        marking: &str,
        role: i64,
        domains: &[i64],
        purpose: &str,
    ) -> (i64, String) {
        let group = self.c_key_group().await;
        let ck = self
            .post(
                "/api/v1/c-keys",
                json!({ "name": name, "marking": marking, "kind": "normal", "key_group_id": group, "role_ids": [role], "domain_ids": domains }),
            )
            .await
            .expect(201)
            .id();
        let token = self
            .post(
                "/api/v1/tokens",
                json!({ "name": purpose, "c_key_id": ck, "purpose": purpose }),
            )
            .await
            .expect(201)
            .body["token"]
            .as_str()
            .expect("token")
            .to_string();
        (ck, token)
    }

    /// Every employee (hidden ones included, at most 1000) as its body with its `id` added.
    pub async fn employee_bodies(&self) -> Vec<Value> {
        let list = self
            .get("/api/v1/employees?include_hidden=true&with_body=true&limit=1000")
            .await
            .expect(200)
            .body;
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let mut body = item["body"].clone();
                body["id"] = item["id"].clone();
                body
            })
            .collect()
    }

    /// The actions of the events of the object at `path` (`/api/v1/remote-pds/7`), newest
    /// first.
    pub async fn event_actions(&self, path: &str) -> Vec<String> {
        self.get(&format!("{path}/events")).await.expect(200).body["items"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["action"].as_str().map(str::to_owned))
            .collect()
    }

    /// Send a request with a token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    /// Send a prepared request.
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp {
            status,
            headers,
            body,
        }
    }

    /// The hardware executes one open job as a device would report it: a key's job is
    /// confirmed at once; a created cylinder job is first loaded onto the super
    /// administrator's (master) C-key, then confirmed by it.
    pub async fn execute_job(&self, job: &Value) {
        let id = job["id"].as_i64().expect("job id");
        if job["target"] == "cylinder" && job["state"] == "created" {
            self.post(
                &format!("/api/v1/jobs/{id}/load"),
                serde_json::json!({ "c_key_id": self.master_c_key_id }),
            )
            .await
            .expect(200);
        }
        let done = self
            .post(&format!("/api/v1/jobs/{id}/confirm"), serde_json::json!({}))
            .await
            .expect(200);
        assert_eq!(done.body["state"], "finished", "job {id}: {:#?}", done.body);
    }

    /// Execute every open job (see [`TestApp::execute_job`]); audit-trail requests awaiting
    /// an approver are left as they are.
    pub async fn execute_open_jobs(&self) {
        let jobs = self
            .get("/api/v1/jobs?open=true&limit=1000")
            .await
            .expect(200);
        for j in jobs.body["items"].as_array().expect("items") {
            if j["state"] != "awaiting_approval" {
                self.execute_job(j).await;
            }
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, Some(&self.token), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(&self.token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(&self.token), None)
            .await
    }

    /// Create a domain and return its id.
    pub async fn domain(&self, name: &str) -> i64 {
        self.post("/api/v1/domains", json!({ "name": name }))
            .await
            .expect(201)
            .id()
    }

    /// Id of a key group of the given kind created on demand.
    pub async fn key_group(&self, name: &str, kind: &str) -> i64 {
        self.post("/api/v1/key-groups", json!({ "name": name, "kind": kind }))
            .await
            .expect(201)
            .id()
    }

    /// The first normal C-key group, created when there is none.
    pub async fn c_key_group(&self) -> i64 {
        match self.get("/api/v1/key-groups?type=normal_c_key").await.body["items"][0]["id"].as_i64()
        {
            Some(g) => g,
            None => self.key_group("C-keys", "normal_c_key").await,
        }
    }

    /// A C-key with a custom role (`permissions` as JSON map) in the given domains, and its token.
    pub async fn admin_with(
        &self,
        marking: &str,
        permissions: Value,
        domains: &[i64],
    ) -> (i64, String) {
        let role = self
            .post(
                "/api/v1/roles",
                json!({ "name": format!("role {marking}"), "permissions": permissions }),
            )
            .await
            .expect(201)
            .id();
        self.c_key_and_token(&format!("Admin {marking}"), marking, role, domains, "api")
            .await
    }
}

/// Run a test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let f = $body;
                f($crate::TestApp::new($crate::Db::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let f = $body;
                f($crate::TestApp::new($crate::Db::Postgres).await).await;
            }
        }
    };
}
