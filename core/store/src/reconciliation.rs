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
    jobs::{CylinderJob, JobKind, JobState, JobTarget, Priority, Transition, next_state},
    reconcile::{
        ActualState, CylinderAction, Decision, Pending, PendingJob, Plan, key_decisions, reconcile,
    },
    state::{CylinderProgram, KeyFacts, KeyProgram},
};
use lockgate_model::{
    ObjectKind,
    access_profile::{AccessProfile, TemporaryAccessGroup},
    cylinder::{Cylinder, CylinderGroup, CylinderStatus},
    key::{BlockChoice, Key, KeyStatus, LostReport},
    person::PersonState,
    system::LockingSystem,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{
    Edit, Result, Store, StoreError, Tx, WriteContext,
    events::EventDraft,
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

/// A job as stored, its kind, target, state and priority parsed into the engine's types.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: JobKind,
    /// What the job is about: a key or a cylinder.
    pub target: JobTarget,
    pub target_id: i64,
    /// Serialised as its name (`created`, `loaded`, …); the columns below carry its data.
    #[serde(serialize_with = "state_name")]
    pub state: JobState,
    pub program: serde_json::Value,
    pub actions: Vec<CylinderAction>,
    pub priority: Priority,
    /// The C-key the job is (or was) loaded on.
    pub loaded_on: Option<i64>,
    /// The user key carrying (or that carried) a block job to its cylinder.
    pub carried_by: Option<i64>,
    pub assigned_to: Option<i64>,
    pub replaced_by: Option<i64>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn state_name<S: serde::Serializer>(
    state: &JobState,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(state.name())
}

/// The columns [`job_from_row`] reads.
const JOB_COLUMNS: &str = "id, kind, target_kind, target_id, state, program, actions, priority, loaded_on, carried_by, assigned_to, replaced_by, reason, created_at, updated_at";

/// Parse a job row. Architecture invariant: stored kinds, targets, states and priorities
/// are parsed here, at the boundary; an unknown value is an error naming the row, never a
/// fallback.
fn job_from_row(r: &sqlx::any::AnyRow) -> Result<JobRecord> {
    let id: i64 = r.try_get("id")?;
    let bad = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("job {id}: {e}"));
    let loaded_on: Option<i64> = r.try_get("loaded_on")?;
    let carried_by: Option<i64> = r.try_get("carried_by")?;
    let replaced_by: Option<i64> = r.try_get("replaced_by")?;
    let reason: Option<String> = r.try_get("reason")?;
    Ok(JobRecord {
        id,
        kind: JobKind::parse(&r.try_get::<String, _>("kind")?).map_err(|e| bad(&e))?,
        target: JobTarget::parse(&r.try_get::<String, _>("target_kind")?).map_err(|e| bad(&e))?,
        target_id: r.try_get("target_id")?,
        state: JobState::from_stored(
            &r.try_get::<String, _>("state")?,
            loaded_on,
            carried_by,
            replaced_by,
            reason.as_deref(),
        )
        .map_err(|e| bad(&e))?,
        program: serde_json::from_str(&r.try_get::<String, _>("program")?).map_err(|e| bad(&e))?,
        actions: serde_json::from_str(&r.try_get::<String, _>("actions")?).map_err(|e| bad(&e))?,
        priority: Priority::parse(&r.try_get::<String, _>("priority")?).map_err(|e| bad(&e))?,
        loaded_on,
        carried_by,
        assigned_to: r.try_get("assigned_to")?,
        replaced_by,
        reason,
        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
    })
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
    /// The key's structure or firmware changed since it was last written at a local PD:
    /// only a local PD (encoder) can re-edit it.
    ReEditionRequired,
    /// The change exceeds the key's access-list capacity and is not written.
    CapacityExceeded,
}

/// The part of a key that only a local PD can write (its structure): a change of any of
/// these since the last re-edition makes the key "re-edition required".
pub fn key_structure(k: &Key) -> String {
    serde_json::json!({
        "generation": k.generation,
        "firmware": k.firmware,
        "key_group_id": k.key_group_id,
        "access_list_capacity": k.access_list_capacity,
    })
    .to_string()
}

/// One job decision, encoded for writing.
struct JobWrite {
    kind: JobKind,
    target: i64,
    /// JSON of the target program (empty for a cancellation).
    program: String,
    actions: Vec<CylinderAction>,
    decision: Decision<()>,
}

impl JobWrite {
    /// A decision whose program is already JSON text.
    fn encoded(
        kind: JobKind,
        target: i64,
        d: &Decision<String>,
        actions: Vec<CylinderAction>,
    ) -> Self {
        let (program, decision) = match d {
            Decision::Create { target } => (target.clone(), Decision::Create { target: () }),
            Decision::Replace { old, target } => (
                target.clone(),
                Decision::Replace {
                    old: *old,
                    target: (),
                },
            ),
            Decision::Cancel { old } => (String::new(), Decision::Cancel { old: *old }),
        };
        JobWrite {
            kind,
            target,
            program,
            actions,
            decision,
        }
    }

    fn new<P: Serialize>(
        kind: JobKind,
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
    KeyEngineFields::from(k).config(id)
}

/// The fields of a stored key that the defined state reads (decoding only these skips
/// names, markings, links and tags of every key on each reconciliation).
#[derive(Debug, Deserialize)]
struct KeyEngineFields {
    #[serde(default)]
    cutting: Option<String>,
    #[serde(rename = "type")]
    key_type: lockgate_model::key::KeyType,
    #[serde(default)]
    key_group_id: Option<i64>,
    #[serde(default)]
    generation: Option<lockgate_model::key::Generation>,
    #[serde(default)]
    firmware: Option<lockgate_model::FirmwareVersion>,
    #[serde(default)]
    connect: bool,
    #[serde(default)]
    status: KeyStatus,
    #[serde(default)]
    holder_id: Option<i64>,
    #[serde(default)]
    access_list_capacity: Option<u32>,
    #[serde(default)]
    validity: lockgate_model::key::Validity,
    #[serde(default)]
    schedule: Option<lockgate_model::schedule::Schedule>,
    #[serde(default)]
    access_profile_ids: Vec<i64>,
    #[serde(default)]
    cylinder_ids: Vec<i64>,
    #[serde(default)]
    cylinder_group_ids: Vec<i64>,
    #[serde(default)]
    factory: lockgate_model::key::KeyFactory,
    #[serde(default)]
    lost_report: Option<LostReport>,
}

impl From<&Key> for KeyEngineFields {
    fn from(k: &Key) -> Self {
        KeyEngineFields {
            cutting: k.cutting.clone(),
            key_type: k.key_type,
            key_group_id: k.key_group_id,
            generation: k.generation,
            firmware: k.firmware.clone(),
            connect: k.connect,
            status: k.status,
            holder_id: k.holder_id,
            access_list_capacity: k.access_list_capacity,
            validity: k.validity.clone(),
            schedule: k.schedule.clone(),
            access_profile_ids: k.access_profile_ids.clone(),
            cylinder_ids: k.cylinder_ids.clone(),
            cylinder_group_ids: k.cylinder_group_ids.clone(),
            factory: k.factory.clone(),
            lost_report: k.lost_report.clone(),
        }
    }
}

/// A key of a loaded configuration.
fn key_of(cfg: &Configuration, key_id: i64) -> Result<&KeyConfig> {
    cfg.keys
        .iter()
        .find(|k| k.facts.id == key_id)
        .ok_or(StoreError::NotFound {
            kind: "key",
            id: key_id,
        })
}

/// How a cylinder keeps a lost key out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LostKeyBlocking {
    /// The lost-key report chose this cylinder: a block job.
    Blocked,
    /// The cylinder admits the key but was not chosen: it goes into the blocked list with
    /// the cylinder's next job (manual §4.2.12.2).
    Silently,
    /// The cylinder does not admit the key.
    NotAdmitted,
}

/// The one reading of a lost-key report for one cylinder (`admitted`: its access list
/// admits the key): by default every admitting cylinder blocks it.
pub(crate) fn lost_key_blocking(
    report: Option<&LostReport>,
    admitted: bool,
    cylinder_id: i64,
    cylinder: &Cylinder,
) -> LostKeyBlocking {
    if !admitted {
        return LostKeyBlocking::NotAdmitted;
    }
    let chosen = match report.map(|r| r.block).unwrap_or_default() {
        BlockChoice::All => true,
        BlockChoice::Installed => cylinder.status == CylinderStatus::Installed,
        // Only cylinders admitting the key: a custom list never blocks elsewhere.
        BlockChoice::Custom => report.is_some_and(|r| r.cylinder_ids.contains(&cylinder_id)),
        BlockChoice::None => false,
    };
    if chosen {
        LostKeyBlocking::Blocked
    } else {
        LostKeyBlocking::Silently
    }
}

impl KeyEngineFields {
    /// The one mapping of a stored key onto the engine's key configuration.
    fn config(&self, id: i64) -> KeyConfig {
        KeyConfig {
            facts: KeyFacts {
                id,
                key_type: self.key_type,
                generation: self.generation,
                firmware: self.firmware.clone(),
                connect: self.connect,
                key_group: self.key_group_id,
                cutting: self.cutting.clone(),
                capacity: self.access_list_capacity,
                online_open: self.factory.online_open,
                override_key: self.factory.override_key,
            },
            activation: self.validity.activation.clone(),
            revalidation: self.validity.revalidation.clone(),
            pin: self.validity.pin.clone(),
            schedule: self.schedule.clone(),
            holder: self.holder_id,
            profiles: self.access_profile_ids.clone(),
            cylinders: self.cylinder_ids.clone(),
            cylinder_groups: self.cylinder_group_ids.clone(),
            lost: self.status == KeyStatus::Lost,
        }
    }
}

/// The fields of a stored person that the defined state reads.
#[derive(Debug, Deserialize)]
struct PersonEngineFields {
    #[serde(default)]
    lifecycle: PersonState,
    #[serde(default)]
    access_profile_ids: Vec<i64>,
}

/// Which keys a reconciliation run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTargets {
    /// Every key of the system.
    All,
    /// Only these keys (possibly none).
    Only(BTreeSet<i64>),
}

