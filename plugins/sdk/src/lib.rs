//! The lockgate plugin SDK: the bindings of every connector world
//! (`lockgate:connector@0.1.0`, generated once here), the host capabilities
//! (`lockgate:host@0.1.0`) and helpers over them.
//!
//! A plugin is a type implementing [`plugin::Guest`] and its world's
//! interface, plus one macro line naming the world:
//!
//! ```ignore
//! use lockgate_plugin_sdk::{Error, Event, event_sink, plugin};
//!
//! struct Plugin;
//!
//! impl plugin::Guest for Plugin {
//!     fn describe() -> plugin::PluginInfo { /* name, version, description */ }
//! }
//!
//! impl event_sink::Guest for Plugin {
//!     fn publish(event: Event) -> Result<(), Error> { /* ... */ }
//!     fn handle_command(_: event_sink::Command) -> Result<String, Error> { /* ... */ }
//! }
//!
//! lockgate_plugin_sdk::export_event_bridge!(Plugin);
//! ```
//!
//! | world | macro | interface to implement |
//! |---|---|---|
//! | `directory-sync` | [`export_directory_sync!`] | [`directory_source::Guest`] |
//! | `sso` | [`export_sso!`] | [`identity_provider::Guest`] |
//! | `web-service` | [`export_web_service!`] | [`http_handler::Guest`] |
//! | `notifier` | [`export_notifier!`] | [`notification_sink::Guest`] |
//! | `content-source` | [`export_content_source!`] | [`content_provider::Guest`] |
//! | `device-protocol` | [`export_device_protocol!`] | [`device_handler::Guest`] |
//! | `event-bridge` | [`export_event_bridge!`] | [`event_sink::Guest`] |
//!
//! A component imports only the host interfaces it actually calls; the
//! gateway refuses a plugin whose imports are not granted. Helpers:
//! [`settings()`] (the configuration section into a typed struct),
//! [`http`] (outbound requests through `wasi:http`), [`log`], [`store`],
//! [`ldap_escape`].

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "lockgate:host/imports",
        path: ["../../wit/host"],
        generate_all,
    });
}

#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod worlds;

pub mod http;
pub mod settings;

pub use bindings::lockgate::host;
pub use host::{clock, config, device, employees, gateway, kv, ldap, mqtt, smtp, types};
pub use settings::settings;
pub use types::{Cylinder, Error, Event, Job, Key, Person, Timestamp};

/// The optional fields of a [`Person`] by their REST / CSV names, in the order of the CSV
/// format (`wit/host/types.wit`, `person.fields`): what a connector maps its source to.
pub const PERSON_FIELDS: [&str; 17] = [
    "title",
    "email",
    "phone",
    "organisation",
    "department",
    "street",
    "postcode",
    "language",
    "region",
    "job",
    "city",
    "state",
    "country",
    "company_address",
    "location",
    "mobile_phone",
    "gmd_text",
];
pub use wit_bindgen;

/// World `content-source`: [`content_provider::Guest`].
pub use worlds::content_source::exports::lockgate::connector::content_provider;
/// World `device-protocol`: [`device_handler::Guest`].
pub use worlds::device_protocol::exports::lockgate::connector::device_handler;
/// World `directory-sync`: [`directory_source::Guest`].
pub use worlds::directory_sync::exports::lockgate::connector::directory_source;
/// World `event-bridge`: [`event_sink::Guest`].
pub use worlds::event_bridge::exports::lockgate::connector::event_sink;
/// World `notifier`: [`notification_sink::Guest`].
pub use worlds::notifier::exports::lockgate::connector::notification_sink;
/// `plugin`, exported by every world: [`plugin::Guest::describe`].
pub use worlds::plugin::exports::lockgate::connector::plugin;
/// World `sso`: [`identity_provider::Guest`].
pub use worlds::sso::exports::lockgate::connector::identity_provider;
/// The request and response records of the `sso` and `web-service` worlds.
pub use worlds::sso::lockgate::connector::http_types;
/// World `web-service`: [`http_handler::Guest`].
pub use worlds::web_service::exports::lockgate::connector::http_handler;

/// Defines `export_<world>!`: `plugin` plus the world's own export.
macro_rules! world_export_macro {
    ($dollar:tt $name:ident, $world:literal, $part:ident, $part_impl:ident, $trait:literal) => {
        #[doc = concat!(
            "Exports `$ty` as a `", $world, "` plugin: `$ty` implements [`plugin::Guest`] and [`",
            $trait, "`]. One line at the crate root:\n\n```ignore\nlockgate_plugin_sdk::",
            stringify!($name), "!(Plugin);\n```"
        )]
        #[macro_export]
        macro_rules! $name {
            ($dollar ty:ident) => {
                $dollar crate::__export_plugin_impl!($dollar ty with_types_in $dollar crate::worlds::plugin);
                $dollar crate::$part_impl!($dollar ty with_types_in $dollar crate::worlds::$part);
            };
        }
    };
}

