//! The plugin's configuration (`[plugins.instances.NAME.config]`): read and checked once
//! per sync, before the first request; every error names the key.

use std::collections::BTreeMap;

use lockgate_plugin_sdk::{Error, settings};
use serde::Deserialize;

/// Most items one page may ask for.
pub const MAX_PAGE_SIZE: u32 = 1_000;
/// Longest request timeout, milliseconds (the call's deadline caps it anyway).
const MAX_TIMEOUT_MS: u64 = 600_000;
/// The required person fields.
pub const REQUIRED_FIELDS: [&str; 3] = ["identifier", "first_name", "surname"];
/// The optional person fields a source field can be mapped to (`wit/host/types.wit`).
pub const OPTIONAL_FIELDS: [&str; 17] = lockgate_plugin_sdk::PERSON_FIELDS;

/// What the HR system speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `GET` with query parameters, a JSON object per page.
    Json,
    /// SOAP 1.1: `POST` of an envelope, a SOAP envelope per page.
    Soap,
}

/// How the next page is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paging {
    /// Page numbers counting from `first_page`.
    Page,
    /// An opaque cursor the previous page named at `next`.
    Cursor,
}

/// Where the watermark comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatermarkSource {
    /// The largest value of this item field (numbers compare as numbers, anything else as text).
    ItemField(Vec<String>),
    /// A token the server returns at this path of the response (the last page's value).
    Response(Vec<String>),
}

/// Credentials sent with every request. Never logged: `Debug` shows only the kind.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Bearer(_) => "Auth::Bearer(<redacted>)",
            Auth::Basic { .. } => "Auth::Basic(<redacted>)",
        })
    }
}

impl Auth {
    /// The `authorization` header value, if any.
    pub fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            )),
        }
    }
}

/// The configuration section as written (unknown keys are errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    format: Option<Format>,
    url: String,
    #[serde(default)]
    page_size: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    paging: Option<Paging>,
    #[serde(default)]
    page_param: Option<String>,
    #[serde(default)]
    first_page: Option<u64>,
    #[serde(default)]
    cursor_param: Option<String>,
    #[serde(default)]
    size_param: Option<String>,
    #[serde(default)]
    changed_since_param: Option<String>,
    #[serde(default)]
    items: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    changed_field: Option<String>,
    #[serde(default)]
    watermark_path: Option<String>,
    #[serde(default)]
    soap_action: Option<String>,
    #[serde(default)]
    soap_envelope: Option<String>,
    fields: BTreeMap<String, String>,
    #[serde(default)]
    active_field: Option<String>,
    #[serde(default)]
    active_values: Option<Vec<String>>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    max_deletions: Option<u32>,
    #[serde(default)]
    max_deletion_percent: Option<u8>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub format: Format,
    pub url: String,
    pub page_size: u32,
    pub timeout_ms: u64,
    pub auth: Auth,
    pub paging: Paging,
    /// JSON: query parameter of the page number / cursor / page size / watermark.
    pub page_param: String,
    pub first_page: u64,
    pub cursor_param: String,
    /// Empty: the page size is not sent.
    pub size_param: String,
    pub changed_since_param: String,
    /// Path of the item list in a page.
    pub items: Vec<String>,
    /// Path of the next-page indicator; none: a page shorter than `page_size` is the last.
    pub next: Option<Vec<String>>,
    pub watermark: Option<WatermarkSource>,
    pub soap_action: String,
    pub soap_envelope: String,
    /// Person field → path in an item: `identifier`, `first_name`, `surname` first, then the
    /// optional fields in [`OPTIONAL_FIELDS`] order.
    pub fields: Vec<(String, Vec<String>)>,
    pub active_field: Option<Vec<String>>,
    /// Lower-cased values of `active_field` that mean active.
    pub active_values: Vec<String>,
    pub source: String,
    pub domain: Option<String>,
    pub max_deletions: u32,
    pub max_deletion_percent: u8,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(message.into())
}

/// A dotted path (`contact.email`, `emails.0`): non-empty segments.
fn path(key: &str, value: &str) -> Result<Vec<String>, Error> {
    let segments: Vec<String> = value.split('.').map(str::to_owned).collect();
    if value.is_empty() || segments.iter().any(String::is_empty) || segments.len() > 16 {
        return Err(invalid(format!(
            "config `{key}`: `{value}` is not a path (dot-separated names, at most 16)"
        )));
    }
    Ok(segments)
}

