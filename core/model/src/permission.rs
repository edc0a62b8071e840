//! Administrator permissions: functions, levels, their dependencies, roles and the hierarchy rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    resource::{ObjectKind, Projection, Resource, ValidationContext},
    validation::ValidationErrors,
};

/// A permission level; each includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    None,
    /// Search and list.
    List,
    /// List plus details.
    View,
    /// View plus create, edit, delete.
    Full,
}

/// The functions (areas) a role assigns levels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Function {
    AccessProfiles,
    AccessProfileAuthorisation,
    Approvals,
    AuditTrail,
    AutomaticAuditTrail,
    CKey,
    CKeyHandInOut,
    Cylinder,
    CylinderAuthorisation,
    CylinderProgramming,
    Domain,
    Firmware,
    FlexibleRevalidation,
    Key,
    KeyAuthorisation,
    KeyHandInOut,
    KeySchedule,
    KeyUpdateHistory,
    KeyValidity,
    KeyHolderDeactivate,
    Employee,
    EmployeeImport,
    Visitor,
    LdapIntegration,
    Maintenance,
    RemotePds,
    Roles,
    Statistics,
    SystemSettings,
    SystemStatus,
    ScheduleTemplatesApply,
    ScheduleTemplatesEdit,
    ReceiptTemplates,
    TemporaryAccessGroups,
    /// lockgate's own (not the manual's): issuing API tokens for one's own C-key.
    ApiTokens,
}

use Function as F;
use Level as L;

impl Function {
    pub const ALL: [Function; 35] = [
        F::AccessProfiles,
        F::AccessProfileAuthorisation,
        F::Approvals,
        F::AuditTrail,
        F::AutomaticAuditTrail,
        F::CKey,
        F::CKeyHandInOut,
        F::Cylinder,
        F::CylinderAuthorisation,
        F::CylinderProgramming,
        F::Domain,
        F::Firmware,
        F::FlexibleRevalidation,
        F::Key,
        F::KeyAuthorisation,
        F::KeyHandInOut,
        F::KeySchedule,
        F::KeyUpdateHistory,
        F::KeyValidity,
        F::KeyHolderDeactivate,
        F::Employee,
        F::EmployeeImport,
        F::Visitor,
        F::LdapIntegration,
        F::Maintenance,
        F::RemotePds,
        F::Roles,
        F::Statistics,
        F::SystemSettings,
        F::SystemStatus,
        F::ScheduleTemplatesApply,
        F::ScheduleTemplatesEdit,
        F::ReceiptTemplates,
        F::TemporaryAccessGroups,
        F::ApiTokens,
    ];

    /// The levels this function offers (others are refused in a role).
    pub fn offered_levels(self) -> &'static [Level] {
        match self {
            F::Cylinder | F::Key | F::AuditTrail | F::RemotePds | F::Employee | F::Visitor => {
                &[L::None, L::List, L::View, L::Full]
            }
            F::Approvals => &[L::None, L::List, L::Full],
            F::KeyUpdateHistory | F::Statistics | F::SystemStatus => &[L::None, L::View],
            F::CKeyHandInOut
            | F::CylinderProgramming
            | F::Domain
            | F::Firmware
            | F::FlexibleRevalidation
            | F::KeyHandInOut
            | F::KeySchedule
            | F::KeyValidity
            | F::KeyHolderDeactivate
            | F::EmployeeImport
            | F::Maintenance
            | F::ScheduleTemplatesApply
            | F::ApiTokens => &[L::None, L::Full],
            _ => &[L::None, L::View, L::Full],
        }
    }

    /// Dependencies: holding this function at `level` requires each `(function, minimum)` listed.
    pub fn requires(self, level: Level) -> &'static [(Function, Level)] {
        if level == L::None {
            return &[];
        }
        let at_least_view = level >= L::View;
        match self {
            F::AccessProfileAuthorisation if at_least_view => &[(F::AccessProfiles, L::View)],
            F::AutomaticAuditTrail if at_least_view => &[(F::CKey, L::View)],
            F::CKeyHandInOut => &[(F::Employee, L::List), (F::CKey, L::View)],
            F::CylinderAuthorisation if at_least_view => {
                &[(F::Cylinder, L::View), (F::Key, L::List)]
            }
            F::CylinderProgramming => &[(F::Cylinder, L::List)],
            F::Firmware => &[(F::RemotePds, L::Full)],
            F::KeyAuthorisation if at_least_view => &[(F::Key, L::View), (F::Cylinder, L::List)],
            F::KeyHandInOut => &[
                (F::Employee, L::List),
                (F::Visitor, L::List),
                (F::Key, L::List),
                (F::Cylinder, L::List),
                (F::KeyAuthorisation, L::Full),
            ],
            F::KeySchedule => &[(F::ScheduleTemplatesApply, L::Full), (F::Key, L::View)],
            F::KeyUpdateHistory => &[(F::Key, L::View)],
            F::KeyValidity => &[(F::Key, L::View)],
            F::KeyHolderDeactivate => &[(F::Employee, L::Full), (F::Visitor, L::Full)],
            F::EmployeeImport => &[(F::Employee, L::Full)],
            F::LdapIntegration if at_least_view => &[(F::SystemSettings, L::View)],
            F::SystemStatus => &[(F::RemotePds, L::List)],
            F::ScheduleTemplatesApply => &[(F::Key, L::View)],
            _ => &[],
        }
    }
}

