//! Persisting the engine's work: the actual state confirmed by hardware, the jobs that
//! bring it to the defined state, and reconciliation runs that decide those jobs.
//!
//! Reconciliation is derived, not incremental bookkeeping: each run recomputes the defined
//! state from the objects, compares it with the actual state and the open jobs, and
//! creates, replaces or cancels jobs in one transaction. A run interrupted at any point
//! leaves the previous jobs in place, and the next run finds the same answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use lockgate_engine::{
    defined::{
        self, Configuration, CylinderConfig, KeyConfig, ProfileConfig, TemporaryGroupConfig,
    },
    reconcile::{ActualState, CylinderAction, Decision, Pending, PendingJob, Plan, reconcile},
    state::{CylinderProgram, KeyFacts, KeyProgram},
};
use lockgate_model::{
    ObjectKind,
    access_profile::{AccessProfile, TemporaryAccessGroup},
    cylinder::{Cylinder, CylinderGroup, CylinderStatus},
    key::{BlockChoice, Key, KeyStatus, LostReport},
    person::{Person, PersonState},
    system::LockingSystem,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{
    Result, Store, StoreError,
    objects::{Actor, Scope},
    parse_ts,
    sql::Sql,
    ts,
};

/// Kinds whose changes can change the defined state.
pub const RECONCILED_KINDS: [ObjectKind; 8] = [
    ObjectKind::Key,
    ObjectKind::Cylinder,
    ObjectKind::CylinderGroup,
    ObjectKind::AccessProfile,
    ObjectKind::TemporaryAccessGroup,
    ObjectKind::Employee,
    ObjectKind::Visitor,
    ObjectKind::KeyGroup,
];

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    /// `remote_update` (key) or `cylinder_programming`.
    pub kind: String,
    pub target_id: i64,
    pub state: String,
    pub program: serde_json::Value,
    pub actions: Vec<CylinderAction>,
    pub priority: String,
    pub loaded_on: Option<i64>,
    pub assigned_to: Option<i64>,
    pub replaced_by: Option<i64>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a reconciliation run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReconcileReport {
    pub created: usize,
    pub replaced: usize,
    pub cancelled: usize,
    /// Keys whose update is held back because it exceeds their access-list capacity.
    pub capacity_exceeded: Vec<i64>,
}

/// A key's update status, derived from its open job and capacity (never stored).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    UpToDate,
    /// Pending changes any update point can write.
    UpdateRequired,
    /// The change exceeds the key's access-list capacity and is not written.
    CapacityExceeded,
}

/// One job decision, encoded for writing.
struct JobWrite {
    kind: &'static str,
    target: i64,
    /// JSON of the target program (empty for a cancellation).
    program: String,
    actions: Vec<CylinderAction>,
    decision: Decision<()>,
}

