//! Generic storage of administrable objects: create, read, update, delete, search, bulk changes.
//!
//! Each write validates the object, resolves and checks its references (kind,
//! type, domain), applies domain defaults, enforces uniqueness, then writes the
//! row, its references, its tags and an event in one transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use lockgate_model::{
    ObjectKind, Projection, Reference, Resource, ValidationErrors, event::diff,
    resource::ValidationContext, system::LockingSystem,
};
use serde::Serialize;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::{
    Edit, Result, Store, StoreError, WriteContext, events::EventDraft, fold, map_unique, parse_ts,
    sql::Sql, ts,
};

/// Who makes a change (recorded in events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The administrator's C-key; `None` for lockgate itself.
    pub c_key_id: Option<i64>,
    pub label: String,
    /// Shared by all events one operation writes (the request id for API calls).
    pub correlation_id: String,
}

impl Actor {
    /// lockgate itself (bootstrap, maintenance).
    pub fn system() -> Self {
        Actor {
            c_key_id: None,
            label: "lockgate".into(),
            correlation_id: new_correlation_id(),
        }
    }
}

/// A fresh random correlation id (32 hex characters).
pub fn new_correlation_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS entropy: fall back to the clock, still distinct per operation.
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        b[..8].copy_from_slice(&nanos.to_le_bytes());
    }
    hex::encode(b)
}

/// The domains an administrator may see; `None` means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub domains: Option<HashSet<i64>>,
    /// Where an object goes when the write names no domain and the system has no initial
    /// domain for its kind: the administrator's only own domain, if they have exactly one.
    pub home: Option<i64>,
}

impl Scope {
    pub fn all() -> Self {
        Scope {
            domains: None,
            home: None,
        }
    }

    pub fn domains(ids: impl IntoIterator<Item = i64>) -> Self {
        let domains: HashSet<i64> = ids.into_iter().collect();
        let home = (domains.len() == 1)
            .then(|| domains.iter().next().copied())
            .flatten();
        Scope {
            domains: Some(domains),
            home,
        }
    }

    /// Every domain, with the administrator's own domains deciding only where an object
    /// goes that names none (the master C-key: it sees and assigns every domain).
    pub fn every_domain_from(own: impl IntoIterator<Item = i64>) -> Self {
        Scope {
            domains: None,
            home: Scope::domains(own).home,
        }
    }

    /// Whether an object in `domain` (or in none) is visible.
    /// Whether `domain` is one of the caller's domains (an unrestricted scope holds them
    /// all; `None` is no domain, held by nobody).
    pub fn allows_exactly(&self, domain: Option<i64>) -> bool {
        match (&self.domains, domain) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(set), Some(d)) => set.contains(&d),
        }
    }

    pub fn allows(&self, domain: Option<i64>) -> bool {
        match (&self.domains, domain) {
            (None, _) | (_, None) => true,
            (Some(set), Some(d)) => set.contains(&d),
        }
    }
}

/// An object as stored, with its envelope.
#[derive(Debug, Clone, Serialize)]
pub struct Stored<R> {
    pub id: i64,
    pub kind: ObjectKind,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub body: R,
}

/// Search row: the indexed projection, plus the body when asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: i64,
    pub kind: ObjectKind,
    pub name: String,
    pub marking: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub domain_id: Option<i64>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// Sort order of a search (always ties broken by id, so pages are stable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Name,
    Marking,
    Id,
    UpdatedAt,
}

/// A search over one kind.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Name or marking prefix; `*` is a wildcard anywhere.
    pub q: Option<String>,
    /// All of these tags (case-insensitive).
    pub tags: Vec<String>,
    pub domain_id: Option<i64>,
    /// Any of these statuses.
    pub status: Vec<String>,
    pub type_: Option<String>,
    /// Show lost/broken keys and inactive persons, hidden by default.
    pub include_hidden: bool,
    pub sort: Sort,
    pub descending: bool,
    pub limit: u32,
    pub offset: u64,
    /// Return bodies with the summaries.
    pub with_body: bool,
}

/// Matches a search did not return, so "missing" objects can be explained.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HiddenCounts {
    /// Lost or broken keys / inactive persons left out (include_hidden=false).
    pub by_status: u64,
    /// Matches in domains the administrator cannot see.
    pub outside_domains: u64,
}

/// One page of search results.
#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub items: Vec<Summary>,
    pub total: u64,
    pub offset: u64,
    pub limit: u32,
    pub hidden: HiddenCounts,
}

/// Statuses hidden from default searches, per kind.
pub fn hidden_statuses(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Key | ObjectKind::CKey => &["lost", "broken"],
        ObjectKind::Employee | ObjectKind::Visitor => &["deactivated", "deleted"],
        // Manual §4.4.1: broken cylinders are left out of a default search.
        ObjectKind::Cylinder => &["broken"],
        _ => &[],
    }
}

/// Types hidden from default searches (without a type filter), per kind: manual §4.2.1
/// and §4.4.1 leave mechanical keys and cylinders out unless asked for.
pub fn hidden_types(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Key | ObjectKind::Cylinder => &["mechanical"],
        _ => &[],
    }
}

/// A referenced object's identity as the store sees it.
#[derive(Debug, Clone)]
struct Target {
    kind: ObjectKind,
    domain_id: Option<i64>,
    type_: Option<String>,
    status: Option<String>,
}

/// Resolved write: projection and the references to store.
struct Prepared {
    projection: Projection,
    refs: Vec<(String, &'static str, i64)>,
}

fn kind_label(k: ObjectKind) -> String {
    k.as_str().replace('_', " ")
}

const SELECT_COLS: &str = "id, kind, version, created_at, updated_at, body, domain_id";

fn decode<R: Resource>(row: &sqlx::any::AnyRow) -> Result<Stored<R>> {
    let kind_s: String = row.try_get("kind")?;
    let kind = ObjectKind::from_str_opt(&kind_s)
        .ok_or_else(|| StoreError::Corrupt(format!("kind '{kind_s}'")))?;
    let body: String = row.try_get("body")?;
    let id: i64 = row.try_get("id")?;
    Ok(Stored {
        id,
        kind,
        version: row.try_get("version")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("object {id}: {e}")))?,
    })
}

