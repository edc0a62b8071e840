//! The conformance suite: scenarios traced to the seed documents (`tests/conformance/*.toml`,
//! format in `tests/conformance/README.md`), run through the real router on SQLite and
//! PostgreSQL. Each scenario starts from a fresh locking system.
//!
//! Besides running the scenarios this checks that every scenario names a seed section that
//! exists in `../shared/seeds/` (when the seeds are beside the repository) and that every
//! scenario id appears in `docs/conformance.md`, so the coverage map stays complete.
//!
//! `LOCKGATE_CONFORMANCE=<text>` runs only the scenarios whose id or file contains `text`.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::http::Method;
use chrono::{DateTime, TimeDelta, Utc};
use lockgate_model::system::FixedSettings;
use lockgate_tests::{Db, Resp, TestApp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    scenario: Vec<Scenario>,
}

/// One rule of a seed document, as a sequence of API steps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// Unique, kebab-case; listed in `docs/conformance.md`.
    id: String,
    /// Seed file number (`000`, `001`, `002`, `004`).
    seed: String,
    /// Section number (manual) or heading (FAQs) the rule comes from.
    section: String,
    /// The rule, in a few words (never the seed's sentence).
    rule: String,
    /// Known broken: lockgate does not keep this rule yet (the reason, and where the fix
    /// goes). The runner then requires the scenario to FAIL, so a fix shows up as a
    /// failure that asks for this mark to be removed; `docs/conformance.md` lists it as
    /// broken.
    #[serde(default)]
    broken: Option<String>,
    /// Locking-system settings fixed at creation that differ from the test default.
    #[serde(default)]
    fixed: Option<FixedOverride>,
    #[serde(default)]
    step: Vec<Step>,
    #[serde(skip)]
    file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedOverride {
    remote: Option<bool>,
    cylinder_groups: Option<bool>,
    audit_trail_approvals: Option<bool>,
}

/// One step: a request (`req`) or an action (`do`), and what its answer must show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// `"METHOD /path"`, with `${var}` substitution.
    req: Option<String>,
    /// An action: `execute-jobs` (the hardware executes every open job) or `admin` (create
    /// a C-key with a role and a token; `name`, `permissions`, `domains`).
    #[serde(rename = "do")]
    action: Option<String>,
    /// JSON body (TOML value), with `${var}` substitution.
    body: Option<toml::Value>,
    /// Send with the token of this administrator (created by `do = "admin"`).
    #[serde(rename = "as")]
    as_admin: Option<String>,
    /// Expected status; any 2xx when absent.
    status: Option<u16>,
    /// Save the answer's `id` under this name.
    save: Option<String>,
    /// Save values: name → JSON pointer into the answer.
    #[serde(default)]
    saves: BTreeMap<String, String>,
    /// JSON pointers that must be absent or null (TOML has no null).
    #[serde(default)]
    absent: Vec<String>,
    /// JSON pointer → expected value (objects match as subsets; `/#` at the end is a length).
    #[serde(default)]
    expect: BTreeMap<String, toml::Value>,
    /// JSON pointer to an array → an element matching this value must be in it.
    #[serde(default)]
    contains: BTreeMap<String, toml::Value>,
    /// JSON pointer to an array → no element matching this value may be in it.
    #[serde(default)]
    lacks: BTreeMap<String, toml::Value>,
    /// The answer is a problem document of this type (`urn:lockgate:problem:<problem>`).
    problem: Option<String>,
    /// The problem document's detail contains this text (case-insensitive).
    detail: Option<String>,
    /// `do = "admin"`: the administrator's name (its C-key id is saved under it).
    name: Option<String>,
    /// `do = "admin"`: the role's permissions.
    permissions: Option<toml::Value>,
    /// `do = "admin"`: the C-key's domains.
    #[serde(default)]
    domains: Vec<toml::Value>,
    /// `do = "clock"`: the instant the application's clock shows from now on.
    at: Option<String>,
    /// `do = "licence"`: the features the installed licence grants (snake_case names).
    #[serde(default)]
    features: Vec<String>,
}

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn load_scenarios() -> Vec<Scenario> {
    let (scenarios, errors) = load_scenario_files();
    let filtering = std::env::var("LOCKGATE_CONFORMANCE").is_ok_and(|f| !f.is_empty());
    if filtering {
        for e in &errors {
            eprintln!("warning: skipped {e}");
        }
    } else {
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
    scenarios
}

/// Every scenario of every file, and the files that do not parse.
fn load_scenario_files() -> (Vec<Scenario>, Vec<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conformance_dir())
        .expect("tests/conformance")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read scenario file");
        let parsed: ScenarioFile = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for mut s in parsed.scenario {
            s.file = name.clone();
            out.push(s);
        }
    }
    (out, errors)
}

