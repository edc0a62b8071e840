//! A simulation run: set up cylinders, keys and PDs through the API, enrol the PDs, let
//! them serve key insertions over the real protocol for a while (with faults when asked),
//! carry cylinder jobs, then check every simulated key against the gateway's `can-open`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::api::Api;
use crate::pd::{self, Identity, PdConnection, Refusal};
use crate::wire::{Generation, kind, program_hash};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// API root, e.g. `http://127.0.0.1:8080/api/v1`.
    pub api: String,
    pub token: String,
    /// The PD listener, e.g. `127.0.0.1:7443`.
    pub pd_addr: String,
    /// The name the listener's certificate carries.
    pub server_name: String,
    pub pds: usize,
    pub keys: usize,
    pub cylinders: usize,
    pub duration: Duration,
    /// Pause of each PD between key insertions.
    pub insert_every: Duration,
    /// Heartbeat interval of the simulated PDs (their settings say minutes; a simulation
    /// compresses time).
    pub heartbeat_every: Duration,
    pub seed: u64,
    /// Inject faults: keys pulled mid-update, duplicated and reordered reports, connections
    /// dropped mid-frame, clock skew, a revoked certificate.
    pub faults: bool,
    /// Key/cylinder pairs checked against `can-open` at the end (0: all).
    pub check_pairs: usize,
    /// Print a progress line this often (none: quiet).
    pub progress_every: Option<Duration>,
    /// Requests the set-up makes at once.
    pub setup_concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            api: "http://127.0.0.1:8080/api/v1".into(),
            token: String::new(),
            pd_addr: "127.0.0.1:7443".into(),
            server_name: "localhost".into(),
            pds: 3,
            keys: 30,
            cylinders: 6,
            duration: Duration::from_secs(10),
            insert_every: Duration::from_millis(20),
            heartbeat_every: Duration::from_secs(2),
            seed: 1,
            faults: false,
            check_pairs: 0,
            progress_every: None,
            setup_concurrency: 8,
        }
    }
}

/// A simulated key: what it holds.
#[derive(Debug, Clone)]
struct SimKey {
    id: u64,
    group: u64,
    /// The program the key holds (written by a PD), `None` before the first.
    program: Option<Value>,
    /// Offline updates since its last online one (the counter on the key's chip).
    offline_updates: u32,
    /// Reported lost by the simulation: PDs refuse it once their revocation list says so.
    lost: bool,
}

/// A simulated PD.
#[derive(Debug, Clone)]
struct SimPd {
    id: u64,
    name: String,
    generation: Generation,
    identity: Identity,
}

/// Counters and latencies of a run.
#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    heartbeats: AtomicU64,
    inserts: AtomicU64,
    jobs_written: AtomicU64,
    reports_applied: AtomicU64,
    reports_repeated: AtomicU64,
    audit_new: AtomicU64,
    cylinder_jobs: AtomicU64,
    offline_updates: AtomicU64,
    offline_refused: AtomicU64,
    /// Faults injected and the gateway's answer was the expected one.
    faults_handled: AtomicU64,
    /// Anything that should not happen: a wrong answer, a hash that does not match, a
    /// fault answered wrongly. Each is also kept in `problems`.
    errors: AtomicU64,
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub elapsed: Duration,
    pub connects: u64,
    pub connect_failures: u64,
    pub heartbeats: u64,
    pub inserts: u64,
    pub jobs_written: u64,
    pub reports_applied: u64,
    pub reports_repeated: u64,
    pub audit_records_new: u64,
    pub cylinder_jobs: u64,
    /// Offline revalidations a PD made while cut off from the gateway, and ones it refused
    /// (limits, revocation list).
    pub offline_updates: u64,
    pub offline_refused: u64,
    pub faults_handled: u64,
    pub errors: u64,
    /// Key/cylinder pairs compared with `can-open`, and how many disagreed.
    pub pairs_checked: u64,
    pub mismatches: u64,
    /// The first problems, readable.
    pub problems: Vec<String>,
    /// Latency percentiles (p50, p95, p99, max) in milliseconds per message kind.
    pub latencies: BTreeMap<&'static str, [f64; 4]>,
}