world_export_macro!($ export_directory_sync, "directory-sync", directory_sync, __export_directory_sync_impl, "directory_source::Guest");
world_export_macro!($ export_sso, "sso", sso, __export_sso_impl, "identity_provider::Guest");
world_export_macro!($ export_web_service, "web-service", web_service, __export_web_service_impl, "http_handler::Guest");
world_export_macro!($ export_notifier, "notifier", notifier, __export_notifier_impl, "notification_sink::Guest");
world_export_macro!($ export_content_source, "content-source", content_source, __export_content_source_impl, "content_provider::Guest");
world_export_macro!($ export_device_protocol, "device-protocol", device_protocol, __export_device_protocol_impl, "device_handler::Guest");
world_export_macro!($ export_event_bridge, "event-bridge", event_bridge, __export_event_bridge_impl, "event_sink::Guest");

impl Error {
    /// A failure with a free-text reason (`error::other`).
    pub fn other(reason: impl Into<String>) -> Self {
        Error::Other(reason.into())
    }

    /// Invalid input (`error::invalid`).
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }

    /// A remote system is unavailable (`error::unavailable`).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Error::Unavailable(reason.into())
    }

    /// Refused: not granted or not allowed (`error::denied`).
    pub fn denied(reason: impl Into<String>) -> Self {
        Error::Denied(reason.into())
    }

    /// The object asked for does not exist (`error::not-found`).
    pub fn not_found(reason: impl Into<String>) -> Self {
        Error::NotFound(reason.into())
    }
}

/// Logging into the gateway's log; the host adds the plugin name.
pub mod log {
    pub use crate::bindings::lockgate::host::log::Level;
    use crate::bindings::lockgate::host::log::log;

    /// Logs at `trace`.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at `info`.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at `error`.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Helpers over the plugin-scoped key-value store.
pub mod store {
    use crate::{Error, kv};

    /// A UTF-8 string value.
    pub fn get_string(key: &str) -> Result<Option<String>, Error> {
        kv::get(key)?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| Error::invalid(format!("kv `{key}` is not UTF-8")))
            })
            .transpose()
    }

    /// Stores a UTF-8 string value.
    pub fn set_string(key: &str, value: &str) -> Result<(), Error> {
        kv::set(key, value.as_bytes())
    }

    /// A `u64` counter or watermark (8 bytes, little-endian).
    pub fn get_u64(key: &str) -> Result<Option<u64>, Error> {
        kv::get(key)?
            .map(|bytes| {
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_le_bytes)
                    .map_err(|_| Error::invalid(format!("kv `{key}` is not a u64")))
            })
            .transpose()
    }

    /// Stores a `u64` (8 bytes, little-endian).
    pub fn set_u64(key: &str, value: u64) -> Result<(), Error> {
        kv::set(key, &value.to_le_bytes())
    }
}

/// Escaping of values placed into LDAP filters (RFC 4515) and DNs (RFC 4514).
/// Any value that comes from outside the plugin's configuration (a watermark,
/// an identifier, a name) must pass through these before it is put into a
/// filter or DN string.
pub mod ldap_escape {
    /// Escapes a value for an RFC 4515 filter: `*`, `(`, `)`, `\` and NUL
    /// become `\2a`, `\28`, `\29`, `\5c`, `\00`; everything else is kept
    /// (UTF-8 is valid in filter values).
    pub fn filter_value(value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            match c {
                '*' => out.push_str("\\2a"),
                '(' => out.push_str("\\28"),
                ')' => out.push_str("\\29"),
                '\\' => out.push_str("\\5c"),
                '\0' => out.push_str("\\00"),
                c => out.push(c),
            }
        }
        out
    }

    /// Escapes an attribute value for an RFC 4514 DN: `,`, `+`, `"`, `\\`,
    /// `<`, `>`, `;` and `=` are backslash-escaped, as are a leading `#` or
    /// space and a trailing space; NUL becomes `\\00`.
    pub fn dn_value(value: &str) -> String {
        let mut out = String::with_capacity(value.len() + 4);
        let last = value.chars().count().saturating_sub(1);
        for (i, c) in value.chars().enumerate() {
            match c {
                ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                    out.push('\\');
                    out.push(c);
                }
                '\0' => out.push_str("\\00"),
                '#' if i == 0 => out.push_str("\\#"),
                ' ' if i == 0 || i == last => out.push_str("\\ "),
                c => out.push(c),
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn filter_values_cannot_change_the_filter() {
            assert_eq!(filter_value("Müller"), "Müller");
            assert_eq!(filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
            assert_eq!(filter_value("a\\b\0"), "a\\5cb\\00");
        }

        #[test]
        fn dn_values_are_escaped_per_rfc_4514() {
            assert_eq!(dn_value("Smith, John"), "Smith\\, John");
            assert_eq!(dn_value("#1 "), "\\#1\\ ");
            assert_eq!(dn_value(" a=b+c"), "\\ a\\=b\\+c");
            assert_eq!(dn_value("x<y>;\"q\""), "x\\<y\\>\\;\\\"q\\\"");
        }
    }
}