fn selected(all: Vec<Scenario>) -> Vec<Scenario> {
    match std::env::var("LOCKGATE_CONFORMANCE") {
        Ok(f) if !f.is_empty() => all
            .into_iter()
            .filter(|s| s.id.contains(&f) || s.file.contains(&f))
            .collect(),
        _ => all,
    }
}

/// Variables of a running scenario: saved ids and values, and the administrators' tokens.
struct Vars {
    values: HashMap<String, Value>,
    tokens: HashMap<String, String>,
    now: DateTime<Utc>,
}

impl Vars {
    /// The value of `${expr}`: a saved name, or `now±N[mhd]` / `today±Nd`.
    fn lookup(&self, expr: &str) -> Result<Value, String> {
        if let Some(v) = self.values.get(expr) {
            return Ok(v.clone());
        }
        let (base, rest) = if let Some(r) = expr.strip_prefix("now") {
            ("now", r)
        } else if let Some(r) = expr.strip_prefix("today") {
            ("today", r)
        } else {
            return Err(format!("unknown variable ${{{expr}}}"));
        };
        let mut t = self.now;
        if !rest.is_empty() {
            let (sign, num) = rest.split_at(1);
            let (n, unit) = num.split_at(num.len().saturating_sub(1));
            let n: i64 = n
                .parse()
                .map_err(|_| format!("bad offset in ${{{expr}}}"))?;
            let d = match unit {
                "m" => TimeDelta::minutes(n),
                "h" => TimeDelta::hours(n),
                "d" => TimeDelta::days(n),
                _ => return Err(format!("bad unit in ${{{expr}}} (m, h or d)")),
            };
            t = match sign {
                "+" => t + d,
                "-" => t - d,
                _ => return Err(format!("bad sign in ${{{expr}}}")),
            };
        }
        Ok(match base {
            "today" => Value::String(t.date_naive().to_string()),
            _ => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
    }

    /// Substitute `${…}` in a string; a string that is one `${…}` keeps the value's type.
    fn subst_str(&self, s: &str) -> Result<Value, String> {
        if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
            && !inner.contains("${")
        {
            return self.lookup(inner);
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..]
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let v = self.lookup(&rest[i + 2..i + end])?;
            match v {
                Value::String(x) => out.push_str(&x),
                other => out.push_str(&other.to_string()),
            }
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    fn subst(&self, v: &Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => self.subst_str(s)?,
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.subst(x)).collect::<Result<_, _>>()?)
            }
            Value::Object(m) => {
                let mut o = Map::new();
                for (k, x) in m {
                    o.insert(k.clone(), self.subst(x)?);
                }
                Value::Object(o)
            }
            other => other.clone(),
        })
    }

    fn subst_toml(&self, v: &toml::Value) -> Result<Value, String> {
        let j = serde_json::to_value(v).map_err(|e| e.to_string())?;
        self.subst(&j)
    }
}

/// `actual` matches `expected`: objects as subsets, arrays element by element, numbers by value.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, ev)| {
            a.get(k).is_some_and(|av| matches(ev, av)) || (ev.is_null() && !a.contains_key(k))
        }),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| matches(x, y))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        (e, a) => e == a,
    }
}

fn pointer<'a>(body: &'a Value, ptr: &str) -> Option<&'a Value> {
    if ptr.is_empty() || ptr == "/" {
        Some(body)
    } else {
        body.pointer(ptr)
    }
}

/// Seed of the licence-signing key the conformance gateway trusts.
const LICENCE_SEED: [u8; 32] = [21; 32];
const LICENCE_KEY_ID: &str = "conformance";