impl Summary {
    /// Whether the run found nothing wrong.
    pub fn clean(&self) -> bool {
        self.errors == 0 && self.mismatches == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "lockgate-sim summary ({:.1} s)",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  connections {} (refused {}), heartbeats {}, key insertions {}",
            self.connects, self.connect_failures, self.heartbeats, self.inserts
        )?;
        writeln!(
            f,
            "  jobs written {}, reports applied {}, repeated reports answered already-applied {}",
            self.jobs_written, self.reports_applied, self.reports_repeated
        )?;
        writeln!(
            f,
            "  audit-trail records new {}, cylinder jobs carried {}, faults injected and handled {}",
            self.audit_records_new, self.cylinder_jobs, self.faults_handled
        )?;
        writeln!(
            f,
            "  offline updates {} (refused {})",
            self.offline_updates, self.offline_refused
        )?;
        writeln!(
            f,
            "  oracle: {} key/cylinder pairs checked against can-open, {} disagree; errors {}",
            self.pairs_checked, self.mismatches, self.errors
        )?;
        writeln!(f, "  latency ms      p50      p95      p99      max")?;
        for (kind, [p50, p95, p99, max]) in &self.latencies {
            writeln!(
                f,
                "  {kind:<12} {p50:>8.2} {p95:>8.2} {p99:>8.2} {max:>8.2}"
            )?;
        }
        for p in &self.problems {
            writeln!(f, "  problem: {p}")?;
        }
        Ok(())
    }
}

/// The shared state of a run.
struct Run {
    opts: Options,
    api: Api,
    keys: Mutex<Vec<SimKey>>,
    cylinders: Mutex<HashMap<u64, Option<Value>>>,
    counters: Counters,
    latencies: std::sync::Mutex<HashMap<&'static str, Vec<u32>>>,
    problems: std::sync::Mutex<Vec<String>>,
    krl_public_key: String,
    /// The C-key (the token's own, firmware 12.7.0) that carries cylinder jobs: loaded on it
    /// through the API, fetched and reported at the first PD.
    c_key: u64,
    /// The outage fault happened.
    outage_done: AtomicBool,
    /// The first PD dropped its connection for the revocation fault.
    revoke_due: AtomicBool,
    /// Job id → cylinder id, as read from the open jobs.
    job_targets: Mutex<HashMap<u64, u64>>,
    stop: AtomicBool,
}

impl Run {
    fn problem(&self, p: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < 20 {
            problems.push(p);
        }
    }

    fn took(&self, kind: &'static str, since: Instant) {
        let us = u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default()
            .push(us);
    }
}

/// Runs a simulation against a running gateway.
pub async fn run(opts: Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let api = Api::new(&opts.api, &opts.token);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let tag = format!("sim{}-{}", opts.seed, rng.r#gen::<u32>());
    let (keys, cylinders, pds) = setup(&api, &opts, &tag, &mut rng).await?;
    let krl_public_key = api.krl_public_key().await?;
    let c_key = remote_c_key(&api).await?;
    let run = Arc::new(Run {
        opts: opts.clone(),
        api,
        keys: Mutex::new(keys),
        cylinders: Mutex::new(cylinders.into_iter().map(|c| (c, None)).collect()),
        counters: Counters::default(),
        latencies: Default::default(),
        problems: Default::default(),
        krl_public_key,
        c_key,
        outage_done: AtomicBool::new(false),
        revoke_due: AtomicBool::new(false),
        job_targets: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
    });
    let progress = opts.progress_every.map(|every| {
        let run = run.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let c = &run.counters;
                eprintln!(
                    "[{:>5.1}s] connections {} · insertions {} · jobs {} · reports {} · cylinder jobs {} · faults {} · errors {}",
                    started.elapsed().as_secs_f64(),
                    c.connects.load(Ordering::Relaxed),
                    c.inserts.load(Ordering::Relaxed),
                    c.jobs_written.load(Ordering::Relaxed),
                    c.reports_applied.load(Ordering::Relaxed),
                    c.cylinder_jobs.load(Ordering::Relaxed),
                    c.faults_handled.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed),
                );
            }
        })
    });
    let n_pds = pds.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in pds.into_iter().enumerate() {
        let run = run.clone();
        let seed = opts.seed.wrapping_add(i as u64 + 1);
        tasks.spawn(async move { pd_task(run, p, i, n_pds, seed).await });
    }
    let carrier = {
        let run = run.clone();
        tokio::spawn(async move { load_cylinder_jobs(&run, false).await })
    };
    tokio::time::sleep(opts.duration).await;
    run.stop.store(true, Ordering::Relaxed);
    let mut pds = Vec::with_capacity(n_pds);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(p) => pds.push(p),
            Err(e) => run.problem(format!("a PD task ended: {e}")),
        }
    }
    carrier.abort();
    // Drain: every key once more at a PD of its own, then the cylinder jobs, until nothing
    // is open, so the actual state can equal the defined state.
    pds.sort_by_key(|p| p.id);
    drain(&run, &pds).await?;
    if let Some(p) = progress {
        p.abort();
    }
    let (pairs, mismatches) = check(&run).await?;
    let c = &run.counters;
    let latencies = run
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter_mut()
        .map(|(k, v)| {
            v.sort_unstable();
            let at = |q: f64| {
                let i = ((v.len() as f64 - 1.0) * q).round() as usize;
                f64::from(v[i.min(v.len() - 1)]) / 1000.0
            };
            (*k, [at(0.5), at(0.95), at(0.99), at(1.0)])
        })
        .collect();
    let problems = run
        .problems
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Summary {
        elapsed: started.elapsed(),
        connects: c.connects.load(Ordering::Relaxed),
        connect_failures: c.connect_failures.load(Ordering::Relaxed),
        heartbeats: c.heartbeats.load(Ordering::Relaxed),
        inserts: c.inserts.load(Ordering::Relaxed),
        jobs_written: c.jobs_written.load(Ordering::Relaxed),
        reports_applied: c.reports_applied.load(Ordering::Relaxed),
        reports_repeated: c.reports_repeated.load(Ordering::Relaxed),
        audit_records_new: c.audit_new.load(Ordering::Relaxed),
        cylinder_jobs: c.cylinder_jobs.load(Ordering::Relaxed),
        offline_updates: c.offline_updates.load(Ordering::Relaxed),
        offline_refused: c.offline_refused.load(Ordering::Relaxed),
        faults_handled: c.faults_handled.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        pairs_checked: pairs,
        mismatches,
        problems,
        latencies,
    })
}