/// Levels per function; functions not listed are at None.
pub type PermissionSet = BTreeMap<Function, Level>;

/// Validate a permission set: offered levels and dependencies.
pub fn validate_permissions(perms: &PermissionSet) -> ValidationErrors {
    let mut e = ValidationErrors::new();
    let level = |f: Function| perms.get(&f).copied().unwrap_or_default();
    for (&f, &l) in perms {
        let field = format!("permissions.{}", fn_name(f));
        if !f.offered_levels().contains(&l) {
            e.push(
                &field,
                format!("level {l:?} is not offered for this function"),
            );
            continue;
        }
        for &(dep, min) in f.requires(l) {
            if level(dep) < min {
                e.push(
                    &field,
                    format!("{l:?} requires {} at {min:?} or above", fn_name(dep)),
                );
            }
        }
    }
    e
}

/// The snake_case name of a function as it appears in JSON.
pub fn fn_name(f: Function) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The effective levels of an administrator holding several roles: the highest per function.
pub fn effective(roles: &[&PermissionSet]) -> PermissionSet {
    let mut out = PermissionSet::new();
    for r in roles {
        for (&f, &l) in r.iter() {
            let e = out.entry(f).or_default();
            if l > *e {
                *e = l;
            }
        }
    }
    out
}

/// Hierarchical-administrator rule: `candidate` grants nothing above `own`.
/// Returns the functions where it would.
pub fn exceeds(candidate: &PermissionSet, own: &PermissionSet) -> Vec<Function> {
    candidate
        .iter()
        .filter(|(f, l)| **l > own.get(f).copied().unwrap_or_default())
        .map(|(f, _)| *f)
        .collect()
}

/// The rights of a request whose token was issued by another administrator: per function the
/// lower of the two levels, so a token never carries more than its issuer holds now.
pub fn capped(token_c_key: &PermissionSet, issuer: &PermissionSet) -> PermissionSet {
    token_c_key
        .iter()
        .map(|(f, l)| (*f, (*l).min(issuer.get(f).copied().unwrap_or_default())))
        .filter(|(_, l)| *l > Level::None)
        .collect()
}

/// The roles every locking system starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PredefinedRole {
    SuperAdministrator,
    Administrator,
    Receptionist,
    Approver,
    CylinderProgrammer,
    WebService,
}

impl PredefinedRole {
    pub const ALL: [PredefinedRole; 6] = [
        PredefinedRole::SuperAdministrator,
        PredefinedRole::Administrator,
        PredefinedRole::Receptionist,
        PredefinedRole::Approver,
        PredefinedRole::CylinderProgrammer,
        PredefinedRole::WebService,
    ];

