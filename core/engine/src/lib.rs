//! The lockgate authorisation engine: pure functions over the lock data model.
//!
//! * [`opening`]: can this key open this cylinder side now, on the state the
//!   hardware actually holds (`DOMAIN.md` §2), with the reason when not.
//! * [`defined`]: what every key and cylinder should hold, from the
//!   administrators' configuration (§3, §5), including flexible revalidation.
//! * [`reconcile`]: the minimal remote update jobs and cylinder programming jobs
//!   that bring the actual state to the defined one (§4).
//! * [`jobs`]: the job lifecycle and who may load a job on which C-key.
//! * [`capability`]: what a firmware version can hold (§11).
//! * [`licence`]: Ed25519-signed licence files and the features they unlock.
//!
//! No I/O, no async, no clock: the caller passes the instant.

pub mod capability;
pub mod defined;
pub mod jobs;
pub mod licence;
pub mod opening;
pub mod reconcile;
pub mod revalidation;
pub mod state;
pub mod views;
