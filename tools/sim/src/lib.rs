//! `lockgate-sim`: plays remote PDs of every generation and the keys inserted in them,
//! speaking the PD protocol of `docs/pds/` over mutual TLS to a running gateway. It enrols
//! its PDs through the API, heartbeats, inserts keys, writes the jobs it gets into its own
//! key model, reports them, uploads audit trails, carries cylinder jobs the way C-keys
//! before firmware 12 do (load and confirm through the API), and at the end checks every
//! simulated key against the gateway's `can-open`. With faults on it pulls keys out
//! mid-update, repeats and reorders reports, drops connections mid-frame, sends records
//! from a skewed clock and revokes a certificate, and checks the gateway's answer to each.

pub mod api;
pub mod pd;
pub mod scenario;
pub mod wire;

pub use scenario::{Options, Summary, run};