    pub fn display_name(self) -> &'static str {
        match self {
            PredefinedRole::SuperAdministrator => "Super administrator",
            PredefinedRole::Administrator => "Administrator",
            PredefinedRole::Receptionist => "Receptionist",
            PredefinedRole::Approver => "Approver",
            PredefinedRole::CylinderProgrammer => "Cylinder programmer",
            PredefinedRole::WebService => "Web service",
        }
    }

    /// Read-only roles cannot be edited or deleted.
    pub fn read_only(self) -> bool {
        matches!(
            self,
            PredefinedRole::SuperAdministrator | PredefinedRole::Approver
        )
    }

    /// The permission set the role starts with.
    pub fn permissions(self) -> PermissionSet {
        let set = |pairs: &[(Function, Level)]| pairs.iter().copied().collect::<PermissionSet>();
        match self {
            PredefinedRole::SuperAdministrator => Function::ALL
                .iter()
                .filter(|f| **f != F::Approvals)
                .map(|f| (*f, *f.offered_levels().last().unwrap_or(&L::None)))
                .collect(),
            PredefinedRole::Administrator => set(&[
                (F::AccessProfiles, L::Full),
                (F::AccessProfileAuthorisation, L::Full),
                (F::AuditTrail, L::Full),
                (F::AutomaticAuditTrail, L::Full),
                (F::CKey, L::View),
                (F::Cylinder, L::Full),
                (F::CylinderAuthorisation, L::Full),
                (F::CylinderProgramming, L::Full),
                (F::Key, L::Full),
                (F::KeyAuthorisation, L::Full),
                (F::KeyHandInOut, L::Full),
                (F::KeySchedule, L::Full),
                (F::KeyUpdateHistory, L::View),
                (F::KeyValidity, L::Full),
                (F::Employee, L::Full),
                (F::EmployeeImport, L::Full),
                (F::Visitor, L::Full),
                (F::FlexibleRevalidation, L::Full),
                (F::RemotePds, L::View),
                (F::Roles, L::View),
                (F::Statistics, L::View),
                (F::SystemSettings, L::View),
                (F::SystemStatus, L::View),
                (F::ScheduleTemplatesApply, L::Full),
                (F::ScheduleTemplatesEdit, L::Full),
                (F::ReceiptTemplates, L::Full),
                (F::TemporaryAccessGroups, L::Full),
            ]),
            PredefinedRole::Receptionist => set(&[
                (F::Key, L::View),
                (F::KeyAuthorisation, L::Full),
                (F::KeyHandInOut, L::Full),
                (F::KeyValidity, L::Full),
                (F::KeySchedule, L::Full),
                (F::ScheduleTemplatesApply, L::Full),
                (F::Employee, L::Full),
                (F::Visitor, L::Full),
                (F::Cylinder, L::List),
                (F::ReceiptTemplates, L::View),
            ]),
            PredefinedRole::Approver => set(&[(F::Approvals, L::Full)]),
            PredefinedRole::CylinderProgrammer => {
                set(&[(F::Cylinder, L::View), (F::CylinderProgramming, L::Full)])
            }
            PredefinedRole::WebService => set(&[
                (F::Employee, L::Full),
                (F::Visitor, L::Full),
                (F::Key, L::Full),
                (F::KeyAuthorisation, L::Full),
                (F::KeyHandInOut, L::Full),
                (F::Cylinder, L::View),
                (F::AccessProfiles, L::View),
            ]),
        }
    }
}

/// An administrator role: a named permission set assigned to C-keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Unique name, 1–50 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Level per function; omitted functions are None.
    #[serde(default)]
    pub permissions: PermissionSet,
    /// Set for the pre-defined roles; read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predefined: Option<PredefinedRole>,
}

impl Role {
    pub fn predefined(p: PredefinedRole) -> Self {
        Self {
            name: p.display_name().into(),
            description: None,
            permissions: p.permissions(),
            predefined: Some(p),
        }
    }

    /// The approver role is never combined with other roles.
    pub fn is_approver(&self) -> bool {
        self.permissions
            .get(&F::Approvals)
            .copied()
            .unwrap_or_default()
            == L::Full
    }
}

impl Resource for Role {
    const KIND: ObjectKind = ObjectKind::Role;

    fn keep_system_fields(&mut self, previous: Option<&Self>) {
        self.predefined = previous.and_then(|p| p.predefined);
    }

