//! The lockgate gateway: configuration, CLI commands and the wiring of store, plugin host,
//! background runtime and API.

pub mod background;
pub mod cli;
pub mod config;
pub mod event_relay;
pub mod gateway;
pub mod pd_listener;
pub mod plugins;
pub mod redact;
pub mod serve;
pub mod tls;

pub use config::{Config, ConfigError};
