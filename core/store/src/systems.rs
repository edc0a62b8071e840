//! Locking systems: creation with their initial objects, settings, and the settings switch rules.

use chrono::{DateTime, Utc};
use lockgate_model::{
    ObjectKind,
    ckey::{CKey, CKeyKind},
    domain::Domain,
    key_group::{KeyGroup, KeyGroupKind},
    permission::{PredefinedRole, Role},
    system::{FixedSettings, LockingSystem, PersonDeletion, SystemSettings},
};
use sqlx::Row;

use crate::{
    Result, Store, StoreError,
    events::EventDraft,
    objects::{Actor, Scope},
    ts,
};

/// What `init` creates and hands back once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub system: LockingSystem,
    pub master_c_key_id: i64,
    pub default_domain_id: i64,
    /// The super-administrator API token, shown once.
    pub token: String,
}

fn decode_system(r: &sqlx::any::AnyRow) -> Result<LockingSystem> {
    let fixed: String = r.try_get("fixed")?;
    let settings: String = r.try_get("settings")?;
    Ok(LockingSystem {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        fixed: serde_json::from_str(&fixed).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        version: r.try_get("version")?,
        default_domain_id: r.try_get("default_domain_id")?,
        maintenance_from: r
            .try_get::<Option<String>, _>("maintenance_from")?
            .as_deref()
            .map(crate::parse_ts)
            .transpose()?,
    })
}

