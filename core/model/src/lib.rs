//! The lock data model of lockgate: domain types, identifiers, validation and permissions, with no I/O.
//!
//! Every object an administrator manages (persons, keys, C-keys, key groups,
//! cylinders, cylinder groups, domains, access profiles, temporary access
//! groups, schedule templates, remote PDs, roles) implements [`Resource`]:
//! it validates itself, names the other objects it refers to, and exposes the
//! projection the store indexes for search.

pub mod access_profile;
pub mod ckey;
pub mod common;
pub mod cylinder;
pub mod domain;
pub mod employee_csv;
pub mod event;
pub mod firmware;
pub mod key;
pub mod key_group;
pub mod permission;
pub mod person;
pub mod remote_pd;
pub mod resource;
pub mod schedule;
pub mod system;
pub mod validation;

pub use common::{ExternalLink, ObjectId, Tags};
pub use firmware::FirmwareVersion;
pub use resource::{ObjectKind, Projection, Reference, Resource};
pub use validation::{FieldError, ValidationErrors};