/// The gateway a scenario drives: the test app, its clock (fixed at the scenario's start,
/// moved by `do = "clock"`) and its API configuration.
struct Gateway {
    app: TestApp,
    clock: Arc<lockgate_app::FixedClock>,
    config: lockgate_api::ApiConfig,
}

impl Gateway {
    /// Rebuild the router over the current clock and configuration.
    fn rebuild(&mut self) {
        self.app.router = lockgate_api::router(lockgate_api::AppState::with_app(
            lockgate_app::App::with_clock(self.app.store.clone(), self.clock.clone()),
            self.config.clone(),
        ));
    }
}

/// Enforce licences from now on and install one granting `features` (`do = "licence"`).
async fn install_licence(gw: &mut Gateway, features: &[String]) -> Result<(), String> {
    use lockgate_engine::licence::{
        Licence, LicenceFeature, TrustedKeys, generate_key_pair_from_seed, sign,
    };
    let (secret, public) = generate_key_pair_from_seed(LICENCE_SEED);
    let trusted = TrustedKeys::from_config([format!("{LICENCE_KEY_ID}:{public}")])
        .map_err(|e| e.to_string())?;
    gw.config = lockgate_api::ApiConfig {
        licence: lockgate_api::licence::LicenceConfig {
            trusted_keys: trusted,
            enforce: true,
        },
        ..lockgate_api::ApiConfig::default()
    };
    gw.rebuild();
    let app = &gw.app;
    let mut granted = std::collections::BTreeSet::new();
    for f in features {
        let f: LicenceFeature = serde_json::from_value(json!(f))
            .map_err(|_| format!("unknown licence feature {f:?}"))?;
        granted.insert(f);
    }
    let now = Utc::now();
    let licence = Licence {
        system_name: "Test site".to_owned(),
        number: 1,
        issued_at: now - TimeDelta::days(1),
        soft_expiry: Some(now + TimeDelta::days(300)),
        hard_expiry: Some(now + TimeDelta::days(330)),
        features: granted,
        max_keys: None,
        max_cylinders: None,
        key_id: LICENCE_KEY_ID.to_owned(),
    };
    let req = axum::http::Request::builder()
        .method(Method::PUT)
        .uri("/api/v1/licence")
        .header(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {}", app.token),
        )
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(sign(
            &licence,
            &secret,
            LICENCE_KEY_ID,
        )))
        .map_err(|e| e.to_string())?;
    let r = app.send(req).await;
    if !r.status.is_success() {
        return Err(format!("licence not installed: {} {}", r.status, r.body));
    }
    Ok(())
}

