//! Key and cylinder lifecycle flows (`DOMAIN.md` §6) as single transactions: hand out,
//! hand in, lost, found, broken, replacement by a factory clone, copying a key's
//! configuration, removing redundant and key-side authorisations, a schedule for a whole
//! key group. Jobs follow from the changed objects by reconciliation.

use chrono::{NaiveDate, Utc};
use lockgate_engine::{defined, state::AccessTarget};
use lockgate_model::{
    ObjectId, ObjectKind, ValidationErrors,
    access_profile::{AccessProfile, TemporaryAccessGroup},
    key::{BlockChoice, Key, KeyStatus, KeyType, LostReport, Validity},
    schedule::Schedule,
    system::LockingSystem,
};
use serde::{Deserialize, Serialize};

use crate::{
    Edit, Result, Store, StoreError, WriteContext,
    objects::{Scope, Stored},
    reconciliation::key_config,
};

/// What a hand-out sets besides the holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandOut {
    /// Employee or visitor receiving the key.
    pub holder_id: ObjectId,
    #[serde(default)]
    pub date_out: Option<NaiveDate>,
    /// Expected return date (overdue after it).
    #[serde(default)]
    pub date_in: Option<NaiveDate>,
    /// Access profiles tied to the key (the holder's own profiles apply anyway).
    #[serde(default)]
    pub access_profile_ids: Option<Vec<ObjectId>>,
    #[serde(default)]
    pub cylinder_ids: Option<Vec<ObjectId>>,
    #[serde(default)]
    pub cylinder_group_ids: Option<Vec<ObjectId>>,
    #[serde(default)]
    pub validity: Option<Validity>,
    #[serde(default)]
    pub schedule: Option<Schedule>,
}

/// How a key is reported lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LostRequest {
    #[serde(default)]
    pub block: BlockChoice,
    /// Cylinders to block with `custom`.
    #[serde(default)]
    pub cylinder_ids: Vec<ObjectId>,
}

fn refuse(message: impl Into<String>) -> StoreError {
    StoreError::Refused {
        message: message.into(),
    }
}