/// Creates a key group, the cylinders (admitting the group), the keys (each listing a few
/// cylinders) and the PDs (generations in turn), and enrols the PDs.
async fn setup(
    api: &Api,
    opts: &Options,
    tag: &str,
    rng: &mut StdRng,
) -> anyhow::Result<(Vec<SimKey>, Vec<u64>, Vec<SimPd>)> {
    let group = api
        .create(
            "/key-groups",
            json!({"name": format!("{tag} staff"), "kind": "dynamic"}),
        )
        .await
        .context("creating the key group")?;
    let cylinders = in_parallel(
        opts.setup_concurrency,
        (0..opts.cylinders).map(|i| {
            let api = api.clone();
            let tag = tag.to_owned();
            async move {
                api.create(
                    "/cylinders",
                    json!({"name": format!("{tag} door {i}"), "marking": format!("{tag}-C{i}"),
                       "side_a": "electronic", "firmware": "10.2",
                       "access_list": {"key_groups": [{"key_group_id": group}]}}),
                )
                .await
            }
        }),
    )
    .await
    .context("creating the cylinders")?;
    let mut plans = Vec::with_capacity(opts.keys);
    for _ in 0..opts.keys {
        let n = rng.gen_range(1..=cylinders.len().min(3));
        let mut chosen: Vec<u64> = Vec::with_capacity(n);
        while chosen.len() < n {
            let c = cylinders[rng.gen_range(0..cylinders.len())];
            if !chosen.contains(&c) {
                chosen.push(c);
            }
        }
        plans.push(chosen);
    }
    let keys = in_parallel(
        opts.setup_concurrency,
        plans.into_iter().enumerate().map(|(i, cyl)| {
            let api = api.clone();
            let tag = tag.to_owned();
            async move {
                api.create(
                    "/keys",
                    json!({"name": format!("{tag} key {i}"), "marking": format!("{tag}-K{i}"),
                       "type": "dynamic", "generation": "2", "firmware": "12.7.0",
                       "key_group_id": group, "cylinder_ids": cyl}),
                )
                .await
            }
        }),
    )
    .await
    .context("creating the keys")?;
    let pds = in_parallel(
        opts.setup_concurrency,
        (0..opts.pds).map(|i| {
            let api = api.clone();
            let generation = Generation::ALL[i % Generation::ALL.len()];
            let name = format!("{tag}-PD{i}");
            async move {
                let id = api.create_pd(&name, generation).await?;
                api.patch(
                    &format!("/remote-pds/{id}"),
                    json!({"settings": {"offline_update": offline_limits()}}),
                )
                .await
                .context("configuring offline updates")?;
                let identity = api.enrol(id, &name).await?;
                Ok(SimPd {
                    id,
                    name,
                    generation,
                    identity,
                })
            }
        }),
    )
    .await
    .context("creating and enrolling the PDs")?;
    let keys = keys
        .into_iter()
        .map(|id| SimKey {
            id,
            group,
            program: None,
            offline_updates: 0,
            lost: false,
        })
        .collect();
    Ok((keys, cylinders, pds))
}

/// The offline-update limits the simulated PDs are configured with (`DOMAIN.md` §8): three
/// offline updates per key since its last online one, within 30 days of it, revalidating for
/// at most 730 days.
fn offline_limits() -> Value {
    json!({"max_updates_since_online": 3, "max_days_since_online": 30, "revalidation_days": 730})
}

/// What a PD knows from its last `SETTINGS`.
#[derive(Debug, Clone)]
struct PdView {
    settings: Value,
    /// The verified revocation list.
    krl: Value,
    /// `"all"` or the key ids it may update offline.
    offline_keys: Value,
}