/// What a reconciliation run covers. A change only reaches the keys and cylinders whose
/// defined program can depend on it (`Store::scope_of_change`); a run with a scope
/// decides exactly what a full run would decide for those targets, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileScope {
    pub keys: KeyTargets,
    /// Whether cylinder programs are recomputed (all cylinders, or none).
    pub cylinders: bool,
}

impl ReconcileScope {
    /// Every key and every cylinder.
    pub fn full() -> Self {
        ReconcileScope {
            keys: KeyTargets::All,
            cylinders: true,
        }
    }

    fn keys_only(ids: BTreeSet<i64>) -> Self {
        ReconcileScope {
            keys: KeyTargets::Only(ids),
            cylinders: false,
        }
    }
}

/// Ids per statement when loading by id list.
const ID_CHUNK: usize = 500;
/// Above this many ids, one scan of the kind filtered in memory beats id lookups.
const ID_SCAN_ABOVE: usize = 2_000;

impl Store {
    /// Everything the engine needs to compute the defined state of a whole system.
    pub async fn configuration(&self, sys: &LockingSystem) -> Result<Configuration> {
        self.configuration_for(sys, &ReconcileScope::full()).await
    }

    /// [`Store::configuration_in`] on a connection of the pool.
    pub async fn configuration_for(
        &self,
        sys: &LockingSystem,
        scope: &ReconcileScope,
    ) -> Result<Configuration> {
        let mut conn = self.pool().acquire().await?;
        Self::configuration_in(&mut conn, sys, scope).await
    }