async fn run_step(gw: &mut Gateway, vars: &mut Vars, step: &Step) -> Result<(), String> {
    if let Some(action) = &step.action {
        if action == "licence" {
            return install_licence(gw, &step.features).await;
        }
        if action == "clock" {
            let at = step.at.as_deref().ok_or("do = \"clock\" needs `at`")?;
            let at = match vars.subst_str(at)? {
                Value::String(t) => t,
                other => other.to_string(),
            };
            let at = DateTime::parse_from_rfc3339(&at)
                .map_err(|e| format!("`at` {at:?}: {e}"))?
                .with_timezone(&Utc);
            gw.clock.set(at);
            return Ok(());
        }
        let app = &gw.app;
        return match action.as_str() {
            "execute-jobs" => {
                app.execute_open_jobs().await;
                Ok(())
            }
            "admin" => {
                let name = step.name.as_deref().ok_or("do = \"admin\" needs a name")?;
                let perms = match &step.permissions {
                    Some(p) => vars.subst_toml(p)?,
                    None => json!({}),
                };
                let mut domains = Vec::new();
                for d in &step.domains {
                    let v = vars.subst_toml(d)?;
                    domains.push(v.as_i64().ok_or(format!("domain {v} is not an id"))?);
                }
                let (ck, token) = app.admin_with(name, perms, &domains).await;
                vars.values.insert(name.to_string(), json!(ck));
                vars.tokens.insert(name.to_string(), token);
                Ok(())
            }
            other => Err(format!("unknown action {other:?}")),
        };
    }
    let app = &gw.app;
    let req = step.req.as_deref().ok_or("a step needs `req` or `do`")?;
    let (method, path) = req
        .split_once(' ')
        .ok_or_else(|| format!("`req` is \"METHOD /path\", not {req:?}"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let path = match vars.subst_str(path)? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let body = step.body.as_ref().map(|b| vars.subst_toml(b)).transpose()?;
    let token = match &step.as_admin {
        Some(a) => vars
            .tokens
            .get(a)
            .cloned()
            .ok_or_else(|| format!("no administrator {a:?}"))?,
        None => app.token.clone(),
    };
    let body = match (&method, body) {
        (m, None) if *m == Method::POST || *m == Method::PUT => Some(json!({})),
        (_, b) => b,
    };
    let resp: Resp = app.call(method.clone(), &path, Some(&token), body).await;
    let ctx = || format!("{req} → {} {}", resp.status, resp.body);
    match step.status {
        Some(s) if resp.status.as_u16() != s => {
            return Err(format!("expected status {s}; {}", ctx()));
        }
        None if !resp.status.is_success() => return Err(format!("expected success; {}", ctx())),
        _ => {}
    }
    if let Some(p) = &step.problem {
        let want = format!("urn:lockgate:problem:{p}");
        if resp.body["type"] != want.as_str() {
            return Err(format!("expected problem {want}; {}", ctx()));
        }
    }
    if let Some(d) = &step.detail {
        let detail = resp.body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        if !detail.contains(&d.to_lowercase()) {
            return Err(format!("expected the detail to mention {d:?}; {}", ctx()));
        }
    }
    for (ptr, want) in &step.expect {
        let want = vars.subst_toml(want)?;
        if let Some(arr) = ptr.strip_suffix("/#") {
            let len = pointer(&resp.body, arr)
                .and_then(Value::as_array)
                .map(Vec::len);
            if len.map(|l| json!(l)) != Some(want.clone()) {
                return Err(format!(
                    "expected {arr} to have {want} elements, it has {len:?}; {}",
                    ctx()
                ));
            }
            continue;
        }
        match pointer(&resp.body, ptr) {
            Some(got) if matches(&want, got) => {}
            got if want.is_null() && got.is_none_or(Value::is_null) => {}
            got => return Err(format!("expected {ptr} = {want}, got {got:?}; {}", ctx())),
        }
    }
    for ptr in &step.absent {
        if let Some(got) = pointer(&resp.body, ptr).filter(|v| !v.is_null()) {
            return Err(format!("expected {ptr} to be absent, got {got}; {}", ctx()));
        }
    }
    for (ptr, want, present) in step
        .contains
        .iter()
        .map(|(p, w)| (p, w, true))
        .chain(step.lacks.iter().map(|(p, w)| (p, w, false)))
    {
        let want = vars.subst_toml(want)?;
        let arr = pointer(&resp.body, ptr)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{ptr} is not an array; {}", ctx()))?;
        let found = arr.iter().any(|x| matches(&want, x));
        if found != present {
            let verb = if present {
                "to contain"
            } else {
                "not to contain"
            };
            return Err(format!("expected {ptr} {verb} {want}; {}", ctx()));
        }
    }
    if let Some(name) = &step.save {
        let id = resp
            .body
            .get("id")
            .cloned()
            .ok_or_else(|| format!("no id to save; {}", ctx()))?;
        vars.values.insert(name.clone(), id);
    }
    for (name, ptr) in &step.saves {
        let v = pointer(&resp.body, ptr)
            .cloned()
            .ok_or_else(|| format!("nothing at {ptr} to save as {name}; {}", ctx()))?;
        vars.values.insert(name.clone(), v);
    }
    Ok(())
}

async fn run_scenario(db: Db, s: &Scenario) -> Result<(), String> {
    let mut fixed: FixedSettings = lockgate_tests::fixed(true);
    if let Some(o) = &s.fixed {
        fixed.remote = o.remote.unwrap_or(fixed.remote);
        fixed.cylinder_groups = o.cylinder_groups.unwrap_or(fixed.cylinder_groups);
        fixed.audit_trail_approvals = o
            .audit_trail_approvals
            .unwrap_or(fixed.audit_trail_approvals);
    }
    let app = TestApp::with_fixed(db, fixed).await;
    let now = Utc::now();
    let mut gw = Gateway {
        app,
        clock: Arc::new(lockgate_app::FixedClock::new(now)),
        config: lockgate_api::ApiConfig::default(),
    };
    gw.rebuild();
    let app = &gw.app;
    let mut vars = Vars {
        values: HashMap::from([
            ("system".to_string(), json!(app.system_id)),
            ("master".to_string(), json!(app.master_c_key_id)),
            ("default_domain".to_string(), json!(app.default_domain)),
        ]),
        tokens: HashMap::new(),
        now,
    };
    for (i, step) in s.step.iter().enumerate() {
        run_step(&mut gw, &mut vars, step)
            .await
            .map_err(|e| format!("step {}: {e}", i + 1))?;
    }
    Ok(())
}

async fn run_all(db: Db) {
    let scenarios = Arc::new(selected(load_scenarios()));
    assert!(!scenarios.is_empty(), "no scenario selected");
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..scenarios.len() {
        let scenarios = scenarios.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _p = permits.acquire().await;
            // Its own task, so a panicking helper (a setup step the scenario got wrong)
            // fails this scenario, not the run.
            let inner = scenarios.clone();
            let r = match tokio::spawn(async move { run_scenario(db, &inner[i]).await }).await {
                Ok(r) => r,
                Err(e) => Err(format!("panicked: {e}")),
            };
            (i, r)
        });
    }
    let mut failures = Vec::new();
    let mut broken = 0;
    while let Some(r) = set.join_next().await {
        let (i, r) = r.expect("scenario task");
        let s = &scenarios[i];
        let r = match (&s.broken, r) {
            (Some(_), Err(_)) => {
                broken += 1;
                Ok(())
            }
            (Some(why), Ok(())) => Err(format!(
                "marked broken ({why}) but passes now: remove `broken` and mark it fixed in docs/conformance.md"
            )),
            (None, r) => r,
        };
        if let Err(e) = r {
            failures.push(format!(
                "{} ({} §{} {}; {}): {e}",
                s.id, s.seed, s.section, s.rule, s.file
            ));
        }
    }
    failures.sort();
    eprintln!(
        "conformance on {db:?}: {} scenarios, {} kept, {broken} known broken, {} failed",
        scenarios.len(),
        scenarios.len() - failures.len() - broken,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed scenarios:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sqlite() {
    run_all(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_postgres() {
    run_all(Db::Postgres).await;
}

/// Every scenario is well formed, unique, traced to a seed section that exists, and listed
/// in the coverage map.
#[test]
fn scenarios_are_traced_and_mapped() {
    let scenarios = load_scenarios();
    assert!(scenarios.len() >= 10, "the suite lost its scenarios");
    let map = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/conformance.md"),
    )
    .expect("docs/conformance.md");
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds");
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for s in &scenarios {
        if !seen.insert(s.id.clone()) {
            problems.push(format!("{}: duplicate id", s.id));
        }
        if s.id.is_empty()
            || !s
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problems.push(format!("{}: the id must be kebab-case", s.id));
        }
        if s.rule.trim().is_empty() || s.step.is_empty() {
            problems.push(format!("{}: needs a rule and steps", s.id));
        }
        match map
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", s.id)))
        {
            None => problems.push(format!("{}: not listed in docs/conformance.md", s.id)),
            Some(row) if s.broken.is_some() != row.contains("| broken") => problems.push(format!(
                "{}: docs/conformance.md must list it as broken exactly when the scenario is marked broken",
                s.id
            )),
            Some(_) => {}
        }
        if let Some(text) = seed_text(&seeds, &s.seed) {
            let heading = |l: &str| {
                let l = l.trim().trim_start_matches("**");
                if s.seed == "000" {
                    l.starts_with(&format!("{} ", s.section))
                } else {
                    l.starts_with(&s.section)
                }
            };
            if !text.lines().any(heading) {
                problems.push(format!(
                    "{}: seed {} has no section {:?}",
                    s.id, s.seed, s.section
                ));
            }
        } else if seeds.is_dir() {
            problems.push(format!("{}: no seed file {}", s.id, s.seed));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn seed_text(dir: &Path, seed: &str) -> Option<String> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{seed}_"))
        })?;
    std::fs::read_to_string(entry.path()).ok()
}
