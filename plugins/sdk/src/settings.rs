//! The plugin's configuration section (`[plugins.instances.NAME.config]` in
//! the gateway configuration), read through the `config` capability.
//!
//! [`settings()`] deserialises the whole section into a struct; errors name
//! the key (`config `url` is missing`, `config `retry.max`: invalid type: ...`).
//! A setting `foo_env = "VAR"` in the gateway configuration reaches the
//! plugin as `foo` with the value of the environment variable `VAR` (the
//! host resolves it), so a secret never has to sit in the file.
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     url: String,
//!     #[serde(default)]
//!     token: Option<String>,
//! }
//! let s: Settings = lockgate_plugin_sdk::settings()?;
//! ```

use serde::de::DeserializeOwned;

use crate::{Error, config};

/// The whole section deserialised into `T` (a missing section is `{}`).
/// Needs the `config` grant.
pub fn settings<T: DeserializeOwned>() -> Result<T, Error> {
    parse(&config::get_all())
}

/// Deserialises a configuration section given as JSON text into `T`; the
/// error (`error::invalid`) names the offending key.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde_json appends the position in the JSON text, which the
        // administrator never wrote: drop it.
        let message = match message.rsplit_once(" at line ") {
            Some((m, _)) if inner.line() > 0 => m.to_owned(),
            _ => message,
        };
        Error::invalid(describe(&path, &message))
    })
}

/// `config `a.b` ...`: the key path and what is wrong with it.
fn describe(path: &str, message: &str) -> String {
    let key = |name: &str| match path {
        "." | "" => name.to_owned(),
        parent => format!("{parent}.{name}"),
    };
    if let Some(name) = quoted(message, "missing field `") {
        return format!("config `{}` is missing", key(name));
    }
    if let Some(name) = quoted(message, "unknown field `") {
        let expected = message
            .split_once(", expected ")
            .map(|(_, e)| format!(" (expected {e})"))
            .unwrap_or_default();
        // The path already ends with the unknown key.
        let full = if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            key(name)
        };
        return format!("config `{full}` is not a known setting{expected}");
    }
    match path {
        "." | "" => format!("config: {message}"),
        path => format!("config `{path}`: {message}"),
    }
}

/// The name between `prefix` and the next backtick.
fn quoted<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Retry {
        max: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        url: String,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        retry: Option<Retry>,
        #[serde(default)]
        kinds: Vec<String>,
    }

    fn invalid(json: &str) -> String {
        match parse::<Settings>(json) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_section_parses_into_the_struct() {
        let s: Settings = parse(
            r#"{"url":"https://h.example/x","token":"t","headers":{"x-a":"1"},"retry":{"max":3}}"#,
        )
        .unwrap();
        assert_eq!(s.url, "https://h.example/x");
        assert_eq!(s.token.as_deref(), Some("t"));
        assert_eq!(s.headers["x-a"], "1");
        assert_eq!(s.retry, Some(Retry { max: 3 }));
        assert!(s.kinds.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(invalid("{}"), "config `url` is missing");
        assert_eq!(
            invalid(r#"{"url":5}"#),
            "config `url`: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            invalid(r#"{"url":"u","retry":{}}"#),
            "config `retry.max` is missing"
        );
        assert_eq!(
            invalid(r#"{"url":"u","retry":{"max":-1}}"#),
            "config `retry.max`: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            invalid(r#"{"url":"u","kinds":["a",1]}"#),
            "config `kinds[1]`: invalid type: integer `1`, expected a string"
        );
        let unknown = invalid(r#"{"url":"u","tokn":"t"}"#);
        assert!(
            unknown.starts_with("config `tokn` is not a known setting (expected one of `url`"),
            "{unknown}"
        );
        assert!(
            invalid(r#"{"url":"u","retry":{"max":1,"min":0}}"#)
                .starts_with("config `retry.min` is not a known setting")
        );
        assert_eq!(
            invalid("5"),
            "config: invalid type: integer `5`, expected struct Settings"
        );
    }

    #[test]
    fn an_empty_section_gives_the_defaults() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(default)]
        struct Optional {
            prefix: Option<String>,
        }
        assert_eq!(parse::<Optional>("{}").unwrap().prefix, None);
    }
}