impl Store {
    /// Create a locking system with its fixed settings, the pre-defined roles, a default
    /// domain, the two C-key groups and a master C-key holding the super-administrator
    /// role, and return an API token for that C-key (shown once).
    pub async fn init_system(&self, name: &str, fixed: FixedSettings) -> Result<Bootstrap> {
        let mut errors = lockgate_model::ValidationErrors::new();
        errors.text("name", name, 1, 100);
        if let Err(e) = fixed.validate() {
            errors.errors.extend(e.errors);
        }
        errors.into_result()?;
        let settings = SystemSettings::default();
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "INSERT INTO locking_systems (name, fixed, settings, version, created_at) VALUES ($1, $2, $3, 1, $4) RETURNING id",
        )
        .bind(name.trim())
        .bind(serde_json::to_string(&fixed).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(serde_json::to_string(&settings).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(ts(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| crate::map_unique(e, "name", name))?;
        let mut system = LockingSystem {
            id: row.try_get("id")?,
            name: name.trim().into(),
            fixed,
            settings,
            version: 1,
            default_domain_id: None,
            maintenance_from: None,
        };
        let actor = Actor::system();
        let all = Scope::all();

        let domain = Self::create_in(
            &mut tx,
            &system,
            ObjectKind::Domain,
            &all,
            &actor,
            Domain {
                name: "Default".into(),
                description: Some("Initial domain".into()),
            },
            true,
        )
        .await?;
        system.default_domain_id = Some(domain.id);
        sqlx::query("UPDATE locking_systems SET default_domain_id = $1 WHERE id = $2")
            .bind(domain.id)
            .bind(system.id)
            .execute(&mut *tx)
            .await?;
        system.settings.initial_person_domain = Some(domain.id);
        system.settings.initial_key_domain = Some(domain.id);
        system.settings.initial_cylinder_domain = Some(domain.id);
        Self::write_settings(&mut tx, &system).await?;

        let mut super_role = None;
        for p in PredefinedRole::ALL {
            let r = Self::create_in(
                &mut tx,
                &system,
                ObjectKind::Role,
                &all,
                &actor,
                Role::predefined(p),
                true,
            )
            .await?;
            if p == PredefinedRole::SuperAdministrator {
                super_role = Some(r.id);
            }
        }
        let master_group = Self::create_in(
            &mut tx,
            &system,
            ObjectKind::KeyGroup,
            &all,
            &actor,
            KeyGroup {
                name: "Master C-key".into(),
                kind: KeyGroupKind::MasterCKey,
                tags: vec![],
            },
            true,
        )
        .await?;
        Self::create_in(
            &mut tx,
            &system,
            ObjectKind::KeyGroup,
            &all,
            &actor,
            KeyGroup {
                name: "C-keys".into(),
                kind: KeyGroupKind::NormalCKey,
                tags: vec![],
            },
            true,
        )
        .await?;
        let master = CKey {
            name: "Master C-key".into(),
            marking: "M-0001".into(),
            kind: CKeyKind::Master,
            key_group_id: Some(master_group.id),
            generation: None,
            firmware: None,
            role_ids: super_role.into_iter().collect(),
            domain_ids: vec![domain.id],
            holder_id: None,
            status: Default::default(),
            certificate_enrolment: Default::default(),
            blocked: false,
            capabilities: lockgate_model::ckey::CKeyCapabilities {
                cylinder_reprogramming: true,
                cylinder_group_programming: true,
                ..Default::default()
            },
            tags: vec![],
        };
        let master = Self::create_in(
            &mut tx,
            &system,
            ObjectKind::CKey,
            &all,
            &actor,
            master,
            true,
        )
        .await?;
        let token = Self::insert_token(
            &mut tx,
            system.id,
            master.id,
            None,
            "init: super administrator",
            None,
            crate::tokens::TokenPurpose::Api,
        )
        .await?;
        tx.commit().await?;
        Ok(Bootstrap {
            system,
            master_c_key_id: master.id,
            default_domain_id: domain.id,
            token,
        })
    }

    async fn write_settings(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        sys: &LockingSystem,
    ) -> Result<i64> {
        let res = sqlx::query("UPDATE locking_systems SET settings = $1, version = version + 1 WHERE id = $2 AND version = $3")
            .bind(serde_json::to_string(&sys.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .bind(sys.id)
            .bind(sys.version)
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() != 1 {
            return Err(StoreError::VersionMismatch {
                current: sys.version + 1,
            });
        }
        Ok(sys.version + 1)
    }

    /// Load a locking system.
    pub async fn system(&self, id: i64) -> Result<LockingSystem> {
        let row = sqlx::query(
            "SELECT id, name, fixed, settings, version, default_domain_id, maintenance_from FROM locking_systems WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound {
            kind: "locking_system",
            id,
        })?;
        decode_system(&row)
    }

    /// All locking systems, by id.
    pub async fn systems(&self) -> Result<Vec<LockingSystem>> {
        let rows = sqlx::query("SELECT id, name, fixed, settings, version, default_domain_id, maintenance_from FROM locking_systems ORDER BY id LIMIT 10000")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_system).collect()
    }

    /// Change the adjustable settings. Switching person deletion to "delete permanently"
    /// purges persons marked as deleted; switching to "mark as deleted" needs no deactivated persons.
    pub async fn update_settings(
        &self,
        sys: &LockingSystem,
        actor: &Actor,
        expected_version: Option<i64>,
        new: SystemSettings,
    ) -> Result<LockingSystem> {
        new.validate()?;
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT id, name, fixed, settings, version, default_domain_id, maintenance_from FROM locking_systems WHERE id = $1",
        )
        .bind(sys.id)
        .fetch_one(&mut *tx)
        .await?;
        let mut current = decode_system(&row)?;
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            });
        }
        let all = Scope::all();
        let mut errors = lockgate_model::ValidationErrors::new();
        for (field, d) in [
            ("initial_person_domain", new.initial_person_domain),
            ("initial_key_domain", new.initial_key_domain),
            ("initial_cylinder_domain", new.initial_cylinder_domain),
        ] {
            if let Some(d) = d
                && Self::get_in::<Domain>(&mut tx, sys.id, ObjectKind::Domain, d, &all)
                    .await
                    .is_err()
            {
                errors.push(field, format!("no domain {d}"));
            }
        }
        errors.into_result()?;
        if new.person_deletion != current.settings.person_deletion {
            match new.person_deletion {
                PersonDeletion::DeletePermanently => {
                    Self::purge_marked_persons(&mut tx, &current, actor).await?;
                }
                PersonDeletion::MarkAsDeleted => {
                    let n: i64 = sqlx::query(
                        "SELECT COUNT(*) AS n FROM objects WHERE system_id = $1 AND kind IN ('employee', 'visitor') AND status = 'deactivated'",
                    )
                    .bind(sys.id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                    if n > 0 {
                        return Err(StoreError::Conflict {
                            field: "person_deletion".into(),
                            message: format!("{n} deactivated persons must be reactivated first"),
                        });
                    }
                }
            }
        }
        let before = serde_json::to_value(&current.settings).ok();
        let after = serde_json::to_value(&new).ok();
        current.settings = new;
        current.version = Self::write_settings(&mut tx, &current).await?;
        EventDraft {
            object_kind: "locking_system".into(),
            object_id: None,
            object_label: current.name.clone(),
            action: "settings_changed".into(),
            changes: lockgate_model::event::diff(before.as_ref(), after.as_ref()),
        }
        .insert(&mut tx, sys.id, actor)
        .await?;
        tx.commit().await?;
        Ok(current)
    }

    /// Lock the system for maintenance from `from` on (manual §6.2), or unlock it (`None`).
    /// Recorded as an event on the system.
    pub async fn set_maintenance(
        &self,
        sys: &LockingSystem,
        actor: &Actor,
        from: Option<DateTime<Utc>>,
    ) -> Result<LockingSystem> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE locking_systems SET maintenance_from = $1 WHERE id = $2")
            .bind(from.map(ts))
            .bind(sys.id)
            .execute(&mut *tx)
            .await?;
        EventDraft {
            object_kind: "locking_system".into(),
            object_id: None,
            object_label: sys.name.clone(),
            action: if from.is_some() {
                "maintenance_locked"
            } else {
                "maintenance_unlocked"
            }
            .into(),
            changes: serde_json::json!({ "maintenance_from": from }),
        }
        .insert(&mut tx, sys.id, actor)
        .await?;
        tx.commit().await?;
        self.system(sys.id).await
    }

    /// Counts of a system's objects by kind, status and domain, and its open jobs: the basic
    /// statistics (manual §6.14).
    pub async fn statistics(&self, system_id: i64) -> Result<Statistics> {
        let rows = sqlx::query(
            "SELECT kind, status, domain_id, COUNT(*) AS n FROM objects WHERE system_id = $1 GROUP BY kind, status, domain_id",
        )
        .bind(system_id)
        .fetch_all(self.pool())
        .await?;
        let mut objects = Vec::with_capacity(rows.len());
        for r in &rows {
            objects.push(ObjectCount {
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                domain_id: r.try_get("domain_id")?,
                count: r.try_get("n")?,
            });
        }
        let open_jobs: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE system_id = $1 AND open = 1")
                .bind(system_id)
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
        Ok(Statistics { objects, open_jobs })
    }
}

/// One group of [`Store::statistics`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectCount {
    pub kind: String,
    pub status: Option<String>,
    pub domain_id: Option<i64>,
    pub count: i64,
}

/// A system's basic statistics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Statistics {
    pub objects: Vec<ObjectCount>,
    pub open_jobs: i64,
}
