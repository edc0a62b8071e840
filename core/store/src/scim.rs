//! SCIM provisioning: the users and groups a SCIM client wrote (kept as written, so a read
//! returns them exactly), the employees the users maintain and the tags the groups put on
//! their members, each write in one transaction.
//!
//! A SCIM user maintains one employee with `synced_from = "scim"`: elsewhere that employee
//! is read-only except domain and tags and is not deactivated or deleted locally
//! (`Person::check_update`, `Store::delete_person`), as for a directory sync. `active =
//! false` deactivates the employee, or marks them deleted when the system marks deleted
//! persons (deactivation exists only with permanent deletion). A group is the tag named by
//! its `displayName` on its members' employees; the group is the source of truth and its
//! next write puts the tag back where an administrator took it off.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lockgate_model::{
    ObjectKind,
    person::{Person, PersonState},
    system::PersonDeletion,
};
use serde_json::Value;
use sqlx::{Any, Row, Transaction};

use crate::{
    Edit, Result, Store, StoreError, WriteContext, fold,
    objects::{Scope, Stored},
    parse_ts, ts,
};

/// The `synced_from` mark of employees a SCIM client maintains.
pub const SCIM_SOURCE: &str = "scim";

/// Most users or groups one locking system holds through SCIM.
pub const MAX_SCIM_RESOURCES: usize = 200_000;

/// The two resource types lockgate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimResourceType {
    User,
    Group,
}

impl ScimResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimResourceType::User => "User",
            ScimResourceType::Group => "Group",
        }
    }
}

/// A SCIM resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRecord {
    pub id: String,
    pub resource_type: ScimResourceType,
    /// The resource as the client last wrote it, without `id` and `meta`.
    pub body: Value,
    /// The employee a user maintains.
    pub person_id: Option<i64>,
    /// Grows by one with every write: the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as the client writes it, with the employee it maps to.
#[derive(Debug, Clone)]
pub struct ScimUserWrite {
    pub body: Value,
    pub user_name: String,
    pub external_id: Option<String>,
    /// The mapped fields; domain, tags, links, profiles and lifecycle are lockgate's.
    pub person: Person,
    pub active: bool,
}

/// A group as the client writes it.
#[derive(Debug, Clone)]
pub struct ScimGroupWrite {
    pub body: Value,
    pub display_name: String,
    pub external_id: Option<String>,
    /// The SCIM ids of the member users, in the order written (`members[i].value`).
    pub member_ids: Vec<String>,
}

fn new_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| StoreError::Refused {
        message: format!("no randomness for a SCIM id: {e}"),
    })?;
    b[6] = (b[6] & 0x0f) | 0x40; // UUID version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn record(r: &sqlx::any::AnyRow) -> Result<ScimRecord> {
    let rt: String = r.try_get("resource_type")?;
    let body: String = r.try_get("body")?;
    Ok(ScimRecord {
        id: r.try_get("id")?,
        resource_type: match rt.as_str() {
            "User" => ScimResourceType::User,
            "Group" => ScimResourceType::Group,
            other => return Err(StoreError::Corrupt(format!("SCIM resource type '{other}'"))),
        },
        body: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        person_id: r.try_get("person_id")?,
        version: r.try_get("version")?,
        created_at: parse_ts(&r.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&r.try_get::<String, _>("updated_at")?)?,
    })
}

/// A user's domain is its employee's; a group's, the creating client's.
const COLS: &str = "s.id, s.resource_type, s.body, s.person_id, s.version, s.created_at, s.updated_at, COALESCE(o.domain_id, s.domain_id) AS domain_id";

/// The domain a group created by this client belongs to: the client's home domain, else its
/// lowest domain, else (every domain) the system's default domain.
fn owning_domain(cx: &WriteContext) -> Option<i64> {
    cx.scope
        .home
        .or_else(|| {
            cx.scope
                .domains
                .as_ref()
                .and_then(|d| d.iter().min().copied())
        })
        .or(cx.system.default_domain_id)
}

/// The attribute that names a resource uniquely.
fn name_field(rt: ScimResourceType) -> &'static str {
    match rt {
        ScimResourceType::User => "userName",
        ScimResourceType::Group => "displayName",
    }
}

fn conflict(field: &str, message: String) -> StoreError {
    StoreError::Conflict {
        field: field.into(),
        message,
    }
}