impl PdView {
    fn lists(&self, key_id: u64) -> bool {
        self.krl["keys"]
            .as_array()
            .is_some_and(|a| a.iter().any(|k| k["key_id"].as_u64() == Some(key_id)))
    }

    /// Whether the PD may revalidate `key` offline now, or why not (`DOMAIN.md` §8): only
    /// with offline updates configured, a revocation list still valid that does not list the
    /// key, the key among its offline keys, and under the per-key limit.
    fn offline_decision(&self, key: &SimKey) -> Result<(), &'static str> {
        let limits = &self.settings["settings"]["offline_update"];
        let Some(max) = limits["max_updates_since_online"].as_u64() else {
            return Err("offline updates are off");
        };
        let valid_until = self.krl["valid_until"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if valid_until.is_none_or(|v| v < chrono::Utc::now()) {
            return Err("the revocation list is out of date");
        }
        if self.lists(key.id) {
            return Err("the key is on the revocation list");
        }
        let listed = match &self.offline_keys {
            Value::String(all) if all == "all" => true,
            Value::Array(ids) => ids.iter().any(|k| k.as_u64() == Some(key.id)),
            _ => false,
        };
        if !listed {
            return Err("not among the keys this PD updates offline");
        }
        if u64::from(key.offline_updates) >= max {
            return Err("the key's offline updates since its last online one are used up");
        }
        Ok(())
    }
}