impl Store {
    async fn key_flow<F>(
        &self,
        cx: &WriteContext,
        id: ObjectId,
        action: &str,
        trusted: bool,
        change: F,
    ) -> Result<Stored<Key>>
    where
        F: FnOnce(&mut Key) -> Result<()>,
    {
        let mut tx = self.write_tx().await?;
        let s = Self::update_in(
            &mut tx,
            cx,
            ObjectKind::Key,
            id,
            Edit {
                expected_version: None,
                action,
                trusted,
            },
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Hand a key out to a person.
    pub async fn hand_out_key(
        &self,
        cx: &WriteContext,
        id: ObjectId,
        h: HandOut,
    ) -> Result<Stored<Key>> {
        self.key_flow(cx, id, "handed_out", false, |k| {
            match k.status {
                KeyStatus::InStock => {}
                other => {
                    return Err(refuse(format!(
                        "key {id} is {}, not in stock",
                        other.as_str()
                    )));
                }
            }
            k.status = KeyStatus::HandedOut;
            k.holder_id = Some(h.holder_id);
            k.date_out = Some(h.date_out.unwrap_or_else(|| cx.now.date_naive()));
            k.date_in = h.date_in;
            k.preordered_for_id = None;
            if let Some(p) = h.access_profile_ids {
                k.access_profile_ids = p;
            }
            if let Some(c) = h.cylinder_ids {
                k.cylinder_ids = c;
            }
            if let Some(g) = h.cylinder_group_ids {
                k.cylinder_group_ids = g;
            }
            if let Some(v) = h.validity {
                k.validity = v;
            }
            if h.schedule.is_some() {
                k.schedule = h.schedule;
            }
            Ok(())
        })
        .await
    }

    /// Take a key back: no holder, no key-tied access.
    pub async fn hand_in_key(&self, cx: &WriteContext, id: ObjectId) -> Result<Stored<Key>> {
        self.key_flow(cx, id, "handed_in", false, |k| {
            if k.status != KeyStatus::HandedOut {
                return Err(refuse(format!(
                    "key {id} is {}, not handed out",
                    k.status.as_str()
                )));
            }
            k.status = KeyStatus::InStock;
            k.holder_id = None;
            k.date_out = None;
            k.date_in = None;
            k.access_profile_ids.clear();
            k.cylinder_ids.clear();
            k.cylinder_group_ids.clear();
            Ok(())
        })
        .await
    }

    /// Report a key lost: its pending updates are cancelled (reconciliation plans nothing
    /// for a lost key) and the chosen cylinders block it.
    pub async fn report_key_lost(
        &self,
        cx: &WriteContext,
        id: ObjectId,
        req: LostRequest,
    ) -> Result<Stored<Key>> {
        let now = cx.now;
        if req.block != BlockChoice::Custom && !req.cylinder_ids.is_empty() {
            return Err(
                ValidationErrors::single("cylinder_ids", "only with block = custom").into(),
            );
        }
        self.key_flow(cx, id, "reported_lost", true, |k| {
            if k.status == KeyStatus::Lost {
                return Err(refuse(format!("key {id} is already lost")));
            }
            k.status = KeyStatus::Lost;
            k.lost_report = Some(LostReport {
                block: req.block,
                cylinder_ids: req.cylinder_ids,
                reported_at: now,
            });
            Ok(())
        })
        .await
    }

    /// A lost key is found: back in stock; executed blocks are reversed and unexecuted
    /// block jobs cancelled by reconciliation.
    ///
    /// Cylinders that kept the key out silently (they admit it, the report did not choose
    /// them, and no job of theirs has written the block yet) keep it on their list of
    /// unauthorised keys: a later reprogramming blocks it (manual §4.2.12.2), until an
    /// administrator re-authorises the key there by changing the access list.
    pub async fn report_key_found(&self, cx: &WriteContext, id: ObjectId) -> Result<Stored<Key>> {
        use crate::reconciliation::{LostKeyBlocking, lost_key_blocking};
        use lockgate_model::cylinder::Cylinder;
        let sys = &cx.system;
        let mut tx = self.write_tx().await?;
        let lost: Stored<Key> =
            Self::get_in(&mut tx, sys.id, ObjectKind::Key, id, &cx.scope).await?;
        let found = Self::update_in(
            &mut tx,
            cx,
            ObjectKind::Key,
            id,
            Edit {
                expected_version: None,
                action: "found",
                trusted: true,
            },
            |k: &mut Key| {
                if k.status != KeyStatus::Lost {
                    return Err(refuse(format!("key {id} is not lost")));
                }
                // Manual §4.2.12.3: a found key is In stock, no longer with its holder; its
                // own configuration stays (the cylinders that never blocked it admit it).
                k.status = KeyStatus::InStock;
                k.holder_id = None;
                k.date_out = None;
                k.date_in = None;
                k.lost_report = None;
                Ok(())
            },
        )
        .await?;
        let rows = sqlx::query(
            "SELECT DISTINCT r.from_id FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE o.system_id = $1 AND o.kind = 'cylinder' \
             AND ((r.relation = 'admits_key' AND r.to_id = $2) OR (r.relation = 'admits_group' AND r.to_id = $3))",
        )
        .bind(sys.id)
        .bind(id)
        .bind(lost.body.key_group_id.unwrap_or(0))
        .fetch_all(&mut *tx)
        .await?;
        let unscoped = cx.unscoped();
        for r in rows {
            let cylinder_id: i64 = sqlx::Row::try_get(&r, "from_id")?;
            let c: Stored<Cylinder> = Self::get_in(
                &mut tx,
                sys.id,
                ObjectKind::Cylinder,
                cylinder_id,
                &unscoped.scope,
            )
            .await?;
            let admitted = c.body.access_list.key_ids.contains(&id)
                || c.body.access_list.key_groups.iter().any(|g| {
                    Some(g.key_group_id) == lost.body.key_group_id && !g.exceptions.contains(&id)
                });
            if lost_key_blocking(lost.body.lost_report.as_ref(), admitted, c.id, &c.body)
                != LostKeyBlocking::Silently
                || c.body.unauthorised_key_ids.contains(&id)
            {
                continue;
            }
            // A job of the cylinder already wrote the block: reconciliation reverses it.
            let written = Self::cylinder_actual_in(&mut tx, sys.id, cylinder_id)
                .await?
                .is_some_and(|p| p.blocked.contains(&id));
            if written {
                continue;
            }
            Self::update_in(
                &mut tx,
                &unscoped,
                ObjectKind::Cylinder,
                cylinder_id,
                Edit {
                    expected_version: None,
                    action: "found_key_kept_unauthorised",
                    trusted: true,
                },
                |c: &mut Cylinder| {
                    c.unauthorised_key_ids.push(id);
                    Ok(())
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    /// Copy validity, schedule, revalidation, explicit access list and profiles to another key.
    /// Copying a dynamic key's configuration to a normal or quartz key is refused.
    pub async fn copy_key_configuration(
        &self,
        cx: &WriteContext,
        from: ObjectId,
        to: ObjectId,
    ) -> Result<Stored<Key>> {
        let (sys, scope) = (&cx.system, &cx.scope);
        let source: Stored<Key> = self.get(sys.id, ObjectKind::Key, from, scope).await?;
        let s = source.body;
        let mut tx = self.write_tx().await?;
        let copied = Self::update_in(
            &mut tx,
            cx,
            ObjectKind::Key,
            to,
            Edit {
                expected_version: None,
                action: "configuration_copied",
                trusted: false,
            },
            |k: &mut Key| {
                if s.key_type == KeyType::Dynamic
                    && matches!(k.key_type, KeyType::Normal | KeyType::Quartz)
                {
                    return Err(ValidationErrors::single(
                        "target_key_id",
                        "a dynamic key's configuration cannot be copied to a normal or quartz key",
                    )
                    .into());
                }
                if from == to {
                    return Err(ValidationErrors::single(
                        "target_key_id",
                        "source and target are the same key",
                    )
                    .into());
                }
                k.validity = s.validity.clone();
                k.schedule = s.schedule.clone();
                k.access_profile_ids = s.access_profile_ids.clone();
                k.cylinder_ids = s.cylinder_ids.clone();
                k.cylinder_group_ids = s.cylinder_group_ids.clone();
                Ok(())
            },
        )
        .await?;
        // Manual §4.2.16: cylinders that list the source key individually list the target
        // too (their programming jobs follow from the reconciliation); cylinders outside
        // the caller's domains are left alone.
        for cylinder in Self::cylinders_listing_key_in(&mut tx, sys.id, from).await? {
            match Self::update_in(
                &mut tx,
                cx,
                ObjectKind::Cylinder,
                cylinder,
                Edit {
                    expected_version: None,
                    action: "key_configuration_copied",
                    // lockgate's own edit: it keeps the cylinder's unauthorised keys.
                    trusted: true,
                },
                |c: &mut lockgate_model::cylinder::Cylinder| {
                    if !c.access_list.key_ids.contains(&to) {
                        c.access_list.key_ids.push(to);
                    }
                    Ok(())
                },
            )
            .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(copied)
    }

    /// Cylinders whose access list names `key` individually.
    pub async fn cylinders_listing_key(&self, system_id: i64, key: ObjectId) -> Result<Vec<i64>> {
        let mut conn = self.pool().acquire().await?;
        Self::cylinders_listing_key_in(&mut conn, system_id, key).await
    }

    async fn cylinders_listing_key_in(
        conn: &mut sqlx::AnyConnection,
        system_id: i64,
        key: ObjectId,
    ) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT r.from_id FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE r.to_id = $1 AND r.relation = 'admits_key' AND o.kind = 'cylinder' AND o.system_id = $2",
        )
        .bind(key)
        .bind(system_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| sqlx::Row::try_get::<i64, _>(r, "from_id").map_err(StoreError::from))
            .collect()
    }

    /// Replace a broken key by a factory clone: the clone takes its configuration and holder,
    /// the old key is marked broken.
    pub async fn replace_key_with_clone(
        &self,
        cx: &WriteContext,
        id: ObjectId,
        marking: String,
        name: Option<String>,
    ) -> Result<Stored<Key>> {
        let (sys, scope, actor) = (&cx.system, &cx.scope, &cx.actor);
        let mut tx = self.write_tx().await?;
        let old: Stored<Key> = Self::get_in(&mut tx, sys.id, ObjectKind::Key, id, scope).await?;
        let mut clone = old.body.clone();
        clone.marking = marking;
        if let Some(n) = name {
            clone.name = n;
        }
        clone.last_remote_update = None;
        let holder = old.body.holder_id;
        Self::update_in(
            &mut tx,
            cx,
            ObjectKind::Key,
            id,
            Edit {
                expected_version: None,
                action: "replaced_by_clone",
                trusted: false,
            },
            |k: &mut Key| {
                k.status = KeyStatus::Broken;
                k.holder_id = None;
                Ok(())
            },
        )
        .await?;
        clone.holder_id = holder;
        let created =
            Self::create_in(&mut tx, sys, ObjectKind::Key, scope, actor, clone, false).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Delete explicit entries of a key that its profiles or temporary groups already give.
    pub async fn remove_redundant_authorisations(
        &self,
        cx: &WriteContext,
        id: ObjectId,
    ) -> Result<Stored<Key>> {
        let (sys, scope) = (&cx.system, &cx.scope);
        let key: Stored<Key> = self.get(sys.id, ObjectKind::Key, id, scope).await?;
        let cfg = self.configuration(sys).await?;
        let mut implicit_only = key_config(key.id, &key.body);
        implicit_only.cylinders.clear();
        implicit_only.cylinder_groups.clear();
        let now = cx.now;
        let temporary: Vec<_> = cfg
            .temporary_groups
            .iter()
            .filter(|t| t.keys.contains(&id) && t.start <= now && now < t.end)
            .collect();
        let implicit = defined::key_program(&cfg, &implicit_only, &temporary).access;
        self.key_flow(cx, id, "redundant_authorisations_removed", false, |k| {
            k.cylinder_ids
                .retain(|c| !implicit.contains_key(&AccessTarget::Cylinder(*c)));
            k.cylinder_group_ids
                .retain(|g| !implicit.contains_key(&AccessTarget::CylinderGroup(*g)));
            Ok(())
        })
        .await
    }

    /// Remove one cylinder from every key, access profile and temporary access group, in one transaction.
    pub async fn remove_key_side_authorisations(
        &self,
        cx: &WriteContext,
        cylinder: ObjectId,
    ) -> Result<usize> {
        let (sys, scope) = (&cx.system, &cx.scope);
        let mut tx = self.write_tx().await?;
        let _: Stored<lockgate_model::cylinder::Cylinder> =
            Self::get_in(&mut tx, sys.id, ObjectKind::Cylinder, cylinder, scope).await?;
        let rows = sqlx::query(
            "SELECT r.from_id, o.kind FROM object_refs r JOIN objects o ON o.id = r.from_id \
             WHERE r.to_id = $1 AND o.kind IN ('key', 'access_profile', 'temporary_access_group')",
        )
        .bind(cylinder)
        .fetch_all(&mut *tx)
        .await?;
        let mut changed = 0;
        for r in rows {
            use sqlx::Row;
            let (from, kind): (i64, String) = (r.try_get("from_id")?, r.try_get("kind")?);
            match kind.as_str() {
                "key" => {
                    Self::update_in(
                        &mut tx,
                        cx,
                        ObjectKind::Key,
                        from,
                        Edit {
                            expected_version: None,
                            action: "key_side_authorisation_removed",
                            trusted: false,
                        },
                        |k: &mut Key| {
                            k.cylinder_ids.retain(|c| *c != cylinder);
                            Ok(())
                        },
                    )
                    .await?;
                }
                "access_profile" => {
                    Self::update_in(
                        &mut tx,
                        cx,
                        ObjectKind::AccessProfile,
                        from,
                        Edit {
                            expected_version: None,
                            action: "key_side_authorisation_removed",
                            trusted: false,
                        },
                        |p: &mut AccessProfile| {
                            p.cylinder_ids.retain(|c| *c != cylinder);
                            Ok(())
                        },
                    )
                    .await?;
                }
                _ => {
                    Self::update_in(
                        &mut tx,
                        cx,
                        ObjectKind::TemporaryAccessGroup,
                        from,
                        Edit {
                            expected_version: None,
                            action: "key_side_authorisation_removed",
                            trusted: false,
                        },
                        |t: &mut TemporaryAccessGroup| {
                            t.cylinder_ids.retain(|c| *c != cylinder);
                            Ok(())
                        },
                    )
                    .await?;
                }
            }
            changed += 1;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Keys overdue at `now`: handed out past their date in, past their validity end, or
    /// past their revalidation (counted from the last confirmed revalidation).
    pub async fn overdue_keys(
        &self,
        sys: &LockingSystem,
        scope: &Scope,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<(ObjectId, Vec<&'static str>)>> {
        use lockgate_model::key::Activation;
        use sqlx::Row;
        let mut revalidated: std::collections::HashMap<i64, chrono::DateTime<Utc>> =
            std::collections::HashMap::new();
        for r in sqlx::query("SELECT key_id, clock FROM key_actual WHERE system_id = $1")
            .bind(sys.id)
            .fetch_all(self.pool())
            .await?
        {
            let clock: lockgate_engine::state::KeyClock =
                serde_json::from_str(&r.try_get::<String, _>("clock")?).unwrap_or_default();
            if let Some(t) = clock.last_revalidation {
                revalidated.insert(r.try_get("key_id")?, t);
            }
        }
        let mut out = Vec::new();
        for k in self
            .list_all::<Key>(sys.id, ObjectKind::Key, scope, 10_000_000)
            .await?
        {
            if k.body.status != KeyStatus::HandedOut {
                continue;
            }
            let mut why = Vec::new();
            if k.body.date_in.is_some_and(|d| d < now.date_naive()) {
                why.push("date_in");
            }
            if let Activation::Between { until, .. } = k.body.validity.activation
                && until < now
            {
                why.push("validity");
            }
            if let (Some(r), Some(last)) = (&k.body.validity.revalidation, revalidated.get(&k.id))
                && *last + chrono::Duration::hours(i64::from(r.interval_hours)) < now
            {
                why.push("revalidation");
            }
            if !why.is_empty() {
                out.push((k.id, why));
            }
        }
        Ok(out)
    }

    /// Give every quartz and dynamic key of a key group the same schedule, all or nothing.
    pub async fn apply_schedule_to_key_group(
        &self,
        cx: &WriteContext,
        group: ObjectId,
        schedule: Schedule,
    ) -> Result<usize> {
        let sys = &cx.system;
        let ids: Vec<i64> = {
            use sqlx::Row;
            sqlx::query("SELECT r.from_id FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE r.to_id = $1 AND r.relation = 'key_group' AND o.kind = 'key' AND o.type IN ('quartz', 'dynamic') AND o.system_id = $2")
                .bind(group)
                .bind(sys.id)
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|r| r.try_get("from_id"))
                .collect::<Result<_, _>>()?
        };
        let n = self
            .update_many::<Key, _>(cx, ObjectKind::Key, &ids, "schedule_changed", |k| {
                k.schedule = Some(schedule.clone());
                Ok(())
            })
            .await?
            .len();
        Ok(n)
    }
}