/// A query parameter name: 1-64 characters of `A-Z a-z 0-9 - _ . ~ [ ]`.
fn param(key: &str, value: Option<String>, default: &str, empty_ok: bool) -> Result<String, Error> {
    let value = value.unwrap_or_else(|| default.to_owned());
    let ok = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~[]".contains(&b));
    if !ok || (value.is_empty() && !empty_ok) {
        return Err(invalid(format!(
            "config `{key}`: `{value}` is not a query parameter name (1-64 of A-Z a-z 0-9 - _ . ~ [ ])"
        )));
    }
    Ok(value)
}

/// Refuses a key that belongs to the other format.
fn only_for(format: Format, key: &str, set: bool, wanted: Format) -> Result<(), Error> {
    if set && format != wanted {
        let name = match wanted {
            Format::Json => "json",
            Format::Soap => "soap",
        };
        return Err(invalid(format!(
            "config `{key}` is only for format = \"{name}\""
        )));
    }
    Ok(())
}

impl Config {
    /// Reads the section through the `config` capability and checks it.
    pub fn read() -> Result<Config, Error> {
        Config::check(settings()?)
    }

    /// Checks a section given as JSON text (the unit tests' entry).
    #[cfg(test)]
    pub fn parse(json: &str) -> Result<Config, Error> {
        Config::check(lockgate_plugin_sdk::settings::parse(json)?)
    }