/// The token's C-key, made one that is updated at remote PDs (generation 2, firmware
/// 12.7.0: remote C-key update).
async fn remote_c_key(api: &Api) -> anyhow::Result<u64> {
    let me = api.get("/me").await?;
    let c_key = me["c_key_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("GET /me has no c_key_id"))?;
    api.patch(
        &format!("/c-keys/{c_key}"),
        json!({"generation": "2", "firmware": "12.7.0"}),
    )
    .await
    .context("making the token's C-key one with firmware 12.7.0")?;
    Ok(c_key)
}

/// Runs futures with at most `limit` at once, keeping their order.
async fn in_parallel<T, F>(limit: usize, futures: impl Iterator<Item = F>) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in futures.enumerate() {
        let slots = slots.clone();
        set.spawn(async move {
            let _permit = slots.acquire_owned().await;
            (i, f.await)
        });
    }
    let mut out: Vec<(usize, T)> = Vec::new();
    while let Some(done) = set.join_next().await {
        let (i, r) = done?;
        out.push((i, r?));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

/// One PD: connect, heartbeat, serve the insertions of its keys until the run stops.
async fn pd_task(run: Arc<Run>, mut p: SimPd, index: usize, n_pds: usize, seed: u64) -> SimPd {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut revoked_once = false;
    let started = Instant::now();
    while !run.stop.load(Ordering::Relaxed) {
        // Fault: halfway through, the first PD's certificate is revoked; its next
        // connection must fail, and it enrols again.
        if run.opts.faults
            && index == 0
            && !revoked_once
            && started.elapsed() > run.opts.duration / 2
        {
            revoked_once = true;
            if let Err(e) = revoked_certificate_fails(&run, &mut p).await {
                run.problem(format!("PD {}: revocation: {e:#}", p.name));
            }
        }
        let mut conn = match connect(&run, &p).await {
            Ok(c) => c,
            Err(e) => {
                run.counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                run.problem(format!("PD {}: cannot connect: {e:#}", p.name));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        match serve_keys(&run, &mut conn, &p, index, n_pds, &mut rng, started).await {
            Ok(()) => {}
            Err(e) => {
                if e.downcast_ref::<Dropped>().is_none() {
                    run.problem(format!("PD {}: {e:#}", p.name));
                }
            }
        }
    }
    p
}

/// The connection was dropped on purpose (fault injection).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn connect(run: &Run, p: &SimPd) -> anyhow::Result<PdConnection> {
    let t = Instant::now();
    let tls = pd::tls_config(&p.identity)?;
    let c = PdConnection::connect_with_retry(
        &run.opts.pd_addr,
        &run.opts.server_name,
        tls,
        p.generation,
        5,
    )
    .await?;
    run.took("connect", t);
    run.counters.connects.fetch_add(1, Ordering::Relaxed);
    Ok(c)
}

async fn heartbeat(run: &Run, conn: &mut PdConnection, p: &SimPd) -> anyhow::Result<PdView> {
    let t = Instant::now();
    let bootloader = (p.generation == Generation::WallGen1).then_some("1.2.0");
    let settings = conn.heartbeat("2.4.0", bootloader).await?;
    run.took("heartbeat", t);
    run.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
    let list = pd::verify_krl(&settings["krl"], &run.krl_public_key)
        .context("the revocation list in SETTINGS")?;
    if list["keys"].as_array().is_none() {
        anyhow::bail!("the revocation list has no keys: {list}");
    }
    if settings["settings"]["offline_update"] != offline_limits() {
        anyhow::bail!(
            "SETTINGS carry offline limits {} instead of the configured ones",
            settings["settings"]["offline_update"]
        );
    }
    Ok(PdView {
        offline_keys: settings["offline_keys"].clone(),
        settings,
        krl: list,
    })
}

async fn serve_keys(
    run: &Run,
    conn: &mut PdConnection,
    p: &SimPd,
    index: usize,
    n_pds: usize,
    rng: &mut StdRng,
    started: Instant,
) -> anyhow::Result<()> {
    let mut view = heartbeat(run, conn, p).await?;
    let mut last_heartbeat = Instant::now();
    let my_keys: Vec<usize> = {
        let n = run.keys.lock().await.len();
        (0..n).filter(|k| k % n_pds == index).collect()
    };
    if my_keys.is_empty() {
        tokio::time::sleep(run.opts.heartbeat_every).await;
        return Ok(());
    }
    while !run.stop.load(Ordering::Relaxed) {
        if last_heartbeat.elapsed() >= run.opts.heartbeat_every {
            view = heartbeat(run, conn, p).await?;
            last_heartbeat = Instant::now();
        }
        // Fault: the second PD loses its connection for a while a third into the run, just
        // after one of its keys was reported lost; it updates keys offline meanwhile.
        if run.opts.faults
            && index == 1
            && started.elapsed() > run.opts.duration / 3
            && !run.outage_done.swap(true, Ordering::Relaxed)
        {
            view = outage(run, conn, p, &my_keys, rng).await?;
            last_heartbeat = Instant::now();
        }
        // Fault: halfway through, the first PD drops its connection so that its certificate
        // can be revoked before it connects again (`pd_task`).
        if run.opts.faults
            && index == 0
            && started.elapsed() > run.opts.duration / 2
            && !run.revoke_due.swap(true, Ordering::Relaxed)
        {
            return Err(Dropped.into());
        }
        let slot = my_keys[rng.gen_range(0..my_keys.len())];
        let lost = {
            let keys = run.keys.lock().await;
            view.lists(keys[slot].id)
        };
        if lost {
            // A PD refuses a key on its revocation list without asking.
            tokio::time::sleep(run.opts.insert_every).await;
            continue;
        }
        insert_key(run, conn, p, slot, rng, started).await?;
        if index == 0 && rng.gen_bool(0.2) {
            insert_c_key(run, conn, p, rng).await?;
        }
        tokio::time::sleep(run.opts.insert_every).await;
    }
    Ok(())
}

/// The outage: one of the PD's keys is reported lost through the API, the PD's next
/// heartbeat must carry a revocation list that lists it, then the PD is cut off and
/// revalidates its keys offline (each key up to the limit, the lost one never) until it is
/// back. Returns the view of the heartbeat after the loss.
async fn outage(
    run: &Run,
    conn: &mut PdConnection,
    p: &SimPd,
    my_keys: &[usize],
    rng: &mut StdRng,
) -> anyhow::Result<PdView> {
    let lost_slot = my_keys[0];
    let lost_id = run.keys.lock().await[lost_slot].id;
    run.api
        .post(&format!("/keys/{lost_id}/lost"), json!({"block": "all"}))
        .await
        .context("reporting a key lost")?;
    run.keys.lock().await[lost_slot].lost = true;
    let view = heartbeat(run, conn, p).await?;
    if view.lists(lost_id) {
        run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
    } else {
        run.problem(format!(
            "key {lost_id} was reported lost, but the next heartbeat's revocation list does not list it"
        ));
    }
    // Cut off: no frame reaches the gateway meanwhile.
    let until = Instant::now() + run.opts.duration / 6;
    let max = view.settings["settings"]["offline_update"]["max_updates_since_online"]
        .as_u64()
        .unwrap_or(0);
    while Instant::now() < until && !run.stop.load(Ordering::Relaxed) {
        let slot = my_keys[rng.gen_range(0..my_keys.len())];
        let mut keys = run.keys.lock().await;
        let key = &mut keys[slot];
        match view.offline_decision(key) {
            Ok(()) => {
                key.offline_updates += 1;
                run.counters.offline_updates.fetch_add(1, Ordering::Relaxed);
                if u64::from(key.offline_updates) > max || key.lost {
                    run.problem(format!(
                        "key {} was updated offline past its limits",
                        key.id
                    ));
                }
            }
            Err(_) => {
                run.counters.offline_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(keys);
        tokio::time::sleep(run.opts.insert_every).await;
    }
    Ok(view)
}

/// A key is inserted: write its jobs to the key model, report them, upload its audit trail.
async fn insert_key(
    run: &Run,
    conn: &mut PdConnection,
    p: &SimPd,
    slot: usize,
    rng: &mut StdRng,
    started: Instant,
) -> anyhow::Result<()> {
    let key_id = run.keys.lock().await[slot].id;
    let t = Instant::now();
    let jobs = conn.key_inserted(key_id).await?;
    run.took("key_inserted", t);
    run.counters.inserts.fetch_add(1, Ordering::Relaxed);
    // An online update: the key's offline counter starts again.
    run.keys.lock().await[slot].offline_updates = 0;
    let _ = started;
    let faults = run.opts.faults;
    let mut jobs = jobs;
    if faults && jobs.len() > 1 && rng.gen_bool(0.5) {
        jobs.reverse(); // reordered reports
    }
    for job in jobs {
        let Some((job_id, program, hash)) = checked_job(run, &job)? else {
            continue;
        };
        if faults && rng.gen_bool(0.05) {
            // The key is pulled out before the write completes: nothing written, no report.
            run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if faults && rng.gen_bool(0.03) {
            // The connection drops in the middle of the report frame: the job stays open.
            let m = conn.message(
                kind::JOB_REPORT,
                json!({"job_id": job_id, "outcome": "done", "program_hash": hash, "report_key": format!("{}-{job_id}", p.name)}),
            );
            let len = m.encode().len();
            let cut = rng.gen_range(1..len + 3);
            let dropped = std::mem::replace(conn, connect(run, p).await?);
            dropped.drop_mid_frame(&m, cut).await;
            run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped.into());
        }
        if program.get("access").is_some() {
            run.keys.lock().await[slot].program = Some(program);
        }
        run.counters.jobs_written.fetch_add(1, Ordering::Relaxed);
        let report_key = format!("{}-{job_id}", p.name);
        let t = Instant::now();
        let taken = conn.report_done(job_id, &hash, &report_key).await?;
        run.took("job_report", t);
        match taken.as_str() {
            "applied" => run.counters.reports_applied.fetch_add(1, Ordering::Relaxed),
            "already_applied" => run
                .counters
                .reports_repeated
                .fetch_add(1, Ordering::Relaxed),
            other => {
                run.problem(format!("job {job_id}: the report was taken as `{other}`"));
                0
            }
        };
        if faults && job_id % 2 == 0 {
            // A retransmitted report (every other job, so every run has some): harmless.
            let again = conn.report_done(job_id, &hash, &report_key).await?;
            if again == "already_applied" {
                run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
                run.counters
                    .reports_repeated
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                run.problem(format!(
                    "job {job_id}: a repeated report was taken as `{again}`"
                ));
            }
        }
    }
    upload_audit_trail(run, conn, slot, rng, faults).await
}

/// The key's uses at the cylinders it lists, as its audit trail; with faults, the same
/// records again (none new) and records from a clock 2 days ahead (refused).
async fn upload_audit_trail(
    run: &Run,
    conn: &mut PdConnection,
    slot: usize,
    rng: &mut StdRng,
    faults: bool,
) -> anyhow::Result<()> {
    let (key_id, cylinders) = {
        let keys = run.keys.lock().await;
        let k = &keys[slot];
        (
            k.id,
            k.program.as_ref().map(listed_cylinders).unwrap_or_default(),
        )
    };
    if cylinders.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_millis();
    let entries: Vec<(u64, i64, bool)> = (0..rng.gen_range(1..=3))
        .map(|i| {
            (
                cylinders[rng.gen_range(0..cylinders.len())],
                now - 1000 * i64::from(i as u8),
                true,
            )
        })
        .collect();
    let t = Instant::now();
    let new = conn.audit_trail(key_id, &entries).await?;
    run.took("audit_trail", t);
    run.counters.audit_new.fetch_add(new, Ordering::Relaxed);
    if faults && rng.gen_bool(0.1) {
        let again = conn.audit_trail(key_id, &entries).await?;
        if again == 0 {
            run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
        } else {
            run.problem(format!(
                "key {key_id}: audit-trail records uploaded again counted {again} new"
            ));
        }
    }
    if faults && rng.gen_bool(0.05) {
        let skewed = [(cylinders[0], now + 2 * 86_400_000, true)];
        match conn.audit_trail(key_id, &skewed).await {
            Err(e)
                if e.downcast_ref::<Refusal>()
                    .is_some_and(|r| r.code == "refused") =>
            {
                run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
            }
            other => run.problem(format!(
                "key {key_id}: audit-trail records from 2 days ahead were answered {other:?}"
            )),
        }
    }
    Ok(())
}

/// A delivered job's id, program and hash, when the hash is the program's (`None`, and a
/// problem, when it is not).
fn checked_job(run: &Run, job: &Value) -> anyhow::Result<Option<(u64, Value, String)>> {
    let job_id = job["job_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("a job without job_id"))?;
    let program = job["program"].clone();
    let hash = job["program_hash"].as_str().unwrap_or_default().to_owned();
    if program_hash(&program) != hash {
        run.problem(format!(
            "job {job_id}: program_hash does not match the program"
        ));
        return Ok(None);
    }
    Ok(Some((job_id, program, hash)))
}

/// The cylinder ids a key program lists on its own (not by group).
fn listed_cylinders(program: &Value) -> Vec<u64> {
    program["access"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["target"]["kind"] == "cylinder")
                .filter_map(|e| e["target"]["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Revokes all of the PD's certificates through the API, checks that a connection now
/// fails, and enrols the PD again.
async fn revoked_certificate_fails(run: &Run, p: &mut SimPd) -> anyhow::Result<()> {
    run.api
        .post(
            &format!("/remote-pds/{}/certificates/revoke", p.id),
            json!({"reason": "lockgate-sim: revocation fault"}),
        )
        .await?;
    // The listener's handshake view refreshes every few seconds; the lookup after the
    // handshake refuses at once.
    let tls = pd::tls_config(&p.identity)?;
    let refused =
        match PdConnection::connect(&run.opts.pd_addr, &run.opts.server_name, tls, p.generation)
            .await
        {
            Err(_) => true,
            Ok(mut c) => c.heartbeat("2.4.0", Some("1.2.0")).await.is_err(),
        };
    if !refused {
        anyhow::bail!("a revoked certificate still served a heartbeat");
    }
    run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
    p.identity = run.api.enrol(p.id, &p.name).await?;
    Ok(())
}

/// Cylinder jobs are loaded on the run's C-key through the API (an administrator's
/// choice); the C-key fetches them at the first PD ([`insert_c_key`]). A loaded job's manual
/// confirmation must be refused (the C-key reports at a PD). Until stopped (`once`: one
/// pass); returns how many were loaded.
async fn load_cylinder_jobs(run: &Run, once: bool) -> anyhow::Result<u64> {
    let mut loaded = 0;
    let mut confirm_checked = false;
    loop {
        let jobs = run.api.open_jobs().await?;
        for j in jobs.iter().filter(|j| j["kind"] == "cylinder_programming") {
            let id = j["id"].as_u64().unwrap_or(0);
            if j["state"] == "created" {
                match run
                    .api
                    .post(&format!("/jobs/{id}/load"), json!({"c_key_id": run.c_key}))
                    .await
                {
                    Ok(_) => loaded += 1,
                    Err(e) => {
                        run.problem(format!("cylinder job {id}: load: {e:#}"));
                        continue;
                    }
                }
            }
            if run.opts.faults && !confirm_checked {
                confirm_checked = true;
                match run.api.post(&format!("/jobs/{id}/confirm"), json!({})).await {
                    Err(e) if e.downcast_ref::<crate::api::ApiError>().is_some_and(|a| a.status == 409) => {
                        run.counters.faults_handled.fetch_add(1, Ordering::Relaxed);
                    }
                    other => run.problem(format!(
                        "cylinder job {id} on a C-key with firmware 12.7.0 was confirmed by hand: {other:?}"
                    )),
                }
            }
        }
        if once {
            return Ok(loaded);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The run's C-key is inserted at this PD: it takes the cylinder jobs loaded on it,
/// programs the simulated cylinders and reports each with the cylinder's audit trail.
async fn insert_c_key(
    run: &Run,
    conn: &mut PdConnection,
    p: &SimPd,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let jobs = conn.c_key_inserted(run.c_key).await?;
    run.took("c_key_inserted", t);
    for job in jobs {
        let Some((job_id, program, hash)) = checked_job(run, &job)? else {
            continue;
        };
        let Some(cylinder) = cylinder_of_job(run, job_id).await? else {
            continue;
        };
        // The door's audit trail: a key the simulated cylinder admits was used there.
        let trail: Vec<(u64, i64, bool)> = {
            let keys = run.keys.lock().await;
            let k = &keys[rng.gen_range(0..keys.len())];
            let opened = opens(k, Some(&program), cylinder);
            vec![(k.id, chrono::Utc::now().timestamp_millis() - 60_000, opened)]
        };
        run.cylinders.lock().await.insert(cylinder, Some(program));
        let t = Instant::now();
        let taken = conn
            .report_cylinder_done(job_id, &hash, &format!("{}-c{job_id}", p.name), &trail)
            .await?;
        run.took("job_report", t);
        if taken == "applied" {
            run.counters.cylinder_jobs.fetch_add(1, Ordering::Relaxed);
        } else {
            run.counters
                .reports_repeated
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The cylinder a job is about (from the open jobs; `None` when it closed meanwhile).
async fn cylinder_of_job(run: &Run, job_id: u64) -> anyhow::Result<Option<u64>> {
    if let Some(c) = run.job_targets.lock().await.get(&job_id) {
        return Ok(Some(*c));
    }
    let jobs = run.api.open_jobs().await?;
    let mut targets = run.job_targets.lock().await;
    for j in &jobs {
        if let (Some(id), Some(t)) = (j["id"].as_u64(), j["target_id"].as_u64()) {
            targets.insert(id, t);
        }
    }
    Ok(targets.get(&job_id).copied())
}

/// Brings every key and cylinder to its defined state: each key at its own PD until no key
/// job is left (no faults now: every job is reported), and the cylinder jobs.
async fn drain(run: &Run, pds: &[SimPd]) -> anyhow::Result<()> {
    for _round in 0..5 {
        load_cylinder_jobs(run, true).await?;
        let open = run.api.open_jobs().await?;
        if open.is_empty() {
            return Ok(());
        }
        if open.iter().any(|j| j["kind"] == "remote_update") {
            drain_keys(run, pds).await?;
        }
        if let Some(p) = pds.first() {
            let mut conn = connect(run, p).await?;
            let mut rng = StdRng::seed_from_u64(run.opts.seed);
            insert_c_key(run, &mut conn, p, &mut rng).await?;
        }
    }
    let open = run.api.open_jobs().await?;
    if !open.is_empty() {
        run.problem(format!("{} jobs still open after draining", open.len()));
    }
    Ok(())
}

/// One insertion of every key at its own PD, every job reported.
async fn drain_keys(run: &Run, pds: &[SimPd]) -> anyhow::Result<()> {
    let n = run.keys.lock().await.len();
    for (index, p) in pds.iter().enumerate() {
        let mut conn = connect(run, p).await?;
        for slot in (0..n).filter(|k| k % pds.len() == index) {
            let key_id = run.keys.lock().await[slot].id;
            for job in conn.key_inserted(key_id).await? {
                let job_id = job["job_id"].as_u64().unwrap_or(0);
                let program = job["program"].clone();
                let hash = program_hash(&program);
                if program.get("access").is_some() {
                    run.keys.lock().await[slot].program = Some(program);
                }
                let taken = conn
                    .report_done(job_id, &hash, &format!("{}-{job_id}-drain", p.name))
                    .await?;
                if taken == "applied" {
                    run.counters.reports_applied.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// Compares the simulated keys and cylinders with the gateway's `can-open` (actual state).
async fn check(run: &Run) -> anyhow::Result<(u64, u64)> {
    let keys = run.keys.lock().await.clone();
    let cylinders = run.cylinders.lock().await.clone();
    let mut pairs: Vec<(SimKey, u64)> = Vec::new();
    for k in &keys {
        for c in cylinders.keys() {
            pairs.push((k.clone(), *c));
        }
    }
    if run.opts.check_pairs > 0 && pairs.len() > run.opts.check_pairs {
        let mut rng = StdRng::seed_from_u64(run.opts.seed ^ 0x5EED);
        for i in 0..run.opts.check_pairs {
            let j = rng.gen_range(i..pairs.len());
            pairs.swap(i, j);
        }
        pairs.truncate(run.opts.check_pairs);
    }
    let mut mismatches = 0;
    for (k, c) in &pairs {
        let model = opens(k, cylinders.get(c).and_then(Option::as_ref), *c);
        let oracle = run.api.can_open(k.id, *c).await?;
        if model != oracle {
            mismatches += 1;
            run.problem(format!(
                "key {} at cylinder {c}: the simulated hardware says {}, can-open says {}",
                k.id,
                if model { "opens" } else { "stays shut" },
                if oracle { "opens" } else { "stays shut" }
            ));
        }
    }
    Ok((pairs.len() as u64, mismatches))
}

/// Whether the simulated key opens the simulated cylinder: the key lists the cylinder (or
/// its group), and the cylinder admits the key (its group, not excepted, or the key
/// itself) and does not block it.
fn opens(key: &SimKey, cylinder: Option<&Value>, cylinder_id: u64) -> bool {
    let (Some(kp), Some(cp)) = (key.program.as_ref(), cylinder) else {
        return false;
    };

    let group_of_cylinder = cp["cylinder_group"].as_u64();
    let listed = kp["access"].as_array().is_some_and(|a| {
        a.iter().any(|e| {
            let id = e["target"]["id"].as_u64();
            match e["target"]["kind"].as_str() {
                Some("cylinder") => id == Some(cylinder_id),
                Some("cylinder_group") => id.is_some() && id == group_of_cylinder,
                _ => false,
            }
        })
    });
    let has = |list: &Value, id: u64| {
        list.as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_u64() == Some(id)))
    };
    let by_group = cp["key_groups"]
        .get(key.group.to_string())
        .is_some_and(|exceptions| !has(exceptions, key.id));
    let admitted = by_group || has(&cp["keys"], key.id);
    listed && admitted && !has(&cp["blocked"], key.id)
}
