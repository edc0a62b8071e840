//! The lockgate gateway: configuration, CLI commands and the wiring of store, plugin host,
//! background runtime and API.

pub mod background;
pub mod cli;
pub mod config;
pub mod event_relay;
pub mod gateway;
pub mod plugins;
pub mod serve;

pub use config::{Config, ConfigError};