/// Load targets of references in chunks.
/// Which of `members` belong (by their `key_group` reference) to one of `groups`.
async fn members_of_groups(
    conn: &mut AnyConnection,
    groups: &[i64],
    members: &[i64],
) -> Result<std::collections::BTreeSet<i64>> {
    let mut out = std::collections::BTreeSet::new();
    for chunk in members.chunks(500) {
        let mut q =
            Sql::new("SELECT from_id FROM object_refs WHERE relation = 'key_group' AND to_id IN (");
        q.bind_list(groups.iter().copied())
            .push(") AND from_id IN (")
            .bind_list(chunk.iter().copied())
            .push(")");
        for row in q.fetch_all(&mut *conn).await? {
            out.insert(row.try_get::<i64, _>("from_id")?);
        }
    }
    Ok(out)
}

async fn load_targets(
    conn: &mut AnyConnection,
    system_id: i64,
    ids: &[i64],
) -> Result<HashMap<i64, Target>> {
    let mut out = HashMap::new();
    let mut unique: Vec<i64> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    for chunk in unique.chunks(500) {
        let mut q =
            Sql::new("SELECT id, kind, domain_id, type, status FROM objects WHERE system_id = ");
        q.bind(system_id)
            .push(" AND id IN (")
            .bind_list(chunk.iter().copied())
            .push(")");
        for row in q.fetch_all(&mut *conn).await? {
            let kind_s: String = row.try_get("kind")?;
            if let Some(kind) = ObjectKind::from_str_opt(&kind_s) {
                out.insert(
                    row.try_get("id")?,
                    Target {
                        kind,
                        domain_id: scope_domain(
                            kind,
                            row.try_get("id")?,
                            row.try_get("domain_id")?,
                        ),
                        type_: row.try_get("type")?,
                        status: row.try_get("status")?,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The domain that decides whether an administrator sees an object: a domain is
/// visible to those who administer it; other objects by the domain they are in.
fn scope_domain(kind: ObjectKind, id: i64, domain_id: Option<i64>) -> Option<i64> {
    if kind == ObjectKind::Domain {
        Some(id)
    } else {
        domain_id
    }
}

/// Kinds an administrator's domains restrict.
fn is_scoped(kind: ObjectKind) -> bool {
    kind.has_domain() || kind == ObjectKind::Domain
}

fn initial_domain(kind: ObjectKind, sys: &LockingSystem) -> Option<i64> {
    let s = &sys.settings;
    match kind {
        ObjectKind::Employee | ObjectKind::Visitor => s.initial_person_domain,
        ObjectKind::Key => s.initial_key_domain,
        // Manual §6.6.3: cylinder groups, access profiles and temporary access groups
        // go to the initial cylinder domain too.
        ObjectKind::Cylinder
        | ObjectKind::CylinderGroup
        | ObjectKind::AccessProfile
        | ObjectKind::TemporaryAccessGroup => s.initial_cylinder_domain,
        _ => None,
    }
}

impl Store {
    /// Validate, resolve references and domain, and check uniqueness of a body about to be written.
    async fn prepare<R: Resource>(
        conn: &mut AnyConnection,
        sys: &LockingSystem,
        kind: ObjectKind,
        scope: &Scope,
        body: &mut R,
        self_id: Option<i64>,
    ) -> Result<Prepared> {
        let ctx = ValidationContext {
            fixed: &sys.fixed,
            settings: &sys.settings,
        };
        body.validate(&ctx)?;
        // Manual §8.1.2: a key group on a cylinder access list replaces the individual
        // entries of its keys, so removing the group later revokes them all.
        if let Some((groups, members)) = body.grouped_members()
            && !groups.is_empty()
            && !members.is_empty()
        {
            let redundant = members_of_groups(conn, &groups, &members).await?;
            if !redundant.is_empty() {
                body.drop_members(&redundant);
            }
        }
        let refs: Vec<Reference> = body.references();
        let ids: Vec<i64> = refs.iter().map(|r| r.id).collect();
        let targets = load_targets(conn, sys.id, &ids).await?;
        let mut errors = ValidationErrors::new();

        // A cylinder in a group takes the group's domain.
        for r in refs.iter().filter(|r| r.takes_domain) {
            if let Some(Target {
                kind: k,
                domain_id: Some(d),
                ..
            }) = targets.get(&r.id)
                && *k == r.target
            {
                body.set_domain(*d);
            }
        }
        let mut projection = body.projection();
        if kind.has_domain() {
            let d = projection.domain_id.unwrap_or(0);
            if d == 0 {
                // The system's initial domain for the kind, else the caller's only domain.
                match initial_domain(kind, sys)
                    .filter(|d| scope.allows(Some(*d)))
                    .or(scope.home)
                {
                    Some(init) => {
                        body.set_domain(init);
                        projection.domain_id = Some(init);
                    }
                    None => errors.push("domain_id", "is required: name one of your domains"),
                }
            }
            if let Some(d) = projection.domain_id.filter(|d| *d != 0) {
                let domain = load_targets(conn, sys.id, &[d]).await?;
                match domain.get(&d) {
                    Some(t) if t.kind == ObjectKind::Domain && scope.allows(Some(d)) => {}
                    _ => errors.push("domain_id", format!("no domain {d} among your domains")),
                }
            }
        } else {
            projection.domain_id = None;
        }

        let mut stored_refs = Vec::with_capacity(refs.len());
        for r in &refs {
            let expected = if r.any_person {
                "person".to_string()
            } else {
                kind_label(r.target)
            };
            let Some(t) = targets.get(&r.id).filter(|t| scope.allows(t.domain_id)) else {
                errors.push(&r.field, format!("no {expected} {}", r.id));
                continue;
            };
            let kind_ok = if r.any_person {
                t.kind.is_person()
            } else {
                t.kind == r.target
            };
            if !kind_ok {
                errors.push(
                    &r.field,
                    format!("{} is a {}, not a {expected}", r.id, kind_label(t.kind)),
                );
                continue;
            }
            if !r.allowed_types.is_empty()
                && !t
                    .type_
                    .as_deref()
                    .is_some_and(|ty| r.allowed_types.contains(&ty))
            {
                errors.push(
                    &r.field,
                    format!(
                        "{expected} {} is of type {}; expected {}",
                        r.id,
                        t.type_.as_deref().unwrap_or("none"),
                        r.allowed_types.join(" or ")
                    ),
                );
                continue;
            }
            if t.kind.is_person() && t.status.as_deref().is_some_and(|s| s != "active") {
                errors.push(
                    &r.field,
                    format!(
                        "person {} is {}",
                        r.id,
                        t.status.as_deref().unwrap_or("inactive")
                    ),
                );
                continue;
            }
            if r.same_domain && t.domain_id != projection.domain_id {
                errors.push(
                    &r.field,
                    format!("{expected} {} is in another domain", r.id),
                );
                continue;
            }
            if Some(r.id) == self_id {
                errors.push(&r.field, "an object cannot refer to itself");
                continue;
            }
            stored_refs.push((r.field.clone(), r.relation, r.id));
        }

        // Uniqueness: marking / identifier and unique names, case-insensitive.
        let self_id_or = self_id.unwrap_or(0);
        if let Some(m) = &projection.marking {
            let hit = sqlx::query(
                "SELECT id FROM objects WHERE system_id = $1 AND kind = $2 AND marking_fold = $3 AND id <> $4",
            )
            .bind(sys.id)
            .bind(kind.as_str())
            .bind(fold(m))
            .bind(self_id_or)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = hit {
                let other: i64 = row.try_get("id")?;
                let field = if kind.is_person() {
                    "identifier"
                } else {
                    "marking"
                };
                errors.push(
                    field,
                    format!("'{m}' is already used by {} {other}", kind_label(kind)),
                );
            }
        }
        if projection.unique_name {
            let hit = sqlx::query(
                "SELECT id FROM objects WHERE system_id = $1 AND kind = $2 AND unique_name = $3 AND id <> $4",
            )
            .bind(sys.id)
            .bind(kind.as_str())
            .bind(fold(&projection.name))
            .bind(self_id_or)
            .fetch_optional(&mut *conn)
            .await?;
            if hit.is_some() {
                errors.push(
                    "name",
                    format!(
                        "a {} named '{}' already exists",
                        kind_label(kind),
                        projection.name
                    ),
                );
            }
        }
        if let (Some(single), Some(ty)) = (R::SINGLETON_TYPE, projection.type_)
            && single == ty
        {
            let n: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM objects WHERE system_id = $1 AND kind = $2 AND type = $3 AND id <> $4",
                )
                .bind(sys.id)
                .bind(kind.as_str())
                .bind(ty)
                .bind(self_id_or)
                .fetch_one(&mut *conn)
                .await?
                .try_get("n")?;
            if n > 0 {
                errors.push(
                    "kind",
                    format!("a locking system has exactly one {ty} {}", kind_label(kind)),
                );
            }
        }
        errors.into_result()?;
        Ok(Prepared {
            projection,
            refs: stored_refs,
        })
    }

    async fn write_refs_and_tags(
        conn: &mut AnyConnection,
        sys_id: i64,
        kind: ObjectKind,
        id: i64,
        prepared: &Prepared,
        tags: &[String],
    ) -> Result<()> {
        sqlx::query("DELETE FROM object_refs WHERE from_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let mut seen = HashSet::new();
        let refs: Vec<_> = prepared
            .refs
            .iter()
            .filter(|(_, rel, to)| seen.insert((*rel, *to)))
            .collect();
        for chunk in refs.chunks(300) {
            let mut q = Sql::new("INSERT INTO object_refs (from_id, relation, to_id)");
            q.values(chunk.iter(), |q, (_, rel, to)| {
                q.bind(id).bind(*rel).bind(*to);
            });
            q.execute(&mut *conn).await?;
        }
        sqlx::query("DELETE FROM object_tags WHERE object_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let mut seen = HashSet::new();
        let folded: Vec<String> = tags
            .iter()
            .map(|t| fold(t))
            .filter(|t| seen.insert(t.clone()))
            .collect();
        if !folded.is_empty() {
            let mut q = Sql::new("INSERT INTO object_tags (object_id, system_id, kind, tag_fold)");
            q.values(folded, |q, t| {
                q.bind(id).bind(sys_id).bind(kind.as_str()).bind(t);
            });
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Create an object inside an open transaction; `trusted` keeps lockgate-maintained fields as given.
    pub(crate) async fn create_in<R: Resource>(
        tx: &mut Transaction<'static, Any>,
        sys: &LockingSystem,
        kind: ObjectKind,
        scope: &Scope,
        actor: &Actor,
        mut body: R,
        trusted: bool,
    ) -> Result<Stored<R>> {
        if !trusted {
            body.keep_system_fields(None);
        }
        let prepared = Self::prepare(tx, sys, kind, scope, &mut body, None).await?;
        let after = serde_json::to_value(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Self::check_rules_across_objects(tx, sys.id, kind, None, None, &after).await?;
        let now = Utc::now();
        let json = serde_json::to_string(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let p = &prepared.projection;
        let row = sqlx::query(
            "INSERT INTO objects (system_id, kind, domain_id, name, name_fold, marking, marking_fold, unique_name, \
             status, type, body, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12) RETURNING id",
        )
        .bind(sys.id)
        .bind(kind.as_str())
        .bind(p.domain_id)
        .bind(&p.name)
        .bind(fold(&p.name))
        .bind(p.marking.clone())
        .bind(p.marking.as_deref().map(fold))
        .bind(p.unique_name.then(|| fold(&p.name)))
        .bind(p.status)
        .bind(p.type_)
        .bind(&json)
        .bind(ts(now))
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| map_unique(e, "marking", p.marking.as_deref().unwrap_or(&p.name)))?;
        let id: i64 = row.try_get("id")?;
        Self::write_refs_and_tags(tx, sys.id, kind, id, &prepared, body.tags()).await?;
        let after = serde_json::to_value(&body).ok();
        EventDraft::new(
            kind,
            Some(id),
            &p.name,
            "created",
            diff(None, after.as_ref()),
        )
        .insert(tx, sys.id, actor)
        .await?;
        Ok(Stored {
            id,
            kind,
            version: 1,
            created_at: now,
            updated_at: now,
            body,
        })
    }

    /// Create an object.
    pub async fn create<R: Resource>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        body: R,
    ) -> Result<Stored<R>> {
        let mut tx = self.write_tx().await?;
        let stored =
            Self::create_in(&mut tx, &cx.system, kind, &cx.scope, &cx.actor, body, false).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Create many objects in one transaction, all or nothing (bulk loads, extension imports).
    /// An invalid object fails the whole batch; its errors are prefixed with `items[i]`.
    pub async fn create_batch<R: Resource>(
        &self,
        sys: &LockingSystem,
        kind: ObjectKind,
        scope: &Scope,
        actor: &Actor,
        bodies: Vec<R>,
    ) -> Result<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let mut ids = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            match Self::create_in(&mut tx, sys, kind, scope, actor, body, false).await {
                Ok(s) => ids.push(s.id),
                Err(StoreError::Invalid(v)) => {
                    let mut e = ValidationErrors::new();
                    e.extend_prefixed(&format!("items[{i}]"), v);
                    return Err(e.into());
                }
                Err(other) => return Err(other),
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Read one object visible in `scope`.
    pub async fn get<R: Resource>(
        &self,
        sys_id: i64,
        kind: ObjectKind,
        id: i64,
        scope: &Scope,
    ) -> Result<Stored<R>> {
        let mut conn = self.pool().acquire().await?;
        Self::get_in(&mut conn, sys_id, kind, id, scope).await
    }

    pub(crate) async fn get_in<R: Resource>(
        conn: &mut AnyConnection,
        sys_id: i64,
        kind: ObjectKind,
        id: i64,
        scope: &Scope,
    ) -> Result<Stored<R>> {
        let row = sqlx::query(&format!(
            "SELECT {SELECT_COLS} FROM objects WHERE id = $1 AND system_id = $2 AND kind = $3"
        ))
        .bind(id)
        .bind(sys_id)
        .bind(kind.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found(kind, id))?;
        let domain: Option<i64> = row.try_get("domain_id")?;
        if !scope.allows(scope_domain(kind, id, domain)) {
            return Err(StoreError::not_found(kind, id));
        }
        decode(&row)
    }

    /// Apply `change` to an object inside an open transaction and write it back
    /// (optimistic on `version`; `expected_version` adds an If-Match check).
    /// Rules that look beyond the object written (`before` is `None` on creation):
    ///
    /// * a C-key is handed out to an employee with an email address (manual §6.11.7: the
    ///   enrolment instructions are emailed to them);
    /// * at most one generation 1 wall PD is in key-updater mode (FAQ 001, key firmware
    ///   update across generations).
    async fn check_rules_across_objects(
        tx: &mut Transaction<'static, Any>,
        system_id: i64,
        kind: ObjectKind,
        id: Option<i64>,
        before: Option<&serde_json::Value>,
        after: &serde_json::Value,
    ) -> Result<()> {
        let changed = |field: &str| before.is_none_or(|b| b[field] != after[field]);
        match kind {
            ObjectKind::CKey
                if after["status"] == "handed_out"
                    && (changed("status") || changed("holder_id")) =>
            {
                let holder = after["holder_id"].as_i64().ok_or_else(|| {
                    ValidationErrors::single("holder_id", "a handed-out C-key needs its holder")
                })?;
                let row =
                    sqlx::query("SELECT kind, body FROM objects WHERE id = $1 AND system_id = $2")
                        .bind(holder)
                        .bind(system_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                let email = match row {
                    Some(r) if r.try_get::<String, _>("kind")? == "employee" => {
                        let body: serde_json::Value =
                            serde_json::from_str(&r.try_get::<String, _>("body")?)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        body["email"].as_str().is_some_and(|e| !e.trim().is_empty())
                    }
                    _ => {
                        return Err(ValidationErrors::single(
                            "holder_id",
                            format!("no employee {holder}: C-keys are handed out to employees"),
                        )
                        .into());
                    }
                };
                if !email {
                    return Err(ValidationErrors::single(
                        "holder_id",
                        format!(
                            "employee {holder} has no email address; a C-key is handed out only to an employee with one"
                        ),
                    )
                    .into());
                }
            }
            ObjectKind::RemotePd
                if after["type"] == "wall_gen1"
                    && after["settings"]["key_updater_mode"] == true
                    && (before.is_none_or(|b| b["settings"]["key_updater_mode"] != true)) =>
            {
                let rows = sqlx::query(
                    "SELECT id, body FROM objects WHERE system_id = $1 AND kind = 'remote_pd' AND type = 'wall_gen1' AND id <> $2",
                )
                .bind(system_id)
                .bind(id.unwrap_or(0))
                .fetch_all(&mut **tx)
                .await?;
                for r in rows {
                    let body: serde_json::Value =
                        serde_json::from_str(&r.try_get::<String, _>("body")?)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if body["settings"]["key_updater_mode"] == true {
                        return Err(StoreError::Conflict {
                            field: "settings.key_updater_mode".into(),
                            message: format!(
                                "generation 1 wall PD {} is already in key-updater mode; only one may be at a time",
                                r.try_get::<i64, _>("id")?
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What a C-key's status change does beyond the C-key: once it leaves its holder's
    /// hands (handed in, lost, broken, or handed to someone else), the tokens issued to it
    /// stop working (manual §6.11.8); lost, the cylinder jobs assigned to it for pick-up go
    /// back to the pool (§6.11.9). Both in the change's transaction.
    async fn status_change_effects(
        tx: &mut Transaction<'static, Any>,
        system_id: i64,
        kind: ObjectKind,
        id: i64,
        before: &serde_json::Value,
        after: &serde_json::Value,
        now: chrono::DateTime<Utc>,
    ) -> Result<()> {
        if kind != ObjectKind::CKey {
            return Ok(());
        }
        // Leaving the holder's hands (hand-in, lost, broken) or changing hands: the tokens
        // issued while it was handed out stop working.
        // Architecture invariant: every credential of a C-key (tokens, SSO sessions, the SSO
        // identity) ends when the C-key leaves its holder.
        if before["status"] == "handed_out"
            && (after["status"] != "handed_out" || before["holder_id"] != after["holder_id"])
        {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE c_key_id = $2 AND system_id = $3 AND revoked_at IS NULL",
            )
            .bind(ts(now))
            .bind(id)
            .bind(system_id)
            .execute(&mut **tx)
            .await?;
            // So do its SSO sessions, and its SSO identity: the next holder enrols their own.
            sqlx::query(
                "UPDATE admin_sessions SET ended_at = $1 WHERE c_key_id = $2 AND system_id = $3 AND ended_at IS NULL",
            )
            .bind(ts(now))
            .bind(id)
            .bind(system_id)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM sso_identities WHERE c_key_id = $1 AND system_id = $2")
                .bind(id)
                .bind(system_id)
                .execute(&mut **tx)
                .await?;
        }
        if after["status"] == "lost" && before["status"] != "lost" {
            sqlx::query(
                "UPDATE jobs SET assigned_to = NULL, updated_at = $1 WHERE assigned_to = $2 AND system_id = $3 AND open = 1",
            )
            .bind(ts(now))
            .bind(id)
            .bind(system_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Refuse editing what the hardware holds of an object while one of its jobs is on its
    /// way (loaded onto a C-key or carried by a key): the job would write a program the
    /// edit no longer matches, and nothing could replace it until it reports.
    async fn refuse_if_locked(
        tx: &mut Transaction<'static, Any>,
        system_id: i64,
        id: i64,
    ) -> Result<()> {
        if let Some(r) = sqlx::query(
            "SELECT id, state, loaded_on, carried_by FROM jobs WHERE target_id = $1 AND system_id = $2 AND open = 1 AND state IN ('loaded', 'carried') LIMIT 1",
        )
        .bind(id)
        .bind(system_id)
        .fetch_optional(&mut **tx)
        .await?
        {
            let job: i64 = r.try_get("id")?;
            let by = match r.try_get::<Option<i64>, _>("loaded_on")? {
                Some(c) => format!("loaded onto C-key {c}"),
                None => format!("carried by key {}", r.try_get::<Option<i64>, _>("carried_by")?.unwrap_or_default()),
            };
            return Err(StoreError::Refused {
                message: format!(
                    "the cylinder is locked: its programming job {job} is {by}; its authorisation settings cannot be edited until that job reports"
                ),
            });
        }
        Ok(())
    }

    pub(crate) async fn update_in<R: Resource, F>(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        edit: Edit<'_>,
        change: F,
    ) -> Result<Stored<R>>
    where
        F: FnOnce(&mut R) -> Result<()>,
    {
        let Edit {
            expected_version,
            action,
            trusted,
        } = edit;
        let (sys, scope, actor) = (&cx.system, &cx.scope, &cx.actor);
        let current: Stored<R> = Self::get_in(tx, sys.id, kind, id, scope).await?;
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            });
        }
        let mut body = current.body.clone();
        change(&mut body)?;
        if !trusted {
            body.keep_system_fields(Some(&current.body));
            body.check_update(&current.body)?;
        }
        let prepared = Self::prepare(tx, sys, kind, scope, &mut body, Some(id)).await?;
        let before = serde_json::to_value(&current.body).ok();
        let after = serde_json::to_value(&body).ok();
        let changes = diff(before.as_ref(), after.as_ref());
        if changes.as_object().is_some_and(|m| m.is_empty()) {
            return Ok(current); // nothing changed: no write, no event
        }
        if changes
            .as_object()
            .is_some_and(|m| m.keys().any(|f| R::PROGRAMMED_FIELDS.contains(&f.as_str())))
        {
            Self::refuse_if_locked(tx, sys.id, id).await?;
        }
        if let (Some(b), Some(a)) = (&before, &after) {
            Self::check_rules_across_objects(tx, sys.id, kind, Some(id), Some(b), a).await?;
            Self::status_change_effects(tx, sys.id, kind, id, b, a, cx.now).await?;
        }
        let now = cx.now;
        let json = serde_json::to_string(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let p = &prepared.projection;
        let res = sqlx::query(
            "UPDATE objects SET domain_id = $1, name = $2, name_fold = $3, marking = $4, marking_fold = $5, \
             unique_name = $6, status = $7, type = $8, body = $9, version = version + 1, updated_at = $10 \
             WHERE id = $11 AND system_id = $12 AND version = $13",
        )
        .bind(p.domain_id)
        .bind(&p.name)
        .bind(fold(&p.name))
        .bind(p.marking.clone())
        .bind(p.marking.as_deref().map(fold))
        .bind(p.unique_name.then(|| fold(&p.name)))
        .bind(p.status)
        .bind(p.type_)
        .bind(&json)
        .bind(ts(now))
        .bind(id)
        .bind(sys.id)
        .bind(current.version)
        .execute(&mut **tx)
        .await
        .map_err(|e| map_unique(e, "marking", p.marking.as_deref().unwrap_or(&p.name)))?;
        if res.rows_affected() != 1 {
            return Err(StoreError::VersionMismatch {
                current: current.version + 1,
            });
        }
        Self::write_refs_and_tags(tx, sys.id, kind, id, &prepared, body.tags()).await?;
        EventDraft::new(kind, Some(id), &p.name, action, changes)
            .insert(tx, sys.id, actor)
            .await?;
        // Manual §4.4.9: a broken cylinder back in operation gets a programming job. What
        // it holds is unknown after the repair, so its actual state is forgotten and the
        // reconciliation after this change writes its whole defined program.
        if kind == ObjectKind::Cylinder
            && current.body.projection().status == Some("broken")
            && p.status != Some("broken")
        {
            sqlx::query("DELETE FROM cylinder_actual WHERE cylinder_id = $1 AND system_id = $2")
                .bind(id)
                .bind(sys.id)
                .execute(&mut **tx)
                .await?;
        }
        if kind == ObjectKind::CylinderGroup
            && let Some(domain) = p
                .domain_id
                .filter(|d| Some(*d) != current.body.projection().domain_id)
        {
            Box::pin(Self::move_group_members(tx, cx, id, domain)).await?;
        }
        Ok(Stored {
            id,
            kind,
            version: current.version + 1,
            created_at: current.created_at,
            updated_at: now,
            body,
        })
    }

    /// Change one object. Concurrent writers never lose each other's changes:
    /// the write is conditional on the version read in the same transaction.
    pub async fn update<R: Resource, F>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
        change: F,
    ) -> Result<Stored<R>>
    where
        F: FnOnce(&mut R) -> Result<()>,
    {
        let mut tx = self.write_tx().await?;
        let s = Self::update_in(
            &mut tx,
            cx,
            kind,
            id,
            Edit {
                expected_version,
                action: "updated",
                trusted: false,
            },
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Apply the same change to many objects, all or nothing. Errors name the failing id.
    pub async fn update_many<R: Resource, F>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        ids: &[i64],
        action: &str,
        change: F,
    ) -> Result<Vec<Stored<R>>>
    where
        F: Fn(&mut R) -> Result<()>,
    {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let r = Self::update_in(
                &mut tx,
                cx,
                kind,
                *id,
                Edit {
                    expected_version: None,
                    action,
                    trusted: false,
                },
                &change,
            )
            .await;
            match r {
                Ok(s) => out.push(s),
                Err(StoreError::Invalid(v)) => {
                    let mut e = ValidationErrors::new();
                    e.extend_prefixed(&format!("ids[{i}]"), v);
                    return Err(e.into());
                }
                Err(StoreError::NotFound { .. }) => {
                    return Err(ValidationErrors::single(
                        format!("ids[{i}]"),
                        format!("no {} {id}", kind_label(kind)),
                    )
                    .into());
                }
                Err(other) => return Err(other),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Delete an object that nothing refers to.
    pub async fn delete<R: Resource>(
        &self,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
        detach: bool,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if detach {
            if kind != ObjectKind::AccessProfile {
                return Err(ValidationErrors::single(
                    "detach",
                    "only an access profile is detached from its keys, persons and groups on deletion",
                )
                .into());
            }
            Self::detach_access_profile(&mut tx, cx, id).await?;
        }
        Self::delete_in::<R>(&mut tx, cx, kind, id, expected_version, "deleted").await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn delete_in<R: Resource>(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        kind: ObjectKind,
        id: i64,
        expected_version: Option<i64>,
        action: &str,
    ) -> Result<Stored<R>> {
        let (sys, scope, actor) = (&cx.system, &cx.scope, &cx.actor);
        let current: Stored<R> = Self::get_in(tx, sys.id, kind, id, scope).await?;
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            });
        }
        current
            .body
            .check_delete()
            .map_err(|message| StoreError::Refused { message })?;
        if kind == ObjectKind::Domain {
            Self::detach_domain(tx, cx, id).await?;
        }
        let users = Self::referrers_in(tx, id, 5).await?;
        if !users.is_empty() {
            let list: Vec<String> = users
                .iter()
                .map(|(k, i, n)| format!("{} {i} '{n}'", kind_label(*k)))
                .collect();
            return Err(StoreError::InUse {
                message: format!(
                    "{} {id} is still used by {}",
                    kind_label(kind),
                    list.join(", ")
                ),
            });
        }
        let name = current.body.projection().name;
        sqlx::query("DELETE FROM objects WHERE id = $1 AND system_id = $2")
            .bind(id)
            .bind(sys.id)
            .execute(&mut **tx)
            .await?;
        EventDraft::new(kind, Some(id), &name, action, serde_json::json!({}))
            .insert(tx, sys.id, actor)
            .await?;
        Ok(current)
    }

    /// Manual §4.5.2 / §6.6.8: the cylinders of a cylinder group move with it to another
    /// domain, in the group's transaction.
    async fn move_group_members(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        group: i64,
        domain: i64,
    ) -> Result<()> {
        let rows = sqlx::query(
            "SELECT r.from_id FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE r.to_id = $1 AND r.relation = 'cylinder_group' AND o.kind = 'cylinder' AND o.system_id = $2",
        )
        .bind(group)
        .bind(cx.system.id)
        .fetch_all(&mut **tx)
        .await?;
        let unscoped = cx.unscoped();
        for r in rows {
            let cylinder: i64 = r.try_get("from_id")?;
            Self::update_in(
                tx,
                &unscoped,
                ObjectKind::Cylinder,
                cylinder,
                Edit {
                    expected_version: None,
                    action: "domain_changed_with_group",
                    trusted: true,
                },
                |c: &mut lockgate_model::cylinder::Cylinder| {
                    c.domain_id = domain;
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Manual §4.6.2: an access profile deleted with confirmation leaves the persons, keys
    /// and temporary access groups that held it, in the deletion's transaction.
    async fn detach_access_profile(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        profile: i64,
    ) -> Result<()> {
        use lockgate_model::{access_profile::TemporaryAccessGroup, key::Key, person::Person};
        // The profile must be visible to the caller before anything is detached.
        let _: Stored<lockgate_model::access_profile::AccessProfile> = Self::get_in(
            tx,
            cx.system.id,
            ObjectKind::AccessProfile,
            profile,
            &cx.scope,
        )
        .await?;
        let rows = sqlx::query(
            "SELECT o.id, o.kind FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE r.to_id = $1 AND o.system_id = $2 AND r.relation IN ('access_profile', 'group_profile')",
        )
        .bind(profile)
        .bind(cx.system.id)
        .fetch_all(&mut **tx)
        .await?;
        let edit = || Edit {
            expected_version: None,
            action: "access_profile_removed",
            trusted: true,
        };
        let unscoped = cx.unscoped();
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let kind_s: String = r.try_get("kind")?;
            match ObjectKind::from_str_opt(&kind_s) {
                Some(k @ (ObjectKind::Employee | ObjectKind::Visitor)) => {
                    Self::update_in(tx, &unscoped, k, id, edit(), |p: &mut Person| {
                        p.access_profile_ids.retain(|x| *x != profile);
                        Ok(())
                    })
                    .await?;
                }
                Some(ObjectKind::Key) => {
                    Self::update_in(tx, &unscoped, ObjectKind::Key, id, edit(), |k: &mut Key| {
                        k.access_profile_ids.retain(|x| *x != profile);
                        Ok(())
                    })
                    .await?;
                }
                Some(ObjectKind::TemporaryAccessGroup) => {
                    Self::update_in(
                        tx,
                        &unscoped,
                        ObjectKind::TemporaryAccessGroup,
                        id,
                        edit(),
                        |t: &mut TemporaryAccessGroup| {
                            t.access_profile_ids.retain(|x| *x != profile);
                            Ok(())
                        },
                    )
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Remove a domain from the C-keys that administer it (deleting an empty domain).
    async fn detach_domain(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        domain: i64,
    ) -> Result<()> {
        let rows = sqlx::query(
            "SELECT from_id FROM object_refs WHERE to_id = $1 AND relation = 'administers'",
        )
        .bind(domain)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            let c_key: i64 = r.try_get("from_id")?;
            Self::update_in(
                tx,
                &cx.unscoped(),
                ObjectKind::CKey,
                c_key,
                Edit {
                    expected_version: None,
                    action: "domain_removed",
                    trusted: true,
                },
                |c: &mut lockgate_model::ckey::CKey| {
                    c.domain_ids.retain(|d| *d != domain);
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Up to `limit` objects referring to `id` (through a reference or as their domain).
    pub(crate) async fn referrers_in(
        conn: &mut AnyConnection,
        id: i64,
        limit: i64,
    ) -> Result<Vec<(ObjectKind, i64, String)>> {
        let rows = sqlx::query(
            "SELECT o.id, o.kind, o.name FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE r.to_id = $1 \
             UNION SELECT o.id, o.kind, o.name FROM objects o WHERE o.domain_id = $1 \
             ORDER BY 1 LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let k: String = r.try_get("kind")?;
            if let Some(kind) = ObjectKind::from_str_opt(&k) {
                out.push((kind, r.try_get("id")?, r.try_get("name")?));
            }
        }
        Ok(out)
    }

    /// Search one kind with filters, stable order and pagination.
    pub async fn search(
        &self,
        sys_id: i64,
        kind: ObjectKind,
        scope: &Scope,
        q: &SearchQuery,
    ) -> Result<SearchPage> {
        let mut conn = self.pool().acquire().await?;
        // Explicit status or type filters show hidden statuses or types too.
        let hidden = Hidden {
            statuses: if q.status.is_empty() {
                hidden_statuses(kind)
            } else {
                &[]
            },
            types: if q.type_.is_none() {
                hidden_types(kind)
            } else {
                &[]
            },
        };
        let hide = (!q.include_hidden && !hidden.is_empty()).then_some(Visibility::Hide);
        let filters = Filters {
            sys_id,
            kind,
            scope,
            q,
            hidden,
        };

        let mut sql = Sql::new(
            "SELECT id, kind, name, marking, status, type, domain_id, version, updated_at",
        );
        if q.with_body {
            sql.push(", body");
        }
        filters.push(&mut sql, true, hide);
        let dir = if q.descending { "DESC" } else { "ASC" };
        sql.push(&match q.sort {
            Sort::Name => format!(" ORDER BY name_fold {dir}, id {dir}"),
            Sort::Marking => format!(" ORDER BY marking_fold {dir}, id {dir}"),
            Sort::Id => format!(" ORDER BY id {dir}"),
            Sort::UpdatedAt => format!(" ORDER BY updated_at {dir}, id {dir}"),
        });
        sql.push(" LIMIT ")
            .bind(i64::from(q.limit))
            .push(" OFFSET ")
            .bind(i64::try_from(q.offset).unwrap_or(i64::MAX));
        let rows = sql.fetch_all(&mut conn).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let body = if q.with_body {
                let b: String = r.try_get("body")?;
                Some(serde_json::from_str(&b).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            } else {
                None
            };
            items.push(Summary {
                id: r.try_get("id")?,
                kind,
                name: r.try_get("name")?,
                marking: r.try_get("marking")?,
                status: r.try_get("status")?,
                type_: r.try_get("type")?,
                domain_id: r.try_get("domain_id")?,
                version: r.try_get("version")?,
                updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
                body,
            });
        }
        let short_page = q.offset == 0 && items.len() < q.limit as usize;
        let mut hidden_counts = HiddenCounts::default();
        let total = if hide.is_some() && !hidden.is_empty() {
            // One pass counts both what is shown and what the hidden statuses left out.
            let (shown, left_out) = filters.count_shown_and_hidden(&mut conn).await?;
            hidden_counts.by_status = left_out;
            shown
        } else if short_page {
            items.len() as u64
        } else {
            filters.count(&mut conn, true, hide).await?
        };
        if is_scoped(kind) && scope.domains.is_some() {
            hidden_counts.outside_domains = filters.count(&mut conn, false, hide).await?;
        }
        Ok(SearchPage {
            items,
            total,
            offset: q.offset,
            limit: q.limit,
            hidden: hidden_counts,
        })
    }

    /// All objects of a kind (for exports and bootstrap), in id order, bounded by `limit`.
    pub async fn list_all<R: Resource>(
        &self,
        sys_id: i64,
        kind: ObjectKind,
        scope: &Scope,
        limit: i64,
    ) -> Result<Vec<Stored<R>>> {
        let mut conn = self.pool().acquire().await?;
        Self::list_all_in(&mut conn, sys_id, kind, scope, limit).await
    }

    /// [`Store::list_all`] on `conn` (inside a transaction).
    pub async fn list_all_in<R: Resource>(
        conn: &mut sqlx::AnyConnection,
        sys_id: i64,
        kind: ObjectKind,
        scope: &Scope,
        limit: i64,
    ) -> Result<Vec<Stored<R>>> {
        let rows = sqlx::query(&format!(
            "SELECT {SELECT_COLS} FROM objects WHERE system_id = $1 AND kind = $2 ORDER BY id LIMIT $3"
        ))
        .bind(sys_id)
        .bind(kind.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let d: Option<i64> = r.try_get("domain_id")?;
            if scope.allows(scope_domain(kind, r.try_get("id")?, d)) {
                out.push(decode(r)?);
            }
        }
        Ok(out)
    }

    /// One page of the objects of a kind, in id order: those after `after_id`, at most
    /// `limit` (keyset paging: a reader of a large system holds one page at a time).
    pub async fn list_page<R: Resource>(
        &self,
        sys_id: i64,
        kind: ObjectKind,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Stored<R>>> {
        let rows = sqlx::query(&format!(
            "SELECT {SELECT_COLS} FROM objects WHERE system_id = $1 AND kind = $2 AND id > $3 \
             ORDER BY id LIMIT $4"
        ))
        .bind(sys_id)
        .bind(kind.as_str())
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The markings (a person's identifier) of the objects `ids` of the system that have one.
    pub async fn markings_of(
        &self,
        sys_id: i64,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, String>> {
        let mut out = std::collections::HashMap::new();
        let mut conn = self.pool().acquire().await?;
        for chunk in ids.chunks(500) {
            let mut q = Sql::new("SELECT id, marking FROM objects WHERE system_id = ");
            q.bind(sys_id)
                .push(" AND marking IS NOT NULL AND id IN (")
                .bind_list(chunk.iter().copied())
                .push(")");
            for r in q.fetch_all(&mut conn).await? {
                out.insert(r.try_get("id")?, r.try_get("marking")?);
            }
        }
        Ok(out)
    }

    /// The persons (employees and visitors) of the system whose identifier is exactly
    /// `identifier` (looked up by the folded marking column).
    pub async fn persons_with_identifier(&self, sys_id: i64, identifier: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT id, marking FROM objects WHERE system_id = $1 AND kind IN ('employee', 'visitor') \
             AND marking_fold = $2 ORDER BY id",
        )
        .bind(sys_id)
        .bind(crate::fold(identifier))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            if r.try_get::<Option<String>, _>("marking")?.as_deref() == Some(identifier) {
                out.push(r.try_get("id")?);
            }
        }
        Ok(out)
    }

    /// The keys referring to one of `persons` as holder (or pre-ordered for), in id order,
    /// at most `limit`.
    pub async fn keys_of_persons<R: Resource>(
        &self,
        sys_id: i64,
        persons: &[i64],
        limit: i64,
    ) -> Result<Vec<Stored<R>>> {
        if persons.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool().acquire().await?;
        let cols = SELECT_COLS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut q = Sql::new(&format!(
            "SELECT DISTINCT {cols} FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE r.relation = 'holder' AND o.kind = 'key' AND o.system_id = "
        ));
        q.bind(sys_id)
            .push(" AND r.to_id IN (")
            .bind_list(persons.iter().copied())
            .push(") ORDER BY o.id LIMIT ")
            .bind(limit);
        q.fetch_all(&mut conn).await?.iter().map(decode).collect()
    }

    /// Whether an object of `kind` exists in the system and in `scope`.
    pub async fn kind_visible(
        &self,
        sys_id: i64,
        kind: ObjectKind,
        id: i64,
        scope: &Scope,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT domain_id FROM objects WHERE id = $1 AND system_id = $2 AND kind = $3",
        )
        .bind(id)
        .bind(sys_id)
        .bind(kind.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => scope.allows(scope_domain(kind, id, r.try_get("domain_id")?)),
            None => false,
        })
    }

    /// Which of `ids` exist as `kind` in the system and in scope (for bulk checks).
    pub async fn kind_of(&self, sys_id: i64, id: i64) -> Result<Option<ObjectKind>> {
        let row = sqlx::query("SELECT kind FROM objects WHERE id = $1 AND system_id = $2")
            .bind(id)
            .bind(sys_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => ObjectKind::from_str_opt(&r.try_get::<String, _>("kind")?),
            None => None,
        })
    }
}

/// Which statuses a search shows when hidden statuses apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    /// Leave out the kind's hidden statuses.
    Hide,
}

/// What a default search leaves out.
#[derive(Debug, Clone, Copy)]
struct Hidden {
    statuses: &'static [&'static str],
    types: &'static [&'static str],
}

impl Hidden {
    fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.types.is_empty()
    }

    /// Append a condition true for the rows a default search leaves out.
    fn push_condition(&self, sql: &mut Sql) {
        let mut parts = 0;
        sql.push("(");
        for (col, list) in [("status", self.statuses), ("type", self.types)] {
            if list.is_empty() {
                continue;
            }
            if parts > 0 {
                sql.push(" OR ");
            }
            sql.push(&format!("COALESCE({col}, '') IN ("))
                .bind_list(list.iter().copied())
                .push(")");
            parts += 1;
        }
        if parts == 0 {
            sql.push("1 = 0");
        }
        sql.push(")");
    }
}

/// The WHERE clause of a search, reused for the page and its counts.
struct Filters<'a> {
    sys_id: i64,
    kind: ObjectKind,
    scope: &'a Scope,
    q: &'a SearchQuery,
    hidden: Hidden,
}

impl Filters<'_> {
    /// Append ` FROM objects WHERE ...`; `inside_scope` false selects matches outside the caller's domains.
    fn push(&self, sql: &mut Sql, inside_scope: bool, visibility: Option<Visibility>) {
        let (q, kind) = (self.q, self.kind);
        sql.push(" FROM objects WHERE system_id = ")
            .bind(self.sys_id);
        sql.push(" AND kind = ").bind(kind.as_str());
        if let Some(text) = q.q.as_deref().map(fold).filter(|t| !t.is_empty()) {
            if text.contains('*') {
                let pattern = like_pattern(&text);
                sql.push(" AND (name_fold LIKE ")
                    .bind(pattern.clone())
                    .push(" ESCAPE '\\'");
                sql.push(" OR marking_fold LIKE ")
                    .bind(pattern)
                    .push(" ESCAPE '\\')");
            } else {
                // A prefix is a range on the folded columns, so the indexes serve it.
                let upper = format!("{text}\u{10FFFF}");
                sql.push(" AND ((name_fold >= ")
                    .bind(text.clone())
                    .push(" AND name_fold < ")
                    .bind(upper.clone());
                sql.push(") OR (marking_fold >= ")
                    .bind(text)
                    .push(" AND marking_fold < ")
                    .bind(upper)
                    .push("))");
            }
        }
        for tag in &q.tags {
            sql.push(" AND id IN (SELECT object_id FROM object_tags WHERE system_id = ")
                .bind(self.sys_id);
            sql.push(" AND kind = ").bind(kind.as_str());
            sql.push(" AND tag_fold = ").bind(fold(tag)).push(")");
        }
        if let Some(d) = q.domain_id {
            sql.push(" AND domain_id = ").bind(d);
        }
        if !q.status.is_empty() {
            sql.push(" AND status IN (")
                .bind_list(q.status.iter().cloned())
                .push(")");
        }
        if let Some(t) = &q.type_ {
            sql.push(" AND type = ").bind(t.clone());
        }
        if !self.hidden.is_empty() && visibility == Some(Visibility::Hide) {
            sql.push(" AND NOT ");
            self.hidden.push_condition(sql);
        }
        if let (true, Some(domains)) = (is_scoped(kind), &self.scope.domains) {
            let mut sorted: Vec<i64> = domains.iter().copied().collect();
            sorted.sort_unstable();
            // A domain is scoped by its own id, everything else by its domain.
            let col = if kind == ObjectKind::Domain {
                "id"
            } else {
                "domain_id"
            };
            match (sorted.is_empty(), inside_scope) {
                (true, true) => sql.push(" AND 1 = 0"),
                (true, false) => sql.push(""),
                (false, true) => sql
                    .push(&format!(" AND {col} IN ("))
                    .bind_list(sorted)
                    .push(")"),
                (false, false) => sql
                    .push(&format!(" AND {col} NOT IN ("))
                    .bind_list(sorted)
                    .push(")"),
            };
        }
    }

    /// Matches inside the caller's domains, split into shown and left out by hidden statuses.
    async fn count_shown_and_hidden(&self, conn: &mut AnyConnection) -> Result<(u64, u64)> {
        let mut sql = Sql::new("SELECT SUM(CASE WHEN ");
        self.hidden.push_condition(&mut sql);
        sql.push(" THEN 0 ELSE 1 END) AS shown, SUM(CASE WHEN ");
        self.hidden.push_condition(&mut sql);
        sql.push(" THEN 1 ELSE 0 END) AS left_out");
        self.push(&mut sql, true, None);
        let rows = sql.fetch_all(conn).await?;
        let get = |name: &str| -> Result<u64> {
            let n: Option<i64> = rows.first().map(|r| r.try_get(name)).transpose()?.flatten();
            Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
        };
        Ok((get("shown")?, get("left_out")?))
    }

    async fn count(
        &self,
        conn: &mut AnyConnection,
        inside_scope: bool,
        visibility: Option<Visibility>,
    ) -> Result<u64> {
        let mut sql = Sql::new("SELECT COUNT(*) AS n");
        self.push(&mut sql, inside_scope, visibility);
        let rows = sql.fetch_all(conn).await?;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get("n"))
            .transpose()?
            .unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Turn a `*` wildcard query into a LIKE pattern, escaping LIKE's own metacharacters.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    // Prefix semantics: "a*c" matches names starting with a, then anything, then c...
    if !out.ends_with('%') {
        out.push('%');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escapes() {
        assert_eq!(like_pattern("a*b%c_d"), "a%b\\%c\\_d%");
        assert_eq!(like_pattern("*door"), "%door%");
    }

    #[test]
    fn scope_rules() {
        let s = Scope::domains([1, 2]);
        assert!(s.allows(Some(1)));
        assert!(!s.allows(Some(3)));
        assert!(s.allows(None));
        assert!(Scope::all().allows(Some(3)));
    }
}
