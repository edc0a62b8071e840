//! `lockgate-sim`: plays remote PDs of every generation and the keys inserted in them,
//! speaking the PD protocol of `docs/pds/` over mutual TLS to a running gateway. It enrols
//! its PDs through the API, heartbeats, inserts keys, writes the jobs it gets into its own
//! key model, reports them, uploads audit trails, has cylinder jobs loaded on a C-key with
//! firmware 12.7.0 (through the API) that fetches them at a PD, programs the simulated
//! cylinders and reports them with the cylinders' audit trails, and at the end checks every
//! simulated key against the gateway's `can-open`. With faults on it pulls keys out
//! mid-update, repeats and reorders reports, drops connections mid-frame, sends records
//! from a skewed clock, revokes a certificate and confirms a remotely updated C-key's job
//! by hand, and checks the gateway's answer to each.

pub mod api;
pub mod pd;
pub mod scenario;
pub mod wire;

pub use scenario::{Options, Summary, run};