    fn check(raw: Raw) -> Result<Config, Error> {
        let format = raw.format.unwrap_or(Format::Json);
        let lower = raw.url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://"))
            || raw.url.contains('#')
            || raw
                .url
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid(
                "config `url` must be an http:// or https:// URL without fragment or spaces",
            ));
        }
        let page_size = raw.page_size.unwrap_or(500);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(invalid(format!(
                "config `page_size` must be 1-{MAX_PAGE_SIZE}"
            )));
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(30_000);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(invalid(format!(
                "config `timeout_ms` must be 1-{MAX_TIMEOUT_MS}"
            )));
        }
        let auth = match (raw.token, raw.username, raw.password) {
            (None, None, None) => Auth::None,
            (Some(t), None, None) if !t.is_empty() => Auth::Bearer(t),
            (Some(_), None, None) => return Err(invalid("config `token` is empty")),
            (None, Some(u), Some(p)) if !u.is_empty() && !u.contains(':') => Auth::Basic {
                username: u,
                password: p,
            },
            (None, Some(_), Some(_)) => {
                return Err(invalid(
                    "config `username` must be non-empty and without `:`",
                ));
            }
            (None, Some(_), None) => {
                return Err(invalid("config `password` is missing (with `username`)"));
            }
            (None, None, Some(_)) => {
                return Err(invalid("config `username` is missing (with `password`)"));
            }
            (Some(_), _, _) => {
                return Err(invalid(
                    "config `token`: give either `token` (bearer) or `username` and `password` (basic), not both",
                ));
            }
        };
        // Keys of the other format are mistakes, not silently ignored settings.
        only_for(format, "page_param", raw.page_param.is_some(), Format::Json)?;
        only_for(
            format,
            "cursor_param",
            raw.cursor_param.is_some(),
            Format::Json,
        )?;
        only_for(format, "size_param", raw.size_param.is_some(), Format::Json)?;
        only_for(
            format,
            "changed_since_param",
            raw.changed_since_param.is_some(),
            Format::Json,
        )?;
        only_for(
            format,
            "soap_action",
            raw.soap_action.is_some(),
            Format::Soap,
        )?;
        only_for(
            format,
            "soap_envelope",
            raw.soap_envelope.is_some(),
            Format::Soap,
        )?;
        let paging = raw.paging.unwrap_or(Paging::Page);
        let items = match (&raw.items, format) {
            (Some(p), _) => path("items", p)?,
            (None, Format::Json) => vec!["items".to_owned()],
            (None, Format::Soap) => return Err(invalid("config `items` is missing")),
        };
        let next = raw.next.as_deref().map(|p| path("next", p)).transpose()?;
        if paging == Paging::Cursor && next.is_none() {
            return Err(invalid(
                "config `next` is missing (paging = \"cursor\" reads the next cursor there)",
            ));
        }
        let watermark = match (raw.changed_field.as_deref(), raw.watermark_path.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "config `watermark_path`: give either `changed_field` or `watermark_path`, not both",
                ));
            }
            (Some(f), None) => Some(WatermarkSource::ItemField(path("changed_field", f)?)),
            (None, Some(p)) => Some(WatermarkSource::Response(path("watermark_path", p)?)),
            (None, None) => None,
        };
        let soap_envelope = raw.soap_envelope.unwrap_or_default();
        if format == Format::Soap {
            if soap_envelope.trim().is_empty() {
                return Err(invalid("config `soap_envelope` is missing"));
            }
            let needed = match paging {
                Paging::Page => "{page}",
                Paging::Cursor => "{cursor}",
            };
            if !soap_envelope.contains(needed) {
                return Err(invalid(format!(
                    "config `soap_envelope` has no `{needed}` placeholder (paging)"
                )));
            }
            if watermark.is_some() && !soap_envelope.contains("{changed_since}") {
                return Err(invalid(
                    "config `soap_envelope` has no `{changed_since}` placeholder (incremental syncs send the watermark there)",
                ));
            }
        }
        let mut fields = Vec::with_capacity(raw.fields.len());
        for (field, source) in &raw.fields {
            if !REQUIRED_FIELDS.contains(&field.as_str())
                && !OPTIONAL_FIELDS.contains(&field.as_str())
            {
                return Err(invalid(format!(
                    "config `fields.{field}`: not a person field (identifier, first_name, surname, {})",
                    OPTIONAL_FIELDS.join(", ")
                )));
            }
            fields.push((field.clone(), path(&format!("fields.{field}"), source)?));
        }
        for required in REQUIRED_FIELDS {
            if !fields.iter().any(|(f, _)| f == required) {
                return Err(invalid(format!("config `fields.{required}` is missing")));
            }
        }
        let rank = |f: &str| {
            REQUIRED_FIELDS
                .iter()
                .chain(OPTIONAL_FIELDS.iter())
                .position(|k| *k == f)
                .unwrap_or(usize::MAX)
        };
        fields.sort_by_key(|(f, _)| rank(f));
        let active_field = raw
            .active_field
            .as_deref()
            .map(|p| path("active_field", p))
            .transpose()?;
        let active_values = match (&active_field, raw.active_values) {
            (None, Some(_)) => {
                return Err(invalid(
                    "config `active_values` needs `active_field` (the field they are read from)",
                ));
            }
            (_, Some(v)) if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) => {
                return Err(invalid("config `active_values` must list non-empty values"));
            }
            (_, Some(v)) => v.iter().map(|s| s.trim().to_lowercase()).collect(),
            (_, None) => vec!["true".to_owned()],
        };
        let source = raw.source.unwrap_or_else(|| "hr".to_owned());
        let source_ok = !source.is_empty()
            && source.len() <= 64
            && source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !source_ok {
            return Err(invalid(
                "config `source` must be 1-64 characters of A-Z a-z 0-9 . _ -",
            ));
        }
        if let Some(d) = &raw.domain
            && d.trim().is_empty()
        {
            return Err(invalid("config `domain` must not be empty"));
        }
        let max_deletion_percent = raw.max_deletion_percent.unwrap_or(10);
        if max_deletion_percent > 100 {
            return Err(invalid("config `max_deletion_percent` must be 0-100"));
        }
        Ok(Config {
            format,
            url: raw.url,
            page_size,
            timeout_ms,
            auth,
            paging,
            page_param: param("page_param", raw.page_param, "page", false)?,
            first_page: raw.first_page.unwrap_or(1),
            cursor_param: param("cursor_param", raw.cursor_param, "cursor", false)?,
            size_param: param("size_param", raw.size_param, "page_size", true)?,
            changed_since_param: param(
                "changed_since_param",
                raw.changed_since_param,
                "changed_since",
                false,
            )?,
            items,
            next,
            watermark,
            soap_action: raw.soap_action.unwrap_or_default(),
            soap_envelope,
            fields,
            active_field,
            active_values,
            source,
            domain: raw.domain,
            max_deletions: raw.max_deletions.unwrap_or(100),
            max_deletion_percent,
        })
    }

    /// Most items one page may hold: twice the page size (a server that ignores the page
    /// size is noticed, not followed into unbounded pages).
    pub fn max_items_per_page(&self) -> usize {
        self.page_size as usize * 2
    }
}