    /// `(id, body)` of the objects of `kinds`, all of them or only `ids`.
    async fn bodies(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        kinds: &[ObjectKind],
        ids: Option<&BTreeSet<i64>>,
        extra: &str,
    ) -> Result<Vec<(i64, String)>> {
        let select = |chunk: Option<&[i64]>| {
            let mut q = Sql::new("SELECT id, body FROM objects WHERE system_id = ");
            q.bind(system_id).push(" AND kind IN (");
            q.bind_list(kinds.iter().map(|k| k.as_str().to_string()))
                .push(")");
            if let Some(chunk) = chunk {
                q.push(" AND id IN (")
                    .bind_list(chunk.iter().copied())
                    .push(")");
            }
            q.push(extra);
            q
        };
        let conn = &mut *conn;
        let mut rows = Vec::new();
        match ids {
            None => rows = select(None).fetch_all(&mut *conn).await?,
            Some(ids) if ids.len() > ID_SCAN_ABOVE => {
                for r in select(None).fetch_all(&mut *conn).await? {
                    if ids.contains(&r.try_get::<i64, _>("id")?) {
                        rows.push(r);
                    }
                }
            }
            Some(ids) => {
                let ids: Vec<i64> = ids.iter().copied().collect();
                for chunk in ids.chunks(ID_CHUNK) {
                    rows.extend(select(Some(chunk)).fetch_all(&mut *conn).await?);
                }
            }
        }
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("body")?)))
            .collect()
    }

    /// The engine's input for the keys and cylinders of `scope`: the keys in scope, the
    /// holders of those keys, every profile, cylinder group and temporary group, and —
    /// when cylinders are in scope — every cylinder with the lost keys it blocks.
    ///
    /// Read on `conn`: inside a reconciliation's write transaction, which holds the
    /// system's change lock, so the configuration and the jobs written from it agree.
    pub async fn configuration_in(
        conn: &mut sqlx::AnyConnection,
        sys: &LockingSystem,
        scope: &ReconcileScope,
    ) -> Result<Configuration> {
        let all = Scope::all();
        let limit = 10_000_000;
        let mut cfg = Configuration {
            flexible_revalidation: sys.settings.flexible_revalidation,
            ..Default::default()
        };
        let key_ids = match &scope.keys {
            KeyTargets::All => None,
            KeyTargets::Only(ids) => Some(ids),
        };
        let decode_key = |(id, body): (i64, String)| -> Result<(i64, KeyEngineFields)> {
            serde_json::from_str(&body)
                .map(|k| (id, k))
                .map_err(|e| corrupt(format!("key {id}: {e}")))
        };
        let keys: Vec<(i64, KeyEngineFields)> = if key_ids.is_some_and(BTreeSet::is_empty) {
            Vec::new()
        } else {
            Self::bodies(conn, sys.id, &[ObjectKind::Key], key_ids, "")
                .await?
                .into_iter()
                .map(decode_key)
                .collect::<Result<_>>()?
        };
        cfg.keys = keys.iter().map(|(id, k)| k.config(*id)).collect();
        if scope.cylinders {
            // Cylinder programs need every key's group and every lost key, loaded or not.
            let mut lost: Vec<(i64, KeyEngineFields)> = Vec::new();
            if key_ids.is_some() {
                let mut q = Sql::new(
                    "SELECT r.from_id, r.to_id FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE o.system_id = ",
                );
                q.bind(sys.id)
                    .push(" AND o.kind = 'key' AND r.relation = 'key_group'");
                for r in q.fetch_all(&mut *conn).await? {
                    cfg.other_key_groups
                        .insert(r.try_get("from_id")?, Some(r.try_get("to_id")?));
                }
                lost = Self::bodies(
                    conn,
                    sys.id,
                    &[ObjectKind::Key],
                    None,
                    " AND status = 'lost'",
                )
                .await?
                .into_iter()
                .map(decode_key)
                .collect::<Result<_>>()?;
            }
            let lost: Vec<(i64, Option<i64>, Option<&LostReport>)> = keys
                .iter()
                .chain(lost.iter())
                .filter(|(_, k)| k.status == KeyStatus::Lost)
                .map(|(id, k)| (*id, k.key_group_id, k.lost_report.as_ref()))
                .collect();
            Self::cylinder_configs(conn, sys.id, &lost, &mut cfg).await?;
        }
        for g in
            Self::list_all_in::<CylinderGroup>(conn, sys.id, ObjectKind::CylinderGroup, &all, limit)
                .await?
        {
            cfg.cylinder_groups
                .insert(g.id, g.body.revalidation_interval_hours);
        }
        if cfg.flexible_revalidation && cfg.cylinder_groups.values().any(Option::is_some) {
            let mut q = Sql::new(
                "SELECT r.from_id, r.to_id FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE o.system_id = ",
            );
            q.bind(sys.id)
                .push(" AND o.kind = 'cylinder' AND r.relation = 'cylinder_group'");
            for r in q.fetch_all(&mut *conn).await? {
                cfg.cylinder_group_of
                    .insert(r.try_get("from_id")?, r.try_get("to_id")?);
            }
        }
        for p in
            Self::list_all_in::<AccessProfile>(conn, sys.id, ObjectKind::AccessProfile, &all, limit)
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
        let holders: Option<BTreeSet<i64>> =
            key_ids.map(|_| keys.iter().filter_map(|(_, k)| k.holder_id).collect());
        if holders.as_ref().is_none_or(|h| !h.is_empty()) {
            for (id, body) in Self::bodies(
                conn,
                sys.id,
                &[ObjectKind::Employee, ObjectKind::Visitor],
                holders.as_ref(),
                "",
            )
            .await?
            {
                let p: PersonEngineFields = serde_json::from_str(&body)
                    .map_err(|e| corrupt(format!("person {id}: {e}")))?;
                if p.lifecycle == PersonState::Active && !p.access_profile_ids.is_empty() {
                    cfg.persons.insert(id, p.access_profile_ids);
                }
            }
        }
        for t in Self::list_all_in::<TemporaryAccessGroup>(
            conn,
            sys.id,
            ObjectKind::TemporaryAccessGroup,
            &all,
            limit,
        )
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

    /// Every cylinder of the system into `cfg`, with the lost keys each one blocks.
    async fn cylinder_configs(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        lost: &[(i64, Option<i64>, Option<&LostReport>)],
        cfg: &mut Configuration,
    ) -> Result<()> {
        for c in Self::list_all_in::<Cylinder>(
            conn,
            system_id,
            ObjectKind::Cylinder,
            &Scope::all(),
            10_000_000,
        )
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
            // A lost key is blocked as its report chose (by default on every cylinder
            // admitting it); on the other cylinders admitting it, it goes into the blocked
            // list silently (written with the next job those cylinders get).
            let (mut blocked, mut silently_blocked) = (BTreeSet::new(), BTreeSet::new());
            for (k, g, report) in lost {
                match lost_key_blocking(*report, admits(*k, *g), c.id, b) {
                    LostKeyBlocking::Blocked => {
                        blocked.insert(*k);
                    }
                    LostKeyBlocking::Silently => {
                        silently_blocked.insert(*k);
                    }
                    LostKeyBlocking::NotAdmitted => {}
                }
            }
            // Found keys the cylinder was never programmed to block stay silently blocked.
            silently_blocked.extend(b.unauthorised_key_ids.iter().copied());
            cfg.cylinders.push(CylinderConfig {
                id: c.id,
                electronic: b.is_electronic(),
                key_groups,
                keys,
                blocked,
                silently_blocked,
                cylinder_group: b.cylinder_group_id,
                time_zone_offset_minutes: b.time_zone_offset_minutes,
            });
        }
        Ok(())
    }

    /// The keys and cylinders whose defined program a change of the objects `ids` of
    /// `kind` can reach. Conservative: anything not worked out here is a full run.
    pub async fn scope_of_change(
        &self,
        system_id: i64,
        kind: ObjectKind,
        ids: &[i64],
    ) -> Result<ReconcileScope> {
        let ids: BTreeSet<i64> = ids.iter().copied().collect();
        if ids.is_empty() {
            return Ok(ReconcileScope::full());
        }
        Ok(match kind {
            // A key's own program, and cylinders (its group, its lost state).
            ObjectKind::Key => ReconcileScope {
                keys: KeyTargets::Only(ids),
                cylinders: true,
            },
            // Key programs read cylinders only under flexible revalidation (a cylinder's
            // group interval), which the application layer reconciles in full; a
            // cylinder's program is its own.
            ObjectKind::Cylinder => ReconcileScope {
                keys: KeyTargets::Only(BTreeSet::new()),
                cylinders: true,
            },
            // The keys the persons hold.
            ObjectKind::Employee | ObjectKind::Visitor => {
                ReconcileScope::keys_only(self.referrers(system_id, &ids, ObjectKind::Key).await?)
            }
            // Keys holding the profile, keys of holders holding it, keys of temporary
            // groups that give it.
            ObjectKind::AccessProfile => {
                let mut by_kind = self.referrers_by_kind(system_id, &ids).await?;
                let mut take = |k: ObjectKind| by_kind.remove(k.as_str()).unwrap_or_default();
                let mut keys = take(ObjectKind::Key);
                let mut persons = take(ObjectKind::Employee);
                persons.extend(take(ObjectKind::Visitor));
                let groups = take(ObjectKind::TemporaryAccessGroup);
                if !persons.is_empty() {
                    keys.extend(self.referrers(system_id, &persons, ObjectKind::Key).await?);
                }
                if !groups.is_empty() {
                    let mut conn = self.pool().acquire().await?;
                    for (_, body) in Self::bodies(
                        &mut conn,
                        system_id,
                        &[ObjectKind::TemporaryAccessGroup],
                        Some(&groups),
                        "",
                    )
                    .await?
                    {
                        let g: TemporaryAccessGroup =
                            serde_json::from_str(&body).map_err(corrupt)?;
                        keys.extend(g.key_ids);
                    }
                }
                ReconcileScope::keys_only(keys)
            }
            _ => ReconcileScope::full(),
        })
    }

    /// Objects that refer to any of `ids`, by kind, in one pass over the references.
    async fn referrers_by_kind(
        &self,
        system_id: i64,
        ids: &BTreeSet<i64>,
    ) -> Result<HashMap<String, BTreeSet<i64>>> {
        let ids: Vec<i64> = ids.iter().copied().collect();
        let mut out: HashMap<String, BTreeSet<i64>> = HashMap::new();
        let mut conn = self.pool().acquire().await?;
        for chunk in ids.chunks(ID_CHUNK) {
            let mut q = Sql::new(
                "SELECT DISTINCT r.from_id, o.kind FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE o.system_id = ",
            );
            q.bind(system_id)
                .push(" AND r.to_id IN (")
                .bind_list(chunk.iter().copied())
                .push(")");
            for r in q.fetch_all(&mut conn).await? {
                out.entry(r.try_get::<String, _>("kind")?)
                    .or_default()
                    .insert(r.try_get::<i64, _>("from_id")?);
            }
        }
        Ok(out)
    }

    /// Objects of `kind` that refer to any of `ids`.
    async fn referrers(
        &self,
        system_id: i64,
        ids: &BTreeSet<i64>,
        kind: ObjectKind,
    ) -> Result<BTreeSet<i64>> {
        let ids: Vec<i64> = ids.iter().copied().collect();
        let mut out = BTreeSet::new();
        let mut conn = self.pool().acquire().await?;
        for chunk in ids.chunks(ID_CHUNK) {
            let mut q = Sql::new(
                "SELECT DISTINCT r.from_id FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE o.system_id = ",
            );
            q.bind(system_id)
                .push(" AND o.kind = ")
                .bind(kind.as_str().to_string())
                .push(" AND r.to_id IN (")
                .bind_list(chunk.iter().copied())
                .push(")");
            for r in q.fetch_all(&mut conn).await? {
                out.insert(r.try_get::<i64, _>("from_id")?);
            }
        }
        Ok(out)
    }

    /// The actual state confirmed by hardware.
    pub async fn actual_state(&self, system_id: i64) -> Result<ActualState> {
        let mut conn = self.pool().acquire().await?;
        let mut actual = Self::actual_cylinders(&mut conn, system_id).await?;
        for (id, p) in Self::actual_key_programs(&mut conn, system_id, &KeyTargets::All).await? {
            actual
                .keys
                .insert(id, serde_json::from_str(&p).map_err(corrupt)?);
        }
        Ok(actual)
    }

    /// The programs cylinders hold (the keys of the result are empty).
    async fn actual_cylinders(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
    ) -> Result<ActualState> {
        let mut actual = ActualState::default();
        for r in
            sqlx::query("SELECT cylinder_id, program FROM cylinder_actual WHERE system_id = $1")
                .bind(system_id)
                .fetch_all(&mut *conn)
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

    /// Open jobs of the targets in `scope`: key programs as their stored JSON text (compared,
    /// never parsed), cylinder programs parsed (their actions need the difference), the
    /// cylinders whose job is on its way, and those whose job an administrator requested.
    async fn pending(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        scope: &ReconcileScope,
    ) -> Result<(
        HashMap<i64, PendingJob<String>>,
        HashMap<i64, PendingJob<CylinderProgram>>,
        BTreeSet<i64>,
        BTreeSet<i64>,
    )> {
        let (mut keys, mut cylinders, mut out) = (HashMap::new(), HashMap::new(), BTreeSet::new());
        let mut requested = BTreeSet::new();
        for r in sqlx::query(
            "SELECT id, kind, target_id, program, state, actions FROM jobs WHERE system_id = $1 AND open = 1 AND kind IN ('remote_update', 'cylinder_programming')",
        )
        .bind(system_id)
        .fetch_all(&mut *conn)
        .await?
        {
            let program: String = r.try_get("program")?;
            let (id, target): (i64, i64) = (r.try_get("id")?, r.try_get("target_id")?);
            let kind = JobKind::parse(&r.try_get::<String, _>("kind")?)
                .map_err(|e| StoreError::Corrupt(format!("job {id}: {e}")))?;
            let state: String = r.try_get("state")?;
            if kind == JobKind::RemoteUpdate {
                if let KeyTargets::Only(ids) = &scope.keys
                    && !ids.contains(&target)
                {
                    continue;
                }
                keys.insert(
                    target,
                    PendingJob {
                        id,
                        target: program,
                    },
                );
            } else if scope.cylinders {
                if state != JobState::Created.name() {
                    out.insert(target);
                    continue;
                }
                let actions: Vec<CylinderAction> =
                    serde_json::from_str(&r.try_get::<String, _>("actions")?).map_err(corrupt)?;
                if actions.iter().any(|a| CylinderAction::REQUESTED.contains(a)) {
                    requested.insert(target);
                }
                cylinders.insert(
                    target,
                    PendingJob {
                        id,
                        target: serde_json::from_str::<CylinderProgram>(&program)
                            .map_err(corrupt)?,
                    },
                );
            }
        }
        Ok((keys, cylinders, out, requested))
    }

    /// The programs keys in `scope` hold, as stored JSON text.
    async fn actual_key_programs(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        scope: &KeyTargets,
    ) -> Result<HashMap<i64, String>> {
        let select = |chunk: Option<&[i64]>| {
            let mut q = Sql::new("SELECT key_id, program FROM key_actual WHERE system_id = ");
            q.bind(system_id);
            if let Some(chunk) = chunk {
                q.push(" AND key_id IN (")
                    .bind_list(chunk.iter().copied())
                    .push(")");
            }
            q
        };
        let rows = match scope {
            KeyTargets::All => select(None).fetch_all(&mut *conn).await?,
            KeyTargets::Only(ids) if ids.len() > ID_SCAN_ABOVE => {
                let mut rows = Vec::new();
                for r in select(None).fetch_all(&mut *conn).await? {
                    if ids.contains(&r.try_get::<i64, _>("key_id")?) {
                        rows.push(r);
                    }
                }
                rows
            }
            KeyTargets::Only(ids) => {
                let ids: Vec<i64> = ids.iter().copied().collect();
                let mut rows = Vec::new();
                for chunk in ids.chunks(ID_CHUNK) {
                    rows.extend(select(Some(chunk)).fetch_all(&mut *conn).await?);
                }
                rows
            }
        };
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("program")?)))
            .collect()
    }

    /// Recompute the defined state of the whole system and persist the jobs it needs.
    pub async fn reconcile(
        &self,
        sys: &LockingSystem,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<ReconcileReport> {
        self.reconcile_scope(sys, actor, now, &ReconcileScope::full())
            .await
    }

    /// Recompute the defined programs of the keys and cylinders in `scope` and persist the
    /// jobs they need. Key programs are compared as canonical JSON text with what the keys
    /// hold and what open jobs write, so only programs that change are ever parsed.
    pub async fn reconcile_scope(
        &self,
        sys: &LockingSystem,
        actor: &Actor,
        now: DateTime<Utc>,
        scope: &ReconcileScope,
    ) -> Result<ReconcileReport> {
        let started = std::time::Instant::now();
        // Architecture invariant: a reconciliation reads its configuration, the actual
        // state and the open jobs inside the write transaction that holds the system's
        // change lock. Reconciliations of one system therefore commit in the order they
        // read, and an older snapshot can never replace a newer run's jobs.
        let mut tx = self.write_tx().await?;
        Self::lock_system(&mut tx, sys.id).await?;
        let cfg = Self::configuration_in(&mut tx, sys, scope).await?;
        let actual_keys = Self::actual_key_programs(&mut tx, sys.id, &scope.keys).await?;
        let actual = if scope.cylinders {
            Self::actual_cylinders(&mut tx, sys.id).await?
        } else {
            ActualState::default()
        };
        let loaded = started.elapsed();
        let defined = defined::compute(&cfg, now);
        let encoded: HashMap<i64, String> = defined
            .keys
            .iter()
            .map(|(id, p)| Ok((*id, serde_json::to_string(p).map_err(corrupt)?)))
            .collect::<Result<_>>()?;
        let computed = started.elapsed();
        let (pending_keys, pending_cylinders, out, requested) =
            Self::pending(&mut tx, sys.id, scope).await?;
        let empty = serde_json::to_string(&KeyProgram::default()).map_err(corrupt)?;
        let (keys, capacity_exceeded) =
            key_decisions(&encoded, &defined, &actual_keys, &pending_keys, &empty);
        let mut defined = defined;
        defined.keys.clear();
        let plan = reconcile(
            &defined,
            &actual,
            &Pending {
                keys: HashMap::new(),
                cylinders: pending_cylinders,
                requested,
            },
        );
        // A cylinder whose job is on its way (loaded on a C-key, carried by a user key) is
        // locked: nothing is planned for it until that job reports.
        let mut plan = plan;
        plan.cylinders.retain(|id, _| !out.contains(id));
        let planned = started.elapsed();
        let report = Self::apply_plan(
            &mut tx,
            sys.id,
            actor,
            &keys,
            &capacity_exceeded,
            &plan,
            now,
        )
        .await?;
        let written = started.elapsed();
        tx.commit().await?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            system_id = sys.id,
            keys = defined.keys.len().max(encoded.len()),
            cylinders = defined.cylinders.len(),
            created = report.created,
            replaced = report.replaced,
            cancelled = report.cancelled,
            load_ms = ms(loaded),
            compute_ms = ms(computed - loaded),
            plan_ms = ms(planned - computed),
            write_ms = ms(written - planned),
            commit_ms = ms(started.elapsed() - written),
            "reconciliation"
        );
        Ok(report)
    }

    /// Write a plan: cancellations and replacements as set-based updates, new jobs as
    /// multi-row inserts, all in the caller's transaction. Key decisions carry the
    /// program's JSON text; `plan` holds the cylinder decisions.
    async fn apply_plan(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        system_id: i64,
        actor: &Actor,
        keys: &BTreeMap<i64, Decision<String>>,
        capacity_exceeded: &BTreeSet<i64>,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<ReconcileReport> {
        let mut report = ReconcileReport {
            capacity_exceeded: capacity_exceeded.iter().copied().collect(),
            ..Default::default()
        };
        let stamp = ts(now);
        let mut items: Vec<JobWrite> = Vec::new();
        for (id, d) in keys {
            items.push(JobWrite::encoded(JobKind::RemoteUpdate, *id, d, Vec::new()));
        }
        for (id, (d, actions)) in &plan.cylinders {
            items.push(JobWrite::new(
                JobKind::CylinderProgramming,
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
        // A requested reprogramming or audit-trail read survives the replacement of its job.
        if !replaced.is_empty() {
            let mut q = Sql::new("SELECT target_id, actions FROM jobs WHERE id IN (");
            q.bind_list(replaced.iter().copied()).push(")");
            let mut requested: HashMap<i64, Vec<CylinderAction>> = HashMap::new();
            for r in q.fetch_all(tx).await? {
                let actions: Vec<CylinderAction> =
                    serde_json::from_str(&r.try_get::<String, _>("actions")?).map_err(corrupt)?;
                let kept: Vec<CylinderAction> = actions
                    .into_iter()
                    .filter(|a| CylinderAction::REQUESTED.contains(a))
                    .collect();
                if !kept.is_empty() {
                    requested.insert(r.try_get::<i64, _>("target_id")?, kept);
                }
            }
            for w in inserts
                .iter_mut()
                .filter(|w| w.kind == JobKind::CylinderProgramming)
            {
                for a in requested.get(&w.target).into_iter().flatten() {
                    if !w.actions.contains(a) {
                        w.actions.push(*a);
                    }
                }
            }
        }
        report.cancelled = cancelled.len();
        report.replaced = replaced.len();
        report.created = inserts.len() - replaced.len();
        // Set-based: every job planned here is open and `created` (jobs on their way are
        // left out by `pending`), the state from which `next_state` allows both moves; the
        // statement re-checks it.
        debug_assert!(
            next_state(
                JobKind::CylinderProgramming,
                JobTarget::Cylinder,
                &JobState::Created,
                &Transition::Cancel
            )
            .is_ok()
        );
        for (ids, state) in [
            (&cancelled, JobState::Cancelled.name()),
            (&replaced, "replaced"),
        ] {
            for chunk in ids.chunks(500) {
                let mut q = Sql::new("UPDATE jobs SET open = 0, state = ");
                q.bind(state)
                    .push(", updated_at = ")
                    .bind(stamp.clone())
                    .push(" WHERE open = 1 AND state = 'created' AND system_id = ")
                    .bind(system_id);
                q.push(" AND id IN (")
                    .bind_list(chunk.iter().copied())
                    .push(")");
                q.execute(tx).await?;
            }
        }
        for chunk in inserts.chunks(400) {
            let mut q = Sql::new(
                "INSERT INTO jobs (system_id, kind, target_kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at)",
            );
            let mut encoded = Vec::with_capacity(chunk.len());
            for w in chunk {
                encoded.push(serde_json::to_string(&w.actions).map_err(corrupt)?);
            }
            q.values(chunk.iter().zip(encoded), |q, (w, actions)| {
                let priority = if w.actions.contains(&CylinderAction::Block) {
                    Priority::High
                } else {
                    Priority::Normal
                };
                let target = if w.kind == JobKind::RemoteUpdate {
                    JobTarget::Key
                } else {
                    JobTarget::Cylinder
                };
                q.bind(system_id)
                    .bind(w.kind.as_str())
                    .bind(target.as_str())
                    .bind(w.target)
                    .bind("created")
                    .bind(1_i64)
                    .bind(w.program.clone())
                    .bind(actions)
                    .bind(priority.as_str())
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
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE system_id = $1 AND ($2 = 0 OR target_id = $2) AND ($3 = 0 OR open = 1) ORDER BY id DESC LIMIT $4"
        ))
        .bind(system_id)
        .bind(target.unwrap_or(0))
        .bind(i64::from(open_only))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
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
        let recorded: Option<String> =
            sqlx::query("SELECT structure FROM key_actual WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get::<Option<String>, _>("structure"))
                .transpose()?
                .flatten();
        if recorded.is_some_and(|r| r != key_structure(&key.body)) {
            return Ok(UpdateStatus::ReEditionRequired);
        }
        let open = self.jobs(sys.id, Some(key_id), true, 1).await?;
        Ok(if open.is_empty() {
            UpdateStatus::UpToDate
        } else {
            UpdateStatus::UpdateRequired
        })
    }
}

impl Store {
    /// A local PD re-edited the key: its current structure is now what the key holds.
    pub async fn confirm_re_edition(
        &self,
        cx: &WriteContext,
        key_id: i64,
    ) -> Result<crate::Stored<Key>> {
        let (sys, now) = (&cx.system, cx.now);
        let mut tx = self.write_tx().await?;
        let key = Self::update_in(
            &mut tx,
            cx,
            ObjectKind::Key,
            key_id,
            Edit {
                expected_version: None,
                action: "key_re_edited",
                trusted: true,
            },
            |_: &mut Key| Ok(()),
        )
        .await?;
        let empty = serde_json::to_string(&KeyProgram::default()).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO key_actual (key_id, system_id, program, clock, confirmed_at, structure) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (key_id) DO UPDATE SET structure = excluded.structure",
        )
        .bind(key_id)
        .bind(sys.id)
        .bind(empty)
        .bind("{}")
        .bind(ts(now))
        .bind(key_structure(&key.body))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(key)
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
        let key = key_of(&cfg, key_id)?;
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

    /// Whether a key opens a side of a cylinder at `at` (`DOMAIN.md` §2), on the state the
    /// hardware holds (`defined = false`) or on the defined state once every pending job
    /// has run (`defined = true`, computed at `at`, so temporary access groups count only
    /// while in force). Both use the key's recorded clock (last revalidation, PIN entry,
    /// online update). The sequence lock is judged for a key inserted alone.
    pub async fn opening_decision(
        &self,
        sys: &LockingSystem,
        key_id: i64,
        cylinder: &crate::Stored<Cylinder>,
        side: lockgate_engine::state::Side,
        at: DateTime<Utc>,
        defined: bool,
    ) -> Result<std::result::Result<(), lockgate_engine::opening::Refusal>> {
        let cfg = self.configuration(sys).await?;
        let key = key_of(&cfg, key_id)?;
        let (key_program, cylinder_program) = if defined {
            let d = defined::compute(&cfg, at);
            (
                d.keys.get(&key_id).cloned().unwrap_or_default(),
                d.cylinders.get(&cylinder.id).cloned().unwrap_or_default(),
            )
        } else {
            let a = self.actual_state(sys.id).await?;
            (
                a.keys.get(&key_id).cloned().unwrap_or_default(),
                a.cylinders.get(&cylinder.id).cloned().unwrap_or_default(),
            )
        };
        let clock = Self::key_clock_in(&mut *self.pool().acquire().await?, sys.id, key_id).await?;
        let c = &cylinder.body;
        let facts = lockgate_engine::state::CylinderFacts {
            id: cylinder.id,
            side_a: c.side_a,
            side_b: c.side_b,
            cutting: c.cutting.clone(),
            firmware: c.firmware.clone(),
            time_zone: c.time_zone.clone(),
            factory: c.factory.clone(),
        };
        let door = lockgate_engine::opening::CylinderSide {
            facts: &facts,
            program: &cylinder_program,
            side,
        };
        let ctx = lockgate_engine::opening::OpeningContext {
            base_time_zone: &sys.fixed.base_time_zone,
            previous_insertion: None,
        };
        Ok(lockgate_engine::opening::can_open(
            &key.facts,
            &key_program,
            &clock,
            &door,
            at,
            &ctx,
        ))
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
        let mut conn = self.pool().acquire().await?;
        Self::job_in(&mut conn, system_id, job_id).await
    }

    /// One job by id, read on `conn` (inside a write transaction: what it will change).
    pub async fn job_in(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        job_id: i64,
    ) -> Result<JobRecord> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND system_id = $2"
        ))
        .bind(job_id)
        .bind(system_id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound {
            kind: "job",
            id: job_id,
        })?;
        job_from_row(&row)
    }

    /// The C-key holding another open job of the same target on its way to the cylinder
    /// (the cylinder is then "locked by" it), if any.
    pub async fn locked_by(tx: &mut Tx, system_id: i64, job: &JobRecord) -> Result<Option<i64>> {
        Ok(sqlx::query(
            "SELECT loaded_on FROM jobs WHERE target_id = $1 AND system_id = $2 AND open = 1 AND state = 'loaded' AND id <> $3 LIMIT 1",
        )
        .bind(job.target_id)
        .bind(system_id)
        .bind(job.id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<Option<i64>, _>("loaded_on"))
        .transpose()?
        .flatten())
    }

    /// How many open jobs wait for `c_key` at a remote PD.
    pub async fn jobs_assigned_to(&self, system_id: i64, c_key: i64) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE system_id = $1 AND assigned_to = $2 AND open = 1",
        )
        .bind(system_id)
        .bind(c_key)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?)
    }

    /// Apply one transition to a job read in this transaction: the engine decides the new
    /// state (`lockgate_engine::jobs::next_state`), the row changes only if it is still in
    /// the state read, the transition's event (and its notification: assignment, failure)
    /// is written with it, and a finished job's program becomes the actual state.
    ///
    /// Architecture invariant: this is the only place a job's state is written outside
    /// reconciliation's set-based cancel/replace (which checks `next_state` per job too).
    pub async fn transition_job(
        tx: &mut Tx,
        sys: &LockingSystem,
        job: &JobRecord,
        t: &Transition,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let next = next_state(job.kind, job.target, &job.state, t)?;
        let mut row = job.clone();
        match (&next, t) {
            (JobState::Loaded { c_key }, _) => row.loaded_on = Some(*c_key),
            (JobState::Carried { key }, _) => row.carried_by = Some(*key),
            (JobState::Replaced { by }, _) => row.replaced_by = Some(*by),
            (JobState::Failed { reason }, _) => {
                row.reason = Some(reason.chars().take(500).collect());
            }
            (_, Transition::Assign { c_key }) => row.assigned_to = Some(*c_key),
            (_, Transition::Approve) => row.reason = Some(format!("approved by {}", actor.label)),
            (_, Transition::Reject) => row.reason = Some(format!("rejected by {}", actor.label)),
            _ => {}
        }
        let stamp = ts(now);
        let written = sqlx::query(
            "UPDATE jobs SET state = $1, open = $2, loaded_on = $3, carried_by = $4, assigned_to = $5, replaced_by = $6, reason = $7, updated_at = $8 \
             WHERE id = $9 AND system_id = $10 AND state = $11 AND open = 1",
        )
        .bind(next.name())
        .bind(i64::from(!next.is_final()))
        .bind(row.loaded_on)
        .bind(row.carried_by)
        .bind(row.assigned_to)
        .bind(row.replaced_by)
        .bind(row.reason.clone())
        .bind(&stamp)
        .bind(job.id)
        .bind(sys.id)
        .bind(job.state.name())
        .execute(&mut **tx)
        .await?;
        if written.rows_affected() != 1 {
            return Err(StoreError::Refused {
                message: format!(
                    "job {} changed meanwhile or is not {}",
                    job.id,
                    job.state.name()
                ),
            });
        }
        if next == JobState::Finished {
            Self::record_actual(tx, sys, job, now).await?;
        }
        let target_name: String =
            sqlx::query("SELECT name FROM objects WHERE id = $1 AND system_id = $2")
                .bind(job.target_id)
                .bind(sys.id)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("name"))
                .transpose()?
                .unwrap_or_default();
        // The job's state change is an event (the MQTT bridge publishes it) in the same
        // transaction; a failed job also notifies the administrators (outbox).
        let to = match t {
            Transition::Load { c_key } | Transition::Assign { c_key } => Some(*c_key),
            Transition::Carry { key } => Some(*key),
            _ => None,
        };
        let details = serde_json::json!({
            "job_id": job.id,
            "kind": job.kind,
            "target": job.target,
            "target_id": job.target_id,
            "target_name": target_name,
            "from": job.state.name(),
            "state": next.name(),
            "to": to,
            "reason": row.reason,
        });
        EventDraft {
            object_kind: "job".into(),
            object_id: Some(job.id),
            object_label: format!("{} {target_name}", job.kind.as_str()),
            action: t.event().into(),
            changes: details.clone(),
        }
        .insert(tx, sys.id, actor)
        .await?;
        match t {
            Transition::Assign { c_key } => {
                // The administrator holding the C-key learns that jobs wait for it.
                let (c_key_name, recipients) = Self::c_key_recipients(tx, *c_key).await?;
                let mut payload = details.clone();
                payload["c_key_name"] = c_key_name.into();
                payload["recipients"] = recipients;
                payload["lines"] = serde_json::json!([target_name]);
                crate::outbox::insert_outbox(
                    tx,
                    &format!("job-assigned:{}:{c_key}", job.id),
                    crate::outbox::Topic::JobAssigned.as_str(),
                    &payload,
                )
                .await?;
            }
            Transition::Fail { .. } => {
                let mut payload = details;
                payload["system_id"] = sys.id.into();
                payload["system_name"] = sys.name.clone().into();
                payload["messaging_language"] = sys.settings.messaging_language.clone().into();
                crate::outbox::insert_outbox(
                    tx,
                    &format!("job-failed:{}", job.id),
                    crate::outbox::Topic::JobFailed.as_str(),
                    &payload,
                )
                .await?;
            }
            _ => {}
        }
        Self::job_in(tx, sys.id, job.id).await
    }

    /// A finished job's program becomes the actual state of its key or cylinder.
    async fn record_actual(
        tx: &mut Tx,
        sys: &LockingSystem,
        job: &JobRecord,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let stamp = ts(now);
        // The program text exactly as the job stored it: key programs are compared as their
        // canonical JSON text, which a parsed `Value` would not reproduce.
        let program: String = sqlx::query("SELECT program FROM jobs WHERE id = $1")
            .bind(job.id)
            .fetch_one(&mut **tx)
            .await?
            .try_get("program")?;
        match (job.kind, job.target) {
            // Reading an audit trail changes no programmed state.
            (JobKind::AuditTrail, _) => {}
            (JobKind::RemoteUpdate, _) => {
                // DOMAIN.md §4 / manual §8.1.5: every update at a remote PD revalidates the
                // key, so its revalidation timer restarts; the rest of its clock is kept.
                let mut clock = Self::key_clock_in(tx, sys.id, job.target_id).await?;
                clock.last_revalidation = Some(now);
                sqlx::query(
                    "INSERT INTO key_actual (key_id, system_id, program, clock, confirmed_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (key_id) DO UPDATE SET program = excluded.program, clock = excluded.clock, confirmed_at = excluded.confirmed_at",
                )
                .bind(job.target_id)
                .bind(sys.id)
                .bind(&program)
                .bind(serde_json::to_string(&clock).map_err(corrupt)?)
                .bind(&stamp)
                .execute(&mut **tx)
                .await?;
                let key = Self::update_in(
                    tx,
                    &crate::WriteContext::system(sys, now),
                    ObjectKind::Key,
                    job.target_id,
                    Edit {
                        expected_version: None,
                        action: "remote_update_confirmed",
                        trusted: true,
                    },
                    |k: &mut Key| {
                        k.last_remote_update = Some(now);
                        Ok(())
                    },
                )
                .await?;
                // The first confirmation records the structure the key was issued with.
                sqlx::query(
                    "UPDATE key_actual SET structure = $1 WHERE key_id = $2 AND structure IS NULL",
                )
                .bind(key_structure(&key.body))
                .bind(job.target_id)
                .execute(&mut **tx)
                .await?;
            }
            (JobKind::CylinderProgramming, _) => {
                sqlx::query(
                    "INSERT INTO cylinder_actual (cylinder_id, system_id, program, confirmed_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (cylinder_id) DO UPDATE SET program = excluded.program, confirmed_at = excluded.confirmed_at",
                )
                .bind(job.target_id)
                .bind(sys.id)
                .bind(&program)
                .bind(&stamp)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// A C-key's name and the person holding it as a notification recipient
    /// (`[{email, language, name}]`, empty without a holder or an address).
    async fn c_key_recipients(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        c_key: i64,
    ) -> Result<(String, serde_json::Value)> {
        let body = |row: Option<sqlx::any::AnyRow>| -> Result<serde_json::Value> {
            Ok(match row {
                Some(r) => {
                    serde_json::from_str(&r.try_get::<String, _>("body")?).map_err(corrupt)?
                }
                None => serde_json::Value::Null,
            })
        };
        let select = "SELECT body FROM objects WHERE id = $1";
        let ck = body(
            sqlx::query(select)
                .bind(c_key)
                .fetch_optional(&mut **tx)
                .await?,
        )?;
        let name = ck["name"].as_str().unwrap_or_default().to_owned();
        let Some(holder) = ck["holder_id"].as_i64() else {
            return Ok((name, serde_json::json!([])));
        };
        let p = body(
            sqlx::query(select)
                .bind(holder)
                .fetch_optional(&mut **tx)
                .await?,
        )?;
        let recipients = match p["email"].as_str() {
            Some(email) => serde_json::json!([{
                "email": email,
                "language": p["language"],
                "name": format!(
                    "{} {}",
                    p["first_name"].as_str().unwrap_or_default(),
                    p["surname"].as_str().unwrap_or_default()
                ),
            }]),
            None => serde_json::json!([]),
        };
        Ok((name, recipients))
    }

    /// Free access-list entries of a key: its capacity less what it holds (unlimited when
    /// no capacity is recorded).
    pub async fn key_free_slots(&self, key_id: i64, capacity: Option<u32>) -> Result<u32> {
        let Some(capacity) = capacity else {
            return Ok(u32::MAX);
        };
        let held = match sqlx::query("SELECT program FROM key_actual WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?
        {
            Some(r) => {
                let p: KeyProgram =
                    serde_json::from_str(&r.try_get::<String, _>("program")?).map_err(corrupt)?;
                p.access.len()
            }
            None => 0,
        };
        Ok(capacity.saturating_sub(u32::try_from(held).unwrap_or(u32::MAX)))
    }
}

/// Requests administrators make of the hardware: reprogramming and audit-trail reads.
impl Store {
    /// Request reprogramming of a cylinder: its open programming job (or a new one) writes
    /// the whole defined program after the memory is wiped. Refused while the cylinder's
    /// job is on its way to it (the cylinder is locked until the job reports).
    pub async fn request_reprogramming(
        &self,
        sys: &LockingSystem,
        cylinder: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let mut tx = self.write_tx().await?;
        Self::lock_system(&mut tx, sys.id).await?;
        let cfg = Self::configuration_in(&mut tx, sys, &ReconcileScope::full()).await?;
        let defined = defined::compute(&cfg, now);
        let program = defined
            .cylinders
            .get(&cylinder)
            .ok_or_else(|| StoreError::Refused {
                message: format!("cylinder {cylinder} has no electronic side to program"),
            })?;
        let program = serde_json::to_string(program).map_err(corrupt)?;
        let stamp = ts(now);
        let open = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE target_id = $1 AND kind = 'cylinder_programming' AND open = 1 AND system_id = $2"))
            .bind(cylinder)
            .bind(sys.id)
            .fetch_optional(&mut *tx)
            .await?;
        let id = match open {
            Some(r) => {
                let job = job_from_row(&r)?;
                if job.state.is_out() {
                    return Err(StoreError::Refused {
                        message: format!(
                            "cylinder {cylinder} is locked: its job {} is {} and must report first",
                            job.id,
                            job.state.name()
                        ),
                    });
                }
                let mut actions = job.actions;
                if !actions.contains(&CylinderAction::Reprogram) {
                    actions.push(CylinderAction::Reprogram);
                }
                sqlx::query("UPDATE jobs SET actions = $1, program = $2, updated_at = $3 WHERE id = $4")
                    .bind(serde_json::to_string(&actions).map_err(corrupt)?)
                    .bind(&program)
                    .bind(&stamp)
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                job.id
            }
            None => sqlx::query(
                "INSERT INTO jobs (system_id, kind, target_kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at) \
                 VALUES ($1, 'cylinder_programming', 'cylinder', $2, 'created', 1, $3, '[\"reprogram\"]', 'normal', $4, $5, $5) RETURNING id",
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
        let job = Self::job_in(&mut tx, sys.id, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Request reading the audit trail of a key or cylinder.
    ///
    /// With approvals on, the request is an audit-trail job awaiting an approver
    /// (`CylinderJob::initial_state`), for a key or a cylinder alike; it blocks nothing
    /// else. A key's read is then executed at a remote PD. A cylinder's read, once
    /// approved or without approvals, is the [`CylinderAction::AuditTrail`] action of a
    /// cylinder programming job (manual §8.5, [`Store::join_cylinder_audit_trail`]).
    pub async fn request_audit_trail(
        &self,
        sys: &LockingSystem,
        target: JobTarget,
        target_id: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<JobRecord> {
        let state = CylinderJob::initial_state(true, sys.fixed.audit_trail_approvals);
        let mut tx = self.write_tx().await?;
        let id: i64 = if target == JobTarget::Cylinder && state == JobState::Created {
            Self::join_cylinder_audit_trail(&mut tx, sys, target_id, actor, now).await?
        } else {
            sqlx::query(
                "INSERT INTO jobs (system_id, kind, target_kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at) \
                 VALUES ($1, 'audit_trail', $2, $3, $4, 1, '{}', '[]', 'normal', $5, $6, $6) RETURNING id",
            )
            .bind(sys.id)
            .bind(target.as_str())
            .bind(target_id)
            .bind(state.name())
            .bind(actor.c_key_id)
            .bind(ts(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                crate::map_unique(e, "target_id", "an audit-trail request for this object")
            })?
            .try_get("id")?
        };
        let job = Self::job_in(&mut tx, sys.id, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// A cylinder's audit-trail read as a cylinder programming job (manual §8.5): it joins
    /// the cylinder's open programming job when there is one (refused while that job is on
    /// its way to the cylinder), else a new job writes the defined program, which changes
    /// nothing on an up-to-date cylinder. Returns the job's id.
    pub async fn join_cylinder_audit_trail(
        tx: &mut Tx,
        sys: &LockingSystem,
        target_id: i64,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        Self::lock_system(tx, sys.id).await?;
        let open = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE target_id = $1 AND kind = 'cylinder_programming' AND open = 1 AND system_id = $2"))
            .bind(target_id)
            .bind(sys.id)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(r) = open {
            let job = job_from_row(&r)?;
            if job.actions.contains(&CylinderAction::AuditTrail) {
                return Err(StoreError::Conflict {
                    field: "target_id".into(),
                    message: format!("job {} already reads this cylinder's audit trail", job.id),
                });
            }
            if job.state != JobState::Created {
                return Err(StoreError::Refused {
                    message: format!(
                        "cylinder {target_id} is locked: its job {} is {} and must report first",
                        job.id,
                        job.state.name()
                    ),
                });
            }
            let mut actions = job.actions;
            actions.push(CylinderAction::AuditTrail);
            sqlx::query("UPDATE jobs SET actions = $1, updated_at = $2 WHERE id = $3")
                .bind(serde_json::to_string(&actions).map_err(corrupt)?)
                .bind(ts(now))
                .bind(job.id)
                .execute(&mut **tx)
                .await?;
            return Ok(job.id);
        }
        let cfg = Self::configuration_in(tx, sys, &ReconcileScope::full()).await?;
        let defined = defined::compute(&cfg, now);
        let program = defined
            .cylinders
            .get(&target_id)
            .ok_or_else(|| StoreError::Refused {
                message: format!(
                    "cylinder {target_id} has no electronic side and keeps no audit trail"
                ),
            })?;
        Ok(sqlx::query(
            "INSERT INTO jobs (system_id, kind, target_kind, target_id, state, open, program, actions, priority, created_by, created_at, updated_at) \
             VALUES ($1, 'cylinder_programming', 'cylinder', $2, 'created', 1, $3, '[\"audit_trail\"]', 'normal', $4, $5, $5) RETURNING id",
        )
        .bind(sys.id)
        .bind(target_id)
        .bind(serde_json::to_string(program).map_err(corrupt)?)
        .bind(actor.c_key_id)
        .bind(ts(now))
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?)
    }
}

impl Store {
    /// The program a cylinder last confirmed, if any.
    pub async fn cylinder_actual(
        &self,
        system_id: i64,
        cylinder: i64,
    ) -> Result<Option<CylinderProgram>> {
        let mut conn = self.pool().acquire().await?;
        Self::cylinder_actual_in(&mut conn, system_id, cylinder).await
    }

    /// [`Store::cylinder_actual`] on a connection or in a transaction.
    pub(crate) async fn cylinder_actual_in(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        cylinder: i64,
    ) -> Result<Option<CylinderProgram>> {
        let row = sqlx::query(
            "SELECT program FROM cylinder_actual WHERE cylinder_id = $1 AND system_id = $2",
        )
        .bind(cylinder)
        .bind(system_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| serde_json::from_str(&r.try_get::<String, _>("program")?).map_err(corrupt))
            .transpose()
    }

    /// What a key remembers of its updates (default when it never confirmed one).
    pub(crate) async fn key_clock_in(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        key: i64,
    ) -> Result<lockgate_engine::state::KeyClock> {
        match sqlx::query("SELECT clock FROM key_actual WHERE key_id = $1 AND system_id = $2")
            .bind(key)
            .bind(system_id)
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(r) => serde_json::from_str(&r.try_get::<String, _>("clock")?)
                .map_err(|e| corrupt(format!("key {key} clock: {e}"))),
            None => Ok(Default::default()),
        }
    }
}