impl JobWrite {
    fn new<P: Serialize>(
        kind: &'static str,
        target: i64,
        d: &Decision<P>,
        actions: Vec<CylinderAction>,
    ) -> Result<Self> {
        let (program, decision) = match d {
            Decision::Create { target } => (
                serde_json::to_string(target).map_err(corrupt)?,
                Decision::Create { target: () },
            ),
            Decision::Replace { old, target } => (
                serde_json::to_string(target).map_err(corrupt)?,
                Decision::Replace {
                    old: *old,
                    target: (),
                },
            ),
            Decision::Cancel { old } => (String::new(), Decision::Cancel { old: *old }),
        };
        Ok(JobWrite {
            kind,
            target,
            program,
            actions,
            decision,
        })
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The engine's view of a stored key.
pub fn key_config(id: i64, k: &Key) -> KeyConfig {
    KeyConfig {
        facts: KeyFacts {
            id,
            key_type: k.key_type,
            generation: k.generation,
            firmware: k.firmware.clone(),
            connect: k.connect,
            key_group: k.key_group_id,
            cutting: k.cutting.clone(),
            capacity: k.access_list_capacity,
            online_open: k.factory.online_open,
            override_key: k.factory.override_key,
        },
        activation: k.validity.activation.clone(),
        revalidation: k.validity.revalidation.clone(),
        pin: k.validity.pin.clone(),
        schedule: k.schedule.clone(),
        holder: k.holder_id,
        profiles: k.access_profile_ids.clone(),
        cylinders: k.cylinder_ids.clone(),
        cylinder_groups: k.cylinder_group_ids.clone(),
        lost: k.status == KeyStatus::Lost,
    }
}

impl Store {
    /// Everything the engine needs to compute the defined state of a system.
    pub async fn configuration(&self, sys: &LockingSystem) -> Result<Configuration> {
        let all = Scope::all();
        let limit = 10_000_000;
        let mut cfg = Configuration {
            flexible_revalidation: sys.settings.flexible_revalidation,
            ..Default::default()
        };
        let keys = self
            .list_all::<Key>(sys.id, ObjectKind::Key, &all, limit)
            .await?;
        cfg.keys = keys.iter().map(|k| key_config(k.id, &k.body)).collect();
        let lost: Vec<(i64, Option<i64>, Option<LostReport>)> = keys
            .iter()
            .filter(|k| k.body.status == KeyStatus::Lost)
            .map(|k| (k.id, k.body.key_group_id, k.body.lost_report.clone()))
            .collect();
        for c in self
            .list_all::<Cylinder>(sys.id, ObjectKind::Cylinder, &all, limit)
            .await?
        {
            let b = &c.body;
            let key_groups: BTreeMap<i64, BTreeSet<i64>> = b
                .access_list
                .key_groups
                .iter()
                .map(|g| (g.key_group_id, g.exceptions.iter().copied().collect()))
                .collect();
            let keys: BTreeSet<i64> = b.access_list.key_ids.iter().copied().collect();
            let admits = |k: i64, g: Option<i64>| {
                keys.contains(&k)
                    || g.is_some_and(|g| key_groups.get(&g).is_some_and(|ex| !ex.contains(&k)))
            };
            // A lost key is blocked as its report chose (by default on every cylinder admitting it).
            let blocked = lost
                .iter()
                .filter(|(k, g, report)| {
                    match report.as_ref().map(|r| r.block).unwrap_or_default() {
                        BlockChoice::All => admits(*k, *g),
                        BlockChoice::Installed => {
                            admits(*k, *g) && b.status == CylinderStatus::Installed
                        }
                        BlockChoice::Custom => report
                            .as_ref()
                            .is_some_and(|r| r.cylinder_ids.contains(&c.id)),
                        BlockChoice::None => false,
                    }
                })
                .map(|(k, _, _)| *k)
                .collect();
            cfg.cylinders.push(CylinderConfig {
                id: c.id,
                electronic: b.is_electronic(),
                key_groups,
                keys,
                blocked,
                cylinder_group: b.cylinder_group_id,
                time_zone_offset_minutes: b.time_zone_offset_minutes,
            });
        }
        for g in self
            .list_all::<CylinderGroup>(sys.id, ObjectKind::CylinderGroup, &all, limit)
            .await?
        {
            cfg.cylinder_groups
                .insert(g.id, g.body.revalidation_interval_hours);
        }
        for p in self
            .list_all::<AccessProfile>(sys.id, ObjectKind::AccessProfile, &all, limit)
            .await?
        {
            cfg.profiles.insert(
                p.id,
                ProfileConfig {
                    cylinders: p.body.cylinder_ids,
                    cylinder_groups: p.body.cylinder_group_ids,
                    revalidation_hours: p.body.revalidation_interval_hours,
                },
            );
        }
        for kind in [ObjectKind::Employee, ObjectKind::Visitor] {
            for p in self.list_all::<Person>(sys.id, kind, &all, limit).await? {
                if p.body.lifecycle == PersonState::Active && !p.body.access_profile_ids.is_empty()
                {
                    cfg.persons.insert(p.id, p.body.access_profile_ids);
                }
            }
        }
        for t in self
            .list_all::<TemporaryAccessGroup>(sys.id, ObjectKind::TemporaryAccessGroup, &all, limit)
            .await?
        {
            let b = t.body;
            cfg.temporary_groups.push(TemporaryGroupConfig {
                profiles: b.access_profile_ids,
                cylinders: b.cylinder_ids,
                cylinder_groups: b.cylinder_group_ids,
                keys: b.key_ids,
                start: b.start,
                end: b.end,
            });
        }
        Ok(cfg)
    }

    /// The actual state confirmed by hardware.
    pub async fn actual_state(&self, system_id: i64) -> Result<ActualState> {
        let mut actual = ActualState::default();
        for r in sqlx::query("SELECT key_id, program FROM key_actual WHERE system_id = $1")
            .bind(system_id)
            .fetch_all(self.pool())
            .await?
        {
            let p: String = r.try_get("program")?;
            actual.keys.insert(
                r.try_get("key_id")?,
                serde_json::from_str(&p).map_err(corrupt)?,
            );
        }
        for r in
            sqlx::query("SELECT cylinder_id, program FROM cylinder_actual WHERE system_id = $1")
                .bind(system_id)
                .fetch_all(self.pool())
                .await?
        {
            let p: String = r.try_get("program")?;
            actual.cylinders.insert(
                r.try_get("cylinder_id")?,
                serde_json::from_str(&p).map_err(corrupt)?,
            );
        }
        Ok(actual)
    }

    async fn pending(conn: &mut sqlx::AnyConnection, system_id: i64) -> Result<Pending> {
        let mut pending = Pending::default();
        for r in sqlx::query(
            "SELECT id, kind, target_id, program FROM jobs WHERE system_id = $1 AND open = 1 AND kind IN ('remote_update', 'cylinder_programming')",
        )
        .bind(system_id)
        .fetch_all(&mut *conn)
        .await?
        {
            let program: String = r.try_get("program")?;
            let (id, target): (i64, i64) = (r.try_get("id")?, r.try_get("target_id")?);
            if r.try_get::<String, _>("kind")? == "remote_update" {
                pending.keys.insert(
                    target,
                    PendingJob {
                        id,
                        target: serde_json::from_str::<KeyProgram>(&program).map_err(corrupt)?,
                    },
                );
            } else {
                pending.cylinders.insert(
                    target,
                    PendingJob {
                        id,
                        target: serde_json::from_str::<CylinderProgram>(&program)
                            .map_err(corrupt)?,
                    },
                );
            }
        }
        Ok(pending)
    }

    /// Recompute the defined state of the whole system and persist the jobs it needs.
    pub async fn reconcile(
        &self,
        sys: &LockingSystem,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<ReconcileReport> {
        let cfg = self.configuration(sys).await?;
        let defined = defined::compute(&cfg, now);
        let actual = self.actual_state(sys.id).await?;
        let mut tx = self.write_tx().await?;
        let pending = Self::pending(&mut tx, sys.id).await?;
        let plan = reconcile(&defined, &actual, &pending);
        let report = Self::apply_plan(&mut tx, sys.id, actor, &plan, now).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Write a plan: cancellations and replacements as set-based updates, new jobs as
    /// multi-row inserts, all in the caller's transaction.
    async fn apply_plan(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        system_id: i64,
        actor: &Actor,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<ReconcileReport> {
        let mut report = ReconcileReport {
            capacity_exceeded: plan.capacity_exceeded.iter().copied().collect(),
            ..Default::default()
        };
        let stamp = ts(now);
        let mut items: Vec<JobWrite> = Vec::new();
        for (id, d) in &plan.keys {
            items.push(JobWrite::new("remote_update", *id, d, Vec::new())?);
        }
        for (id, (d, actions)) in &plan.cylinders {
            items.push(JobWrite::new(
                "cylinder_programming",
                *id,
                d,
                actions.iter().copied().collect(),
            )?);
        }
        let mut cancelled = Vec::new();
        let mut replaced = Vec::new();
        let mut inserts = Vec::new();
        for item in items {
            match item.decision {
                Decision::Cancel { old } => cancelled.push(old),
                Decision::Replace { old, .. } => {
                    replaced.push(old);
                    inserts.push(item);
                }
                Decision::Create { .. } => inserts.push(item),
            }
        }
        // A requested reprogramming survives the replacement of its job.
        if !replaced.is_empty() {
            let mut q = Sql::new("SELECT target_id, actions FROM jobs WHERE id IN (");
            q.bind_list(replaced.iter().copied()).push(")");
            let mut reprogram = BTreeSet::new();
            for r in q.fetch_all(tx).await? {
                let actions: Vec<CylinderAction> =
                    serde_json::from_str(&r.try_get::<String, _>("actions")?).map_err(corrupt)?;
                if actions.contains(&CylinderAction::Reprogram) {
                    reprogram.insert(r.try_get::<i64, _>("target_id")?);
                }
            }
            for w in inserts
                .iter_mut()
                .filter(|w| w.kind == "cylinder_programming" && reprogram.contains(&w.target))
            {
                w.actions.push(CylinderAction::Reprogram);
            }
        }
        report.cancelled = cancelled.len();
        report.replaced = replaced.len();
        report.created = inserts.len() - replaced.len();
        for (ids, state) in [(&cancelled, "cancelled"), (&replaced, "replaced")] {
            for chunk in ids.chunks(500) {
                let mut q = Sql::new("UPDATE jobs SET open = 0, state = ");
                q.bind(state)
                    .push(", updated_at = ")
                    .bind(stamp.clone())
                    .push(" WHERE open = 1 AND system_id = ")
                    .bind(system_id);
                q.push(" AND id IN (")
                    .bind_list(chunk.iter().copied())
                    .push(")");
                q.execute(tx).await?;
            }
        }
        for chunk in inserts.chunks(400) {
            let mut q = Sql::new(
                "INSERT INTO jobs (system_id, kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at)",
            );
            let mut encoded = Vec::with_capacity(chunk.len());
            for w in chunk {
                encoded.push(serde_json::to_string(&w.actions).map_err(corrupt)?);
            }
            q.values(chunk.iter().zip(encoded), |q, (w, actions)| {
                let priority = if w.actions.contains(&CylinderAction::Block) {
                    "high"
                } else {
                    "normal"
                };
                q.bind(system_id)
                    .bind(w.kind)
                    .bind(w.target)
                    .bind("created")
                    .bind(1_i64)
                    .bind(w.program.clone())
                    .bind(actions)
                    .bind(priority)
                    .bind(actor.c_key_id)
                    .bind(stamp.clone())
                    .bind(stamp.clone());
            });
            q.execute(tx).await?;
        }
        // Point each replaced job at the open job that took over its target.
        for chunk in replaced.chunks(500) {
            let mut q = Sql::new(
                "UPDATE jobs SET replaced_by = (SELECT n.id FROM jobs n WHERE n.target_id = jobs.target_id AND n.kind = jobs.kind AND n.open = 1) WHERE id IN (",
            );
            q.bind_list(chunk.iter().copied()).push(")");
            q.execute(tx).await?;
        }
        Ok(report)
    }

    /// Jobs of a system, newest first, optionally for one target and/or open only.
    pub async fn jobs(
        &self,
        system_id: i64,
        target: Option<i64>,
        open_only: bool,
        limit: i64,
    ) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(
            "SELECT id, kind, target_id, state, program, actions, priority, loaded_on, assigned_to, replaced_by, reason, created_at, updated_at \
             FROM jobs WHERE system_id = $1 AND ($2 = 0 OR target_id = $2) AND ($3 = 0 OR open = 1) ORDER BY id DESC LIMIT $4",
        )
        .bind(system_id)
        .bind(target.unwrap_or(0))
        .bind(i64::from(open_only))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobRecord {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    target_id: r.try_get("target_id")?,
                    state: r.try_get("state")?,
                    program: serde_json::from_str(&r.try_get::<String, _>("program")?)
                        .unwrap_or(serde_json::Value::Null),
                    actions: serde_json::from_str(&r.try_get::<String, _>("actions")?)
                        .map_err(corrupt)?,
                    priority: r.try_get("priority")?,
                    loaded_on: r.try_get("loaded_on")?,
                    assigned_to: r.try_get("assigned_to")?,
                    replaced_by: r.try_get("replaced_by")?,
                    reason: r.try_get("reason")?,
                    created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
                    updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
                })
            })
            .collect()
    }

    /// A device confirms an open job: it is finished and its program becomes the actual state.
    pub async fn confirm_job(
        &self,
        sys: &LockingSystem,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT kind, target_id, program, open FROM jobs WHERE id = $1 AND system_id = $2",
        )
        .bind(job_id)
        .bind(sys.id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound {
            kind: "job",
            id: job_id,
        })?;
        if row.try_get::<i64, _>("open")? != 1 {
            return Err(StoreError::Refused {
                message: format!("job {job_id} is no longer open"),
            });
        }
        let (kind, target, program): (String, i64, String) = (
            row.try_get("kind")?,
            row.try_get("target_id")?,
            row.try_get("program")?,
        );
        let stamp = ts(now);
        if kind == "audit_trail" {
            // Reading an audit trail changes no programmed state.
        } else if kind == "remote_update" {
            sqlx::query(
                "INSERT INTO key_actual (key_id, system_id, program, clock, confirmed_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key_id) DO UPDATE SET program = excluded.program, confirmed_at = excluded.confirmed_at",
            )
            .bind(target)
            .bind(sys.id)
            .bind(&program)
            .bind(serde_json::json!({ "last_revalidation": now }).to_string())
            .bind(&stamp)
            .execute(&mut *tx)
            .await?;
            Self::update_in(
                &mut tx,
                sys,
                ObjectKind::Key,
                target,
                &Scope::all(),
                &Actor::system(),
                None,
                "remote_update_confirmed",
                true,
                |k: &mut Key| {
                    k.last_remote_update = Some(now);
                    Ok(())
                },
            )
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO cylinder_actual (cylinder_id, system_id, program, confirmed_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (cylinder_id) DO UPDATE SET program = excluded.program, confirmed_at = excluded.confirmed_at",
            )
            .bind(target)
            .bind(sys.id)
            .bind(&program)
            .bind(&stamp)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE jobs SET state = 'finished', open = 0, updated_at = $1 WHERE id = $2")
            .bind(&stamp)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut jobs = self.jobs(sys.id, Some(target), false, 50).await?;
        jobs.retain(|j| j.id == job_id);
        jobs.pop().ok_or(StoreError::NotFound {
            kind: "job",
            id: job_id,
        })
    }

    /// A key's update status, derived from its open job and the capacity check.
    pub async fn key_update_status(
        &self,
        sys: &LockingSystem,
        key_id: i64,
        now: DateTime<Utc>,
    ) -> Result<UpdateStatus> {
        let key = self
            .get::<Key>(sys.id, ObjectKind::Key, key_id, &Scope::all())
            .await?;
        let cfg = self.configuration(sys).await?;
        let kc = key_config(key.id, &key.body);
        let temporary: Vec<&TemporaryGroupConfig> = cfg
            .temporary_groups
            .iter()
            .filter(|t| t.keys.contains(&key_id) && t.start <= now && now < t.end)
            .collect();
        let program = defined::key_program(&cfg, &kc, &temporary);
        if key
            .body
            .access_list_capacity
            .is_some_and(|c| program.access.len() > c as usize)
        {
            return Ok(UpdateStatus::CapacityExceeded);
        }
        let open = self.jobs(sys.id, Some(key_id), true, 1).await?;
        Ok(if open.is_empty() {
            UpdateStatus::UpToDate
        } else {
            UpdateStatus::UpdateRequired
        })
    }
}

/// Group jobs by target (helper for views).
pub fn by_target(jobs: &[JobRecord]) -> HashMap<i64, Vec<&JobRecord>> {
    let mut m: HashMap<i64, Vec<&JobRecord>> = HashMap::new();
    for j in jobs {
        m.entry(j.target_id).or_default().push(j);
    }
    m
}

/// Access views: which cylinders a key reaches and which keys reach a cylinder.
impl Store {
    async fn views_input(
        &self,
        sys: &LockingSystem,
        now: DateTime<Utc>,
    ) -> Result<(
        Configuration,
        lockgate_engine::defined::DefinedState,
        ActualState,
    )> {
        let cfg = self.configuration(sys).await?;
        let defined = defined::compute(&cfg, now);
        let actual = self.actual_state(sys.id).await?;
        Ok((cfg, defined, actual))
    }