/// Standard base64 (RFC 4648, with padding) for the basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &str = r#""fields":{"identifier":"id","first_name":"name.first","surname":"name.last","email":"mail"}"#;

    fn err(json: &str) -> String {
        match Config::parse(json) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_json_section_gets_the_defaults() {
        let c =
            Config::parse(&format!(r#"{{"url":"https://hr.example.com/e",{FIELDS}}}"#)).unwrap();
        assert_eq!(c.format, Format::Json);
        assert_eq!(
            (c.page_size, c.paging, c.first_page),
            (500, Paging::Page, 1)
        );
        assert_eq!(c.items, ["items"]);
        assert_eq!(c.source, "hr");
        assert_eq!(c.fields[0], ("identifier".into(), vec!["id".into()]));
        assert_eq!(
            c.fields[2],
            ("surname".into(), vec!["name".into(), "last".into()])
        );
        assert_eq!(c.fields[3].0, "email");
        assert_eq!(c.active_values, ["true"]);
        assert!(c.watermark.is_none());
        assert_eq!(c.auth, Auth::None);
    }

    #[test]
    fn errors_name_the_key() {
        let url = r#""url":"https://hr.example.com/e""#;
        assert_eq!(err(&format!("{{{FIELDS}}}")), "config `url` is missing");
        assert!(err(&format!(r#"{{{url},"fields":{{}}}}"#)).contains("`fields.identifier`"));
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"page_size":1001}}"#))
                .contains("`page_size` must be 1-1000")
        );
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"format":"xml"}}"#)).starts_with("config `format`")
        );
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"pagesize":3}}"#))
                .contains("`pagesize` is not a known setting")
        );
        assert!(err(r#"{"url":"ftp://x","fields":{}}"#).contains("`url`"));
        assert!(
            err(&format!(
                r#"{{{url},"fields":{{"identifier":"a","first_name":"b","surname":"c","shoe":"d"}}}}"#
            ))
            .contains("`fields.shoe`: not a person field")
        );
        assert!(err(&format!(r#"{{{url},{FIELDS},"items":"a..b"}}"#)).contains("`items`"));
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"paging":"cursor"}}"#)).contains("`next` is missing")
        );
        assert!(
            err(&format!(
                r#"{{{url},{FIELDS},"changed_field":"c","watermark_path":"w"}}"#
            ))
            .contains("not both")
        );
        assert!(
            err(&format!(
                r#"{{{url},{FIELDS},"token":"t","username":"u","password":"p"}}"#
            ))
            .contains("not both")
        );
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"username":"u"}}"#)).contains("`password` is missing")
        );
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"soap_action":"a"}}"#))
                .contains("only for format = \"soap\"")
        );
        assert!(
            err(&format!(
                r#"{{{url},{FIELDS},"format":"soap","items":"a.b"}}"#
            ))
            .contains("`soap_envelope` is missing")
        );
        assert!(
            err(&format!(
                r#"{{{url},{FIELDS},"format":"soap","items":"a","soap_envelope":"<x>{{page}}</x>","changed_field":"c"}}"#
            ))
            .contains("{changed_since}")
        );
        assert!(
            err(&format!(
                r#"{{{url},{FIELDS},"format":"soap","page_param":"p"}}"#
            ))
            .contains("only for format = \"json\"")
        );
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"active_values":["a"]}}"#))
                .contains("needs `active_field`")
        );
        assert!(err(&format!(r#"{{{url},{FIELDS},"source":"a b"}}"#)).contains("`source`"));
        assert!(err(&format!(r#"{{{url},{FIELDS},"page_param":"a&b"}}"#)).contains("`page_param`"));
        assert!(
            err(&format!(r#"{{{url},{FIELDS},"max_deletion_percent":101}}"#))
                .contains("`max_deletion_percent`")
        );
    }

    #[test]
    fn credentials_never_show_in_debug_and_encode_as_basic() {
        let c = Config::parse(&format!(
            r#"{{"url":"https://h/e",{FIELDS},"username":"Aladdin","password":"open sesame"}}"#
        ))
        .unwrap();
        assert_eq!(
            c.auth.header().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("open sesame") && !shown.contains("Aladdin"),
            "{shown}"
        );
        let t = Config::parse(&format!(
            r#"{{"url":"https://h/e",{FIELDS},"token":"s3cret"}}"#
        ))
        .unwrap();
        assert_eq!(t.auth.header().unwrap(), "Bearer s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b""), "");
    }
}
