//! The lockgate plugin SDK: bindings to the host capabilities
//! (`lockgate:host@0.1.0`) and small helpers over them.
//!
//! A plugin crate generates its own world (one of `lockgate:connector@0.1.0`)
//! with `wit_bindgen::generate!` and maps the host interfaces onto this crate
//! with `with:` (see `plugins/template`), so the types below are shared and
//! the helpers work on them. A component imports only the host interfaces it
//! actually calls; the gateway refuses a plugin whose imports are not granted.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "lockgate:host/imports",
        path: ["../../wit/host"],
        generate_all,
    });
}

pub use bindings::lockgate::host;
pub use host::{clock, config, gateway, kv, ldap, mqtt, smtp, types};
pub use types::{Cylinder, Error, Event, Job, Key, Person, Timestamp};
pub use wit_bindgen;

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

/// Typed lookups in the plugin's configuration section.
pub mod settings {
    use crate::{Error, config};

    /// The whole section as a JSON value (`{}` when the plugin has none).
    pub fn all() -> serde_json::Value {
        serde_json::from_str(&config::get_all()).unwrap_or(serde_json::Value::Null)
    }

    /// One key as a JSON value.
    pub fn value(key: &str) -> Option<serde_json::Value> {
        config::get(key).and_then(|s| serde_json::from_str(&s).ok())
    }

    /// One key that must be a string.
    pub fn string(key: &str) -> Result<String, Error> {
        match value(key) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(_) => Err(Error::invalid(format!("config `{key}` must be a string"))),
            None => Err(Error::invalid(format!("config `{key}` is missing"))),
        }
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
