//! The lockgate gateway: configuration, CLI commands and the wiring of store and API.

pub mod cli;
pub mod config;
pub mod serve;

pub use config::{Config, ConfigError};