impl Store {
    /// Every resource of a type the caller's domains show (a user whose employee lies in
    /// another domain is not shown), oldest first.
    pub async fn scim_records(
        &self,
        system_id: i64,
        rt: ScimResourceType,
        scope: &Scope,
    ) -> Result<Vec<ScimRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM scim_resources s LEFT JOIN objects o ON o.id = s.person_id \
             WHERE s.system_id = $1 AND s.resource_type = $2 ORDER BY s.created_at, s.id"
        ))
        .bind(system_id)
        .bind(rt.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .filter(|r| scope.allows(r.try_get::<Option<i64>, _>("domain_id").ok().flatten()))
            .map(record)
            .collect()
    }

    /// The resource with this `userName` (users) or `displayName` (groups), compared
    /// case-insensitively, if the caller's domains show it.
    pub async fn scim_record_by_name(
        &self,
        system_id: i64,
        rt: ScimResourceType,
        name: &str,
        scope: &Scope,
    ) -> Result<Option<ScimRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM scim_resources s LEFT JOIN objects o ON o.id = s.person_id \
             WHERE s.system_id = $1 AND s.resource_type = $2 AND s.name_fold = $3"
        ))
        .bind(system_id)
        .bind(rt.as_str())
        .bind(fold(name))
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) if scope.allows(r.try_get::<Option<i64>, _>("domain_id")?) => {
                Ok(Some(record(&r)?))
            }
            _ => Ok(None),
        }
    }

    /// One resource, if it exists and the caller's domains show it.
    pub async fn scim_record(
        &self,
        system_id: i64,
        rt: ScimResourceType,
        id: &str,
        scope: &Scope,
    ) -> Result<Option<ScimRecord>> {
        let mut conn = self.pool().acquire().await?;
        Self::scim_record_in(&mut conn, system_id, rt, id, scope).await
    }

    async fn scim_record_in(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        rt: ScimResourceType,
        id: &str,
        scope: &Scope,
    ) -> Result<Option<ScimRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM scim_resources s LEFT JOIN objects o ON o.id = s.person_id \
             WHERE s.system_id = $1 AND s.resource_type = $2 AND s.id = $3"
        ))
        .bind(system_id)
        .bind(rt.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(r) if scope.allows(r.try_get::<Option<i64>, _>("domain_id")?) => {
                Ok(Some(record(&r)?))
            }
            _ => Ok(None),
        }
    }

    /// The stored resource `id` for a write: absent → `None`; a stale `expected_version` →
    /// [`StoreError::VersionMismatch`].
    async fn scim_for_write(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        rt: ScimResourceType,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<Option<ScimRecord>> {
        let Some(current) = Self::scim_record_in(tx, cx.system.id, rt, id, &cx.scope).await? else {
            return Ok(None);
        };
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            });
        }
        Ok(Some(current))
    }

    async fn scim_unique(
        tx: &mut Transaction<'static, Any>,
        system_id: i64,
        rt: ScimResourceType,
        name: &str,
        except: Option<&str>,
    ) -> Result<()> {
        if except.is_none() {
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM scim_resources WHERE system_id = $1 AND resource_type = $2",
            )
            .bind(system_id)
            .bind(rt.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= MAX_SCIM_RESOURCES {
                return Err(StoreError::Refused {
                    message: format!(
                        "this locking system holds {MAX_SCIM_RESOURCES} SCIM {}s, the most it takes",
                        rt.as_str()
                    ),
                });
            }
        }
        let row = sqlx::query(
            "SELECT id FROM scim_resources WHERE system_id = $1 AND resource_type = $2 AND name_fold = $3",
        )
        .bind(system_id)
        .bind(rt.as_str())
        .bind(fold(name))
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(r) = row {
            let other: String = r.try_get("id")?;
            if Some(other.as_str()) != except {
                let field = name_field(rt);
                return Err(conflict(
                    field,
                    format!("another {} already has {field} '{name}'", rt.as_str()),
                ));
            }
        }
        Ok(())
    }

    async fn scim_write_row(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        rt: ScimResourceType,
        current: Option<&ScimRecord>,
        (name, external_id, body): (&str, Option<&str>, &Value),
        person_id: Option<i64>,
    ) -> Result<ScimRecord> {
        let json = serde_json::to_string(body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = cx.now;
        match current {
            None => {
                let id = new_id()?;
                sqlx::query(
                    "INSERT INTO scim_resources (system_id, id, resource_type, name_fold, external_id, person_id, domain_id, body, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)",
                )
                .bind(cx.system.id)
                .bind(&id)
                .bind(rt.as_str())
                .bind(fold(name))
                .bind(external_id)
                .bind(person_id)
                .bind(match rt {
                    ScimResourceType::Group => owning_domain(cx),
                    ScimResourceType::User => None,
                })
                .bind(&json)
                .bind(ts(now))
                .execute(&mut **tx)
                .await
                .map_err(|e| crate::map_unique(e, name_field(rt), name))?;
                Ok(ScimRecord {
                    id,
                    resource_type: rt,
                    body: body.clone(),
                    person_id,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                })
            }
            Some(c) => {
                let res = sqlx::query(
                    "UPDATE scim_resources SET name_fold = $1, external_id = $2, body = $3, version = version + 1, updated_at = $4 \
                     WHERE system_id = $5 AND id = $6 AND version = $7",
                )
                .bind(fold(name))
                .bind(external_id)
                .bind(&json)
                .bind(ts(now))
                .bind(cx.system.id)
                .bind(&c.id)
                .bind(c.version)
                .execute(&mut **tx)
                .await
                .map_err(|e| crate::map_unique(e, name_field(rt), name))?;
                if res.rows_affected() != 1 {
                    return Err(StoreError::VersionMismatch {
                        current: c.version + 1,
                    });
                }
                Ok(ScimRecord {
                    body: body.clone(),
                    version: c.version + 1,
                    updated_at: now,
                    ..c.clone()
                })
            }
        }
    }

    /// Move a SCIM-maintained employee to the lifecycle `active` asks for: `false` deactivates
    /// (permanent deletion) or marks deleted (mark as deleted); `true` brings them back.
    async fn scim_lifecycle(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        person: &Stored<Person>,
        active: bool,
    ) -> Result<()> {
        let now = person.body.lifecycle;
        let step = match (active, now) {
            (true, PersonState::Active) => None,
            (true, PersonState::Deactivated) => Some((now, PersonState::Active, "reactivated")),
            (true, PersonState::Deleted) => Some((now, PersonState::Active, "restored")),
            (false, PersonState::Active) => Some(match cx.system.settings.person_deletion {
                PersonDeletion::DeletePermanently => (now, PersonState::Deactivated, "deactivated"),
                PersonDeletion::MarkAsDeleted => (now, PersonState::Deleted, "marked_deleted"),
            }),
            (false, _) => None,
        };
        if let Some(step) = step {
            Self::set_lifecycle_in(tx, cx, ObjectKind::Employee, person.id, step, None, true)
                .await?;
        }
        Ok(())
    }

    /// Create a user and the employee it maintains.
    pub async fn scim_create_user(
        &self,
        cx: &WriteContext,
        w: ScimUserWrite,
    ) -> Result<ScimRecord> {
        let mut tx = self.write_tx().await?;
        Self::scim_unique(
            &mut tx,
            cx.system.id,
            ScimResourceType::User,
            &w.user_name,
            None,
        )
        .await?;
        let mut person = w.person;
        person.synced_from = Some(SCIM_SOURCE.into());
        person.lifecycle = PersonState::Active;
        person.tags.clear();
        person.links.clear();
        person.access_profile_ids.clear();
        person.domain_id = Default::default();
        let stored = Self::create_in(
            &mut tx,
            &cx.system,
            ObjectKind::Employee,
            &cx.scope,
            &cx.actor,
            person,
            true,
        )
        .await?;
        if !w.active {
            Self::scim_lifecycle(&mut tx, cx, &stored, false).await?;
        }
        let rec = Self::scim_write_row(
            &mut tx,
            cx,
            ScimResourceType::User,
            None,
            (&w.user_name, w.external_id.as_deref(), &w.body),
            Some(stored.id),
        )
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Replace a user (PUT, or a PATCH already applied); `None` when there is no such user.
    pub async fn scim_replace_user(
        &self,
        cx: &WriteContext,
        id: &str,
        expected_version: Option<i64>,
        w: ScimUserWrite,
    ) -> Result<Option<ScimRecord>> {
        let mut tx = self.write_tx().await?;
        let Some(current) =
            Self::scim_for_write(&mut tx, cx, ScimResourceType::User, id, expected_version).await?
        else {
            return Ok(None);
        };
        Self::scim_unique(
            &mut tx,
            cx.system.id,
            ScimResourceType::User,
            &w.user_name,
            Some(id),
        )
        .await?;
        let person_id = current
            .person_id
            .ok_or_else(|| StoreError::Corrupt(format!("SCIM user {id} has no employee")))?;
        let mapped = w.person;
        let stored = Self::update_in(
            &mut tx,
            cx,
            ObjectKind::Employee,
            person_id,
            Edit {
                expected_version: None,
                action: "provisioned",
                trusted: true,
            },
            |p: &mut Person| {
                let keep = p.clone();
                *p = Person {
                    domain_id: keep.domain_id,
                    tags: keep.tags,
                    links: keep.links,
                    access_profile_ids: keep.access_profile_ids,
                    lifecycle: keep.lifecycle,
                    synced_from: keep.synced_from,
                    ..mapped
                };
                Ok(())
            },
        )
        .await?;
        Self::scim_lifecycle(&mut tx, cx, &stored, w.active).await?;
        let rec = Self::scim_write_row(
            &mut tx,
            cx,
            ScimResourceType::User,
            Some(&current),
            (&w.user_name, w.external_id.as_deref(), &w.body),
            Some(person_id),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(rec))
    }

    /// Delete a user or a group; `false` when there is no such resource. A deleted user leaves
    /// its groups and its employee is deleted as the system's deletion setting says (marked
    /// as deleted: kept, no longer maintained by SCIM, so it can be restored locally); a
    /// deleted group's tag leaves its members.
    pub async fn scim_delete(
        &self,
        cx: &WriteContext,
        rt: ScimResourceType,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(current) = Self::scim_for_write(&mut tx, cx, rt, id, expected_version).await?
        else {
            return Ok(false);
        };
        match rt {
            ScimResourceType::Group => {
                let old = group_parts(&current.body);
                Self::retag_members(&mut tx, cx, Some(&old), None).await?;
            }
            ScimResourceType::User => {
                Self::leave_groups(&mut tx, cx, id).await?;
                if let Some(person_id) = current.person_id {
                    Self::scim_delete_person(&mut tx, cx, person_id).await?;
                }
            }
        }
        sqlx::query("DELETE FROM scim_resources WHERE system_id = $1 AND id = $2")
            .bind(cx.system.id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn scim_delete_person(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        person_id: i64,
    ) -> Result<()> {
        match cx.system.settings.person_deletion {
            PersonDeletion::DeletePermanently => {
                Self::delete_permanently(tx, cx, ObjectKind::Employee, person_id, None).await
            }
            PersonDeletion::MarkAsDeleted => {
                let p: Stored<Person> =
                    Self::get_in(tx, cx.system.id, ObjectKind::Employee, person_id, &cx.scope)
                        .await?;
                Self::scim_lifecycle(tx, cx, &p, false).await?;
                Self::update_in(
                    tx,
                    cx,
                    ObjectKind::Employee,
                    person_id,
                    Edit {
                        expected_version: None,
                        action: "deprovisioned",
                        trusted: true,
                    },
                    |p: &mut Person| {
                        p.synced_from = None;
                        Ok(())
                    },
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// Take a deleted user out of every group that lists it.
    async fn leave_groups(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        user_id: &str,
    ) -> Result<()> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM scim_resources s LEFT JOIN objects o ON o.id = s.person_id \
             WHERE s.system_id = $1 AND s.resource_type = 'Group'"
        ))
        .bind(cx.system.id)
        .fetch_all(&mut **tx)
        .await?;
        for r in &rows {
            let g = record(r)?;
            let Some(members) = g.body.get("members").and_then(Value::as_array) else {
                continue;
            };
            let kept: Vec<Value> = members
                .iter()
                .filter(|m| m.get("value").and_then(Value::as_str) != Some(user_id))
                .cloned()
                .collect();
            if kept.len() == members.len() {
                continue;
            }
            let mut body = g.body.clone();
            match body.as_object_mut() {
                // No members left: the attribute is unassigned (RFC 7643 §2.5).
                Some(o) if kept.is_empty() => {
                    o.remove("members");
                }
                _ => body["members"] = Value::Array(kept),
            }
            let (name, external) = group_names(&body);
            // The user's employee loses the group's tag (it may be kept, marked as deleted).
            let left = (name.clone(), vec![user_id.to_string()]);
            Self::retag_members(tx, cx, Some(&left), None).await?;
            Self::scim_write_row(
                tx,
                cx,
                ScimResourceType::Group,
                Some(&g),
                (&name, external.as_deref(), &body),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// The employees of the given SCIM users, refusing ids that name no user.
    async fn member_persons(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        member_ids: &[String],
    ) -> Result<BTreeSet<i64>> {
        let mut persons = BTreeSet::new();
        let mut errors = lockgate_model::ValidationErrors::new();
        for (i, m) in member_ids.iter().enumerate() {
            match Self::scim_record_in(tx, cx.system.id, ScimResourceType::User, m, &cx.scope)
                .await?
                .and_then(|r| r.person_id)
            {
                Some(p) => {
                    persons.insert(p);
                }
                None => errors.push(format!("members[{i}].value"), format!("no user '{m}'")),
            }
        }
        errors.into_result()?;
        Ok(persons)
    }

    /// Move a group's tag: off the old members (under the old name), onto the new ones.
    async fn retag_members(
        tx: &mut Transaction<'static, Any>,
        cx: &WriteContext,
        old: Option<&(String, Vec<String>)>,
        new: Option<&(String, Vec<String>)>,
    ) -> Result<()> {
        let old_persons = match old {
            Some((_, ids)) => {
                // Members deleted since are gone already, and members now outside the
                // client's domains are not its to untag: only those it sees count.
                let mut set = BTreeSet::new();
                for m in ids {
                    if let Some(p) =
                        Self::scim_record_in(tx, cx.system.id, ScimResourceType::User, m, &cx.scope)
                            .await?
                            .and_then(|r| r.person_id)
                    {
                        set.insert(p);
                    }
                }
                set
            }
            None => BTreeSet::new(),
        };
        let new_persons = match new {
            Some((_, ids)) => Self::member_persons(tx, cx, ids).await?,
            None => BTreeSet::new(),
        };
        let old_tag = old.map(|(n, _)| n.trim().to_lowercase());
        let new_tag = new.map(|(n, _)| n.trim().to_string());
        // In id order, so concurrent group writes lock employees in the same order.
        let mut plan: std::collections::BTreeMap<i64, (bool, bool)> =
            std::collections::BTreeMap::new();
        for p in &old_persons {
            plan.entry(*p).or_default().0 = true;
        }
        for p in &new_persons {
            plan.entry(*p).or_default().1 = true;
        }
        for (person_id, (was, is)) in plan {
            // A member that stays gets the tag back if an administrator took it off; a write
            // that changes nothing is skipped by `update_in`.
            let (old_tag, new_tag) = (old_tag.clone(), new_tag.clone());
            Self::update_in(
                tx,
                cx,
                ObjectKind::Employee,
                person_id,
                Edit {
                    expected_version: None,
                    action: "tagged",
                    trusted: true,
                },
                move |p: &mut Person| {
                    if was && let Some(t) = &old_tag {
                        p.tags.retain(|x| x.trim().to_lowercase() != *t);
                    }
                    if is
                        && let Some(t) = &new_tag
                        && !p.tags.iter().any(|x| x.trim().eq_ignore_ascii_case(t))
                    {
                        p.tags.push(t.clone());
                    }
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Create a group: its tag goes onto its members' employees.
    pub async fn scim_create_group(
        &self,
        cx: &WriteContext,
        w: ScimGroupWrite,
    ) -> Result<ScimRecord> {
        let mut tx = self.write_tx().await?;
        Self::scim_unique(
            &mut tx,
            cx.system.id,
            ScimResourceType::Group,
            &w.display_name,
            None,
        )
        .await?;
        let new = (w.display_name.clone(), w.member_ids.clone());
        Self::retag_members(&mut tx, cx, None, Some(&new)).await?;
        let rec = Self::scim_write_row(
            &mut tx,
            cx,
            ScimResourceType::Group,
            None,
            (&w.display_name, w.external_id.as_deref(), &w.body),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Replace a group (PUT, or a PATCH already applied); `None` when there is no such group.
    pub async fn scim_replace_group(
        &self,
        cx: &WriteContext,
        id: &str,
        expected_version: Option<i64>,
        w: ScimGroupWrite,
    ) -> Result<Option<ScimRecord>> {
        let mut tx = self.write_tx().await?;
        let Some(current) =
            Self::scim_for_write(&mut tx, cx, ScimResourceType::Group, id, expected_version)
                .await?
        else {
            return Ok(None);
        };
        Self::scim_unique(
            &mut tx,
            cx.system.id,
            ScimResourceType::Group,
            &w.display_name,
            Some(id),
        )
        .await?;
        let old = group_parts(&current.body);
        let new = (w.display_name.clone(), w.member_ids.clone());
        Self::retag_members(&mut tx, cx, Some(&old), Some(&new)).await?;
        let rec = Self::scim_write_row(
            &mut tx,
            cx,
            ScimResourceType::Group,
            Some(&current),
            (&w.display_name, w.external_id.as_deref(), &w.body),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(rec))
    }
}

/// A stored group's name and member ids.
fn group_parts(body: &Value) -> (String, Vec<String>) {
    let members = body
        .get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| x.get("value").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (group_names(body).0, members)
}

fn group_names(body: &Value) -> (String, Option<String>) {
    (
        body.get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        body.get("externalId")
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}