    /// Cylinders the key reaches now (actual) or once pending jobs run (defined).
    pub async fn access_for_key(
        &self,
        sys: &LockingSystem,
        key_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<lockgate_engine::views::AccessView>> {
        let (cfg, defined, actual) = self.views_input(sys, now).await?;
        let key = cfg
            .keys
            .iter()
            .find(|k| k.facts.id == key_id)
            .ok_or(StoreError::NotFound {
                kind: "key",
                id: key_id,
            })?;
        let empty_k = KeyProgram::default();
        let empty_c = CylinderProgram::default();
        let mut out = Vec::new();
        for c in cfg.cylinders.iter().filter(|c| c.electronic) {
            let a = lockgate_engine::views::grants(
                &key.facts,
                actual.keys.get(&key_id).unwrap_or(&empty_k),
                c.id,
                actual.cylinders.get(&c.id).unwrap_or(&empty_c),
            );
            let d = !defined.lost.contains(&key_id)
                && lockgate_engine::views::grants(
                    &key.facts,
                    defined.keys.get(&key_id).unwrap_or(&empty_k),
                    c.id,
                    defined.cylinders.get(&c.id).unwrap_or(&empty_c),
                );
            if a || d {
                out.push(lockgate_engine::views::AccessView {
                    id: c.id,
                    actual: a,
                    defined: d,
                });
            }
        }
        Ok(out)
    }

    /// Keys reaching a cylinder now (actual) or once pending jobs run (defined).
    pub async fn access_for_cylinder(
        &self,
        sys: &LockingSystem,
        cylinder_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<lockgate_engine::views::AccessView>> {
        let (cfg, defined, actual) = self.views_input(sys, now).await?;
        let empty_k = KeyProgram::default();
        let empty_c = CylinderProgram::default();
        let ac = actual.cylinders.get(&cylinder_id).unwrap_or(&empty_c);
        let dc = defined.cylinders.get(&cylinder_id).unwrap_or(&empty_c);
        let mut out = Vec::new();
        for k in &cfg.keys {
            let id = k.facts.id;
            let a = lockgate_engine::views::grants(
                &k.facts,
                actual.keys.get(&id).unwrap_or(&empty_k),
                cylinder_id,
                ac,
            );
            let d = !defined.lost.contains(&id)
                && lockgate_engine::views::grants(
                    &k.facts,
                    defined.keys.get(&id).unwrap_or(&empty_k),
                    cylinder_id,
                    dc,
                );
            if a || d {
                out.push(lockgate_engine::views::AccessView {
                    id,
                    actual: a,
                    defined: d,
                });
            }
        }
        Ok(out)
    }

    /// Access profiles giving access to a cylinder, directly or through its cylinder group.
    pub async fn profiles_for_cylinder(
        &self,
        sys: &LockingSystem,
        cylinder_id: i64,
    ) -> Result<Vec<i64>> {
        let c: crate::Stored<Cylinder> = self
            .get(sys.id, ObjectKind::Cylinder, cylinder_id, &Scope::all())
            .await?;
        let mut out = Vec::new();
        for p in self
            .list_all::<AccessProfile>(sys.id, ObjectKind::AccessProfile, &Scope::all(), 1_000_000)
            .await?
        {
            if p.body.cylinder_ids.contains(&cylinder_id)
                || c.body
                    .cylinder_group_id
                    .is_some_and(|g| p.body.cylinder_group_ids.contains(&g))
            {
                out.push(p.id);
            }
        }
        Ok(out)
    }
}

/// Moving cylinder programming jobs between administrators and devices.
impl Store {
    /// One job by id.
    pub async fn job(&self, system_id: i64, job_id: i64) -> Result<JobRecord> {
        let row = sqlx::query("SELECT target_id FROM jobs WHERE id = $1 AND system_id = $2")
            .bind(job_id)
            .bind(system_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound {
                kind: "job",
                id: job_id,
            })?;
        let target: i64 = row.try_get("target_id")?;
        self.jobs(system_id, Some(target), false, 10_000)
            .await?
            .into_iter()
            .find(|j| j.id == job_id)
            .ok_or(StoreError::NotFound {
                kind: "job",
                id: job_id,
            })
    }

    /// Change an open job's state columns, conditional on its current state (no lost race).
    async fn set_job(
        &self,
        system_id: i64,
        job_id: i64,
        from_state: &str,
        sql_set: &str,
        binds: (Option<i64>, Option<String>),
    ) -> Result<JobRecord> {
        let q = format!(
            "UPDATE jobs SET {sql_set}, updated_at = $1 WHERE id = $2 AND system_id = $3 AND state = $4 AND open = 1"
        );
        let res = sqlx::query(&q)
            .bind(ts(Utc::now()))
            .bind(job_id)
            .bind(system_id)
            .bind(from_state)
            .bind(binds.0)
            .bind(binds.1)
            .execute(self.pool())
            .await?;
        if res.rows_affected() != 1 {
            return Err(StoreError::Refused {
                message: format!("job {job_id} changed meanwhile or is not {from_state}"),
            });
        }
        self.job(system_id, job_id).await
    }

    /// Load a created cylinder job onto a C-key (the caller checked the engine's loading rules).
    pub async fn load_job(&self, system_id: i64, job_id: i64, c_key: i64) -> Result<JobRecord> {
        self.set_job(
            system_id,
            job_id,
            "created",
            "state = 'loaded', loaded_on = $5, reason = $6",
            (Some(c_key), None),
        )
        .await
    }

    /// Prepare a created job for pick-up by another administrator's C-key at a remote PD.
    pub async fn assign_job(&self, system_id: i64, job_id: i64, c_key: i64) -> Result<JobRecord> {
        self.set_job(
            system_id,
            job_id,
            "created",
            "assigned_to = $5, reason = $6",
            (Some(c_key), None),
        )
        .await
    }

    /// The C-key reports a loaded job failed at the cylinder. The next reconciliation
    /// recreates it (the cylinder still differs from its defined state).
    pub async fn fail_job(&self, system_id: i64, job_id: i64, reason: &str) -> Result<JobRecord> {
        self.set_job(
            system_id,
            job_id,
            "loaded",
            "state = 'failed', open = 0, loaded_on = COALESCE($5, loaded_on), reason = $6",
            (None, Some(reason.chars().take(500).collect())),
        )
        .await
    }
}

/// Requests administrators make of the hardware: reprogramming and audit-trail reads.
impl Store {
    /// Request reprogramming of a cylinder: its open programming job (or a new one) writes
    /// the whole defined program after the memory is wiped.
    pub async fn request_reprogramming(
        &self,
        sys: &LockingSystem,
        cylinder: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let cfg = self.configuration(sys).await?;
        let defined = defined::compute(&cfg, now);
        let program = defined
            .cylinders
            .get(&cylinder)
            .ok_or_else(|| StoreError::Refused {
                message: format!("cylinder {cylinder} has no electronic side to program"),
            })?;
        let program = serde_json::to_string(program).map_err(corrupt)?;
        let stamp = ts(now);
        let mut tx = self.write_tx().await?;
        let open = sqlx::query("SELECT id, actions FROM jobs WHERE target_id = $1 AND kind = 'cylinder_programming' AND open = 1 AND system_id = $2")
            .bind(cylinder)
            .bind(sys.id)
            .fetch_optional(&mut *tx)
            .await?;
        let id = match open {
            Some(r) => {
                let id: i64 = r.try_get("id")?;
                let mut actions: Vec<CylinderAction> = serde_json::from_str(&r.try_get::<String, _>("actions")?).map_err(corrupt)?;
                if !actions.contains(&CylinderAction::Reprogram) {
                    actions.push(CylinderAction::Reprogram);
                }
                sqlx::query("UPDATE jobs SET actions = $1, program = $2, updated_at = $3 WHERE id = $4")
                    .bind(serde_json::to_string(&actions).map_err(corrupt)?)
                    .bind(&program)
                    .bind(&stamp)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => sqlx::query(
                "INSERT INTO jobs (system_id, kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at) \
                 VALUES ($1, 'cylinder_programming', $2, 'created', 1, $3, '[\"reprogram\"]', 'normal', $4, $5, $5) RETURNING id",
            )
            .bind(sys.id)
            .bind(cylinder)
            .bind(&program)
            .bind(actor.c_key_id)
            .bind(&stamp)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?,
        };
        tx.commit().await?;
        self.job(sys.id, id).await
    }

    /// Request reading the audit trail of a key or cylinder; with approvals on, it waits for an approver.
    pub async fn request_audit_trail(
        &self,
        sys: &LockingSystem,
        target: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let state = if sys.fixed.audit_trail_approvals {
            "awaiting_approval"
        } else {
            "created"
        };
        let row = sqlx::query(
            "INSERT INTO jobs (system_id, kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at) \
             VALUES ($1, 'audit_trail', $2, $3, 1, '{}', '[]', 'normal', $4, $5, $5) RETURNING id",
        )
        .bind(sys.id)
        .bind(target)
        .bind(state)
        .bind(actor.c_key_id)
        .bind(ts(now))
        .fetch_one(self.pool())
        .await
        .map_err(|e| crate::map_unique(e, "target_id", "an audit-trail request for this object"))?;
        self.job(sys.id, row.try_get("id")?).await
    }

    /// An approver's decision on an audit-trail request.
    pub async fn decide_audit_trail(
        &self,
        sys: &LockingSystem,
        job_id: i64,
        approved: bool,
        approver: &Actor,
    ) -> Result<JobRecord> {
        let (set, reason) = if approved {
            (
                "state = 'created', reason = $6",
                format!("approved by {}", approver.label),
            )
        } else {
            (
                "state = 'cancelled', open = 0, reason = $6",
                format!("rejected by {}", approver.label),
            )
        };
        self.set_job(
            sys.id,
            job_id,
            "awaiting_approval",
            &format!("{set}, assigned_to = COALESCE($5, assigned_to)"),
            (None, Some(reason)),
        )
        .await
    }
}

impl Store {
    /// The program a cylinder last confirmed, if any.
    pub async fn cylinder_actual(
        &self,
        system_id: i64,
        cylinder: i64,
    ) -> Result<Option<CylinderProgram>> {
        let row = sqlx::query(
            "SELECT program FROM cylinder_actual WHERE cylinder_id = $1 AND system_id = $2",
        )
        .bind(cylinder)
        .bind(system_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| serde_json::from_str(&r.try_get::<String, _>("program")?).map_err(corrupt))
            .transpose()
    }
}
