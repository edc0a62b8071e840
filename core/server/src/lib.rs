//! The lockgate gateway: configuration, CLI commands and the wiring of store, plugin host and API.

pub mod cli;
pub mod config;
pub mod plugins;
pub mod serve;

pub use config::{Config, ConfigError};