    fn validate(&self, _ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
        let mut e = validate_permissions(&self.permissions);
        e.text("name", &self.name, 1, 50);
        e.opt_text("description", &self.description, 500);
        if self.is_approver()
            && self
                .permissions
                .iter()
                .any(|(f, l)| *f != F::Approvals && *l > L::None)
        {
            e.push(
                "permissions.approvals",
                "approving is never combined with other permissions",
            );
        }
        e.into_result()
    }

    fn check_update(&self, previous: &Self) -> Result<(), ValidationErrors> {
        if self.predefined != previous.predefined {
            return Err(ValidationErrors::single("predefined", "cannot be changed"));
        }
        if let Some(p) = previous.predefined
            && p.read_only()
            && (self.permissions != previous.permissions || self.name != previous.name)
        {
            return Err(ValidationErrors::single(
                "permissions",
                format!("the {} role is read-only", p.display_name()),
            ));
        }
        Ok(())
    }

    fn check_delete(&self) -> Result<(), String> {
        match self.predefined {
            Some(p) => Err(format!(
                "the pre-defined {} role cannot be deleted",
                p.display_name()
            )),
            None => Ok(()),
        }
    }

    fn projection(&self) -> Projection {
        Projection {
            name: self.name.trim().to_string(),
            type_: Some(if self.predefined.is_some() {
                "predefined"
            } else {
                "custom"
            }),
            unique_name: true,
            ..Projection::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_roles_satisfy_their_own_dependencies() {
        for r in PredefinedRole::ALL {
            let errs = validate_permissions(&r.permissions());
            assert!(errs.is_empty(), "{r:?}: {errs}");
        }
    }

    #[test]
    fn super_administrator_has_everything_but_approving() {
        let p = PredefinedRole::SuperAdministrator.permissions();
        assert_eq!(p.get(&F::Approvals), None);
        assert_eq!(p.get(&F::Key), Some(&L::Full));
        assert_eq!(p.get(&F::KeyUpdateHistory), Some(&L::View));
        assert_eq!(p.len(), Function::ALL.len() - 1);
    }

    #[test]
    fn dependencies_table() {
        // (function, level, missing dependency) -> error expected
        let cases: &[(&[(Function, Level)], bool)] = &[
            (&[(F::KeyAuthorisation, L::View)], true),
            (&[(F::KeyAuthorisation, L::View), (F::Key, L::View)], true),
            (
                &[
                    (F::KeyAuthorisation, L::View),
                    (F::Key, L::View),
                    (F::Cylinder, L::List),
                ],
                false,
            ),
            (
                &[(F::EmployeeImport, L::Full), (F::Employee, L::View)],
                true,
            ),
            (
                &[(F::EmployeeImport, L::Full), (F::Employee, L::Full)],
                false,
            ),
            (&[(F::KeyValidity, L::Full), (F::Key, L::List)], true),
            (&[(F::Domain, L::View)], true), // level not offered
            (&[(F::Key, L::List)], false),
        ];
        for (pairs, expect_err) in cases {
            let set: PermissionSet = pairs.iter().copied().collect();
            assert_eq!(
                !validate_permissions(&set).is_empty(),
                *expect_err,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn hierarchy_and_effective() {
        let a: PermissionSet = [(F::Key, L::List), (F::Cylinder, L::Full)]
            .into_iter()
            .collect();
        let b: PermissionSet = [(F::Key, L::View)].into_iter().collect();
        let eff = effective(&[&a, &b]);
        assert_eq!(eff[&F::Key], L::View);
        assert_eq!(eff[&F::Cylinder], L::Full);
        let cand: PermissionSet = [(F::Key, L::Full), (F::Cylinder, L::View)]
            .into_iter()
            .collect();
        assert_eq!(exceeds(&cand, &eff), vec![F::Key]);
    }

    #[test]
    fn approver_not_combined() {
        let mut r = Role::predefined(PredefinedRole::Approver);
        let ctx_f = crate::system::FixedSettings {
            remote: true,
            cylinder_groups: true,
            base_time_zone: "UTC".into(),
            audit_trail_approvals: true,
        };
        let s = crate::system::SystemSettings::default();
        let ctx = ValidationContext {
            fixed: &ctx_f,
            settings: &s,
        };
        assert!(r.validate(&ctx).is_ok());
        r.permissions.insert(F::Key, L::List);
        assert!(r.validate(&ctx).is_err());
    }
}
