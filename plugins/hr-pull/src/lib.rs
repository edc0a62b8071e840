//! Plugin `hr-pull`: pulls persons from an HR system's REST/JSON or SOAP 1.1 endpoint into
//! lockgate (world `directory-sync`, outbound HTTP through `wasi:http`).
//!
//! One `sync` asks the HR system page by page (page numbers or a cursor; on an incremental
//! sync only the changes since the watermark), maps every item to a person (the `fields`
//! table, `active_field`) and stages it with the core; the core then applies the whole
//! batch, the deletions (behind the mass-deletion guard) and the watermark in one
//! transaction (`gateway.sync-persons`), exactly as the LDAP `directory-sync` does. A sync
//! cut off anywhere, or a page that cannot be read (malformed, too large, too deep, too
//! many values, a DOCTYPE, a SOAP fault), therefore changes nothing, and the error names
//! the page and what is wrong.
//!
//! Items are never dropped silently: an item missing a required value is staged with the
//! value empty, so the core's validation reports it (`skipped`, with field and reason, or
//! the whole sync refused) as the source's `on_invalid` says; the plugin adds the page and
//! item to the core's `persons[i]` so the row can be found in the HR system.
//!
//! Configuration: see [`config`] and docs/connectors/hr-pull.md.

mod config;
mod mapping;
mod page;

use std::time::Duration;

use lockgate_plugin_sdk::gateway::{self, SyncReport, SyncRequest};
use lockgate_plugin_sdk::http::{Request, Response};
use lockgate_plugin_sdk::{Error, directory_source, log, plugin, store};

use config::{Config, Format, Paging, WatermarkSource};
use page::Page;

/// kv key of the watermark.
const WATERMARK_KEY: &str = "watermark";
/// Most items one sync reads (the core's batch limit).
const MAX_ENTRIES: usize = 1_000_000;
/// Most pages one sync asks for.
const MAX_PAGES: u32 = 100_000;

/// Where the next request starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Page(u64),
    /// None: the first page.
    Cursor(Option<String>),
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for an XML element's content.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The JSON request's URL: `url` plus the page size, page or cursor and changed-since
/// parameters.
fn json_url(cfg: &Config, position: &Position, since: Option<&str>) -> String {
    let mut url = cfg.url.clone();
    let mut params: Vec<(&str, String)> = Vec::new();
    if !cfg.size_param.is_empty() {
        params.push((&cfg.size_param, cfg.page_size.to_string()));
    }
    match position {
        Position::Page(n) => params.push((&cfg.page_param, n.to_string())),
        Position::Cursor(Some(c)) => params.push((&cfg.cursor_param, c.clone())),
        Position::Cursor(None) => {}
    }
    if let Some(since) = since {
        params.push((&cfg.changed_since_param, since.to_owned()));
    }
    for (name, value) in params {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&encode(name));
        url.push('=');
        url.push_str(&encode(&value));
    }
    url
}

/// The SOAP request's envelope: `{page}`, `{cursor}`, `{page_size}` and `{changed_since}`
/// replaced (XML-escaped; empty when there is none), in one pass.
fn soap_envelope(cfg: &Config, position: &Position, since: Option<&str>) -> String {
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "page" => match position {
                Position::Page(n) => n.to_string(),
                Position::Cursor(_) => String::new(),
            },
            "cursor" => match position {
                Position::Cursor(Some(c)) => xml_escape(c),
                _ => String::new(),
            },
            "page_size" => cfg.page_size.to_string(),
            "changed_since" => since.map(xml_escape).unwrap_or_default(),
            _ => return None,
        })
    };
    let template = &cfg.soap_envelope;
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| Some((close, value(&after[..close])?)))
        {
            Some((close, v)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The request for one page.
fn request(cfg: &Config, position: &Position, since: Option<&str>) -> Request {
    let request = match cfg.format {
        Format::Json => {
            Request::get(json_url(cfg, position, since)).header("accept", "application/json")
        }
        Format::Soap => Request::post(cfg.url.clone())
            .header("content-type", "text/xml; charset=utf-8")
            .header("accept", "text/xml")
            .header("soapaction", format!("\"{}\"", cfg.soap_action))
            .body(soap_envelope(cfg, position, since)),
    };
    let request = request.timeout(Duration::from_millis(cfg.timeout_ms));
    match cfg.auth.header() {
        Some(value) => request.header("authorization", value),
        None => request,
    }
}

/// The same error with `page N: ` before its message.
fn at_page(e: Error, page_no: u32) -> Error {
    let p = |m: String| format!("page {page_no}: {m}");
    match e {
        Error::Invalid(m) => Error::Invalid(p(m)),
        Error::NotFound(m) => Error::NotFound(p(m)),
        Error::Denied(m) => Error::Denied(p(m)),
        Error::Unavailable(m) => Error::Unavailable(p(m)),
        Error::Other(m) => Error::Other(p(m)),
    }
}

/// Reads one answer into a page, within the bounds.
fn read(cfg: &Config, page_no: u32, response: Response) -> Result<Page, Error> {
    if !response.is_success() {
        if cfg.format == Format::Soap
            && response.status == 500
            && let Some(fault) = page::soap_fault(&response.body)
        {
            // A client fault is the request's (or the configuration's) fault; anything else
            // is the server's, which may pass.
            let message = format!("page {page_no}: {fault}");
            return Err(if fault.contains("Client`") {
                Error::Invalid(message)
            } else {
                Error::Unavailable(message)
            });
        }
        return Err(at_page(
            response.error_for_status().err().unwrap_or_else(|| {
                Error::Other("a successful status was treated as an error".into())
            }),
            page_no,
        ));
    }
    let token = match &cfg.watermark {
        Some(WatermarkSource::Response(path)) => Some(path.as_slice()),
        _ => None,
    };
    let next = cfg.next.as_deref();
    let page = match cfg.format {
        Format::Json => page::json(&response.body, &cfg.items, next, token),
        Format::Soap => page::soap(&response.body, &cfg.items, next, token),
    }
    .map_err(|m| Error::invalid(format!("page {page_no}: {m}")))?;
    if page.items.len() > cfg.max_items_per_page() {
        return Err(Error::invalid(format!(
            "page {page_no}: {} items, more than twice page_size ({})",
            page.items.len(),
            cfg.page_size
        )));
    }
    Ok(page)
}

/// Which page and item each staged person came from, to name rows the core reports as
/// `persons[i]`.
#[derive(Debug, Default)]
struct Rows {
    /// (index of the page's first staged person, page number), ascending.
    starts: Vec<(usize, u32)>,
}

impl Rows {
    /// Page number and item (from 1) of staged person `i`.
    fn locate(&self, i: usize) -> Option<(u32, usize)> {
        let k = self.starts.partition_point(|(start, _)| *start <= i);
        let (start, page_no) = *self.starts.get(k.checked_sub(1)?)?;
        Some((page_no, i - start + 1))
    }

    /// `text` with ` (page P, item K)` after every `persons[i]` (and its field path).
    fn annotate(&self, text: &str) -> String {
        const OPEN: &str = "persons[";
        let mut out = String::with_capacity(text.len() + 32);
        let mut rest = text;
        while let Some(at) = rest.find(OPEN) {
            let after = &rest[at + OPEN.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let closed = digits > 0 && after.as_bytes().get(digits) == Some(&b']');
            let mut end = at + OPEN.len() + digits + usize::from(closed);
            if closed {
                // The field path after the index: `persons[4].email`.
                end += rest[end..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
                    .count();
            }
            out.push_str(&rest[..end]);
            if closed
                && let Some((page_no, item)) = after[..digits]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.locate(i))
            {
                out.push_str(&format!(" (page {page_no}, item {item})"));
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }
}

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "hr-pull".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Pulls persons from an HR system's REST/JSON or SOAP endpoint (paged, changed-since watermark).".into(),
        }
    }
}

impl directory_source::Guest for Plugin {
    fn sync(full: bool, dry_run: bool) -> Result<SyncReport, Error> {
        let cfg = Config::read()?;
        let stored = match cfg.watermark {
            Some(_) => store::get_string(WATERMARK_KEY)?,
            None => None,
        };
        // Without a watermark an incremental sync has nothing to start from.
        let full = full || stored.is_none();
        let since = if full { None } else { stored.as_deref() };
        log::info(&format!(
            "{} pull of source `{}` (dry run: {dry_run})",
            if full { "full" } else { "incremental" },
            cfg.source
        ));
        let mut position = match cfg.paging {
            Paging::Page => Position::Page(cfg.first_page),
            Paging::Cursor => Position::Cursor(None),
        };
        let mut rows = Rows::default();
        let mut staged = 0usize;
        let mut highest: Option<String> = None;
        let mut token: Option<String> = None;
        let mut page_no = 0u32;
        loop {
            page_no += 1;
            if page_no > MAX_PAGES {
                return Err(Error::invalid(format!(
                    "more than {MAX_PAGES} pages; raise `page_size` or check the paging settings"
                )));
            }
            let response = request(&cfg, &position, since)
                .send()
                .map_err(|e| at_page(e, page_no))?;
            let page = read(&cfg, page_no, response)?;
            if staged + page.items.len() > MAX_ENTRIES {
                return Err(Error::invalid(format!(
                    "page {page_no}: more than {MAX_ENTRIES} items in one sync"
                )));
            }
            let mut persons = Vec::with_capacity(page.items.len());
            for (k, item) in page.items.iter().enumerate() {
                let mapped = mapping::person(&cfg, item).map_err(|reason| {
                    let who = mapping::identifier_of(&cfg, item)
                        .map(|id| format!(" (identifier `{id}`)"))
                        .unwrap_or_default();
                    Error::invalid(format!("page {page_no}, item {}{who}: {reason}", k + 1))
                })?;
                if let Some(changed) = mapped.changed
                    && highest
                        .as_deref()
                        .is_none_or(|h| mapping::later(&changed, h))
                {
                    highest = Some(changed);
                }
                persons.push(mapped.person);
            }
            if page.token.is_some() {
                token = page.token.clone();
            }
            if !persons.is_empty() {
                rows.starts.push((staged, page_no));
                staged += persons.len();
                gateway::stage_persons(&persons).map_err(|e| at_page(e, page_no))?;
            }
            position = match (&position, page.next) {
                // Page numbers: another page while the indicator says so (or, without one,
                // while pages are full); an empty page always ends.
                (Position::Page(n), next) => {
                    let more = match &cfg.next {
                        Some(_) => next.is_some_and(|v| v != "false" && v != "0"),
                        None => page.items.len() >= cfg.page_size as usize,
                    };
                    if !more || page.items.is_empty() {
                        break;
                    }
                    Position::Page(n + 1)
                }
                (Position::Cursor(_), None) => break,
                (Position::Cursor(previous), Some(cursor)) => {
                    if previous.as_deref() == Some(cursor.as_str()) {
                        return Err(Error::invalid(format!(
                            "page {page_no}: the server named the same cursor again"
                        )));
                    }
                    Position::Cursor(Some(cursor))
                }
            };
        }
        let mark = match cfg.watermark {
            Some(WatermarkSource::ItemField(_)) => highest.or_else(|| stored.clone()),
            Some(WatermarkSource::Response(_)) => token.or_else(|| stored.clone()),
            None => None,
        };
        let mut report = gateway::sync_persons(&SyncRequest {
            source: cfg.source.clone(),
            domain: cfg.domain.clone(),
            full,
            dry_run,
            max_deletions: cfg.max_deletions,
            max_deletion_percent: cfg.max_deletion_percent,
            watermark: mark.map(|m| (WATERMARK_KEY.to_owned(), m.into_bytes())),
        })
        .map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(rows.annotate(&m)),
            other => other,
        })?;
        for skip in &mut report.skipped {
            if skip.identifier.starts_with("persons[") {
                skip.identifier = rows.annotate(&skip.identifier);
            }
        }
        log::info(&format!(
            "read {staged} items on {page_no} pages: created {}, updated {}, unchanged {}, deleted {}, skipped {}",
            report.created,
            report.updated,
            report.unchanged,
            report.deleted,
            report.skipped.len()
        ));
        Ok(report)
    }
}

lockgate_plugin_sdk::export_directory_sync!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!(
            r#"{{"url":"http://hr.test/api/employees?tenant=a%20b","fields":{{"identifier":"id","first_name":"f","surname":"s"}}{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn json_requests_carry_paging_and_the_watermark() {
        let c = cfg(r#","page_size":50,"changed_field":"changed""#);
        assert_eq!(
            json_url(&c, &Position::Page(3), Some("2026-01-01T00:00:00+01:00")),
            "http://hr.test/api/employees?tenant=a%20b&page_size=50&page=3&changed_since=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
        let c = cfg(r#","paging":"cursor","next":"next","cursor_param":"after","size_param":"""#);
        assert_eq!(
            json_url(&c, &Position::Cursor(None), None),
            "http://hr.test/api/employees?tenant=a%20b"
        );
        assert_eq!(
            json_url(&c, &Position::Cursor(Some("a&b=c".into())), None),
            "http://hr.test/api/employees?tenant=a%20b&after=a%26b%3Dc"
        );
    }

    #[test]
    fn soap_envelopes_get_their_placeholders_escaped_once() {
        let c = Config::parse(
            r#"{"url":"http://h/s","format":"soap","items":"R.E","changed_field":"c","soap_envelope":"<p>{page}</p><n>{page_size}</n><c>{changed_since}</c><k>{cursor}</k>{other}{","fields":{"identifier":"id","first_name":"f","surname":"s"}}"#,
        )
        .unwrap();
        assert_eq!(
            soap_envelope(&c, &Position::Page(2), Some("<{page}>")),
            "<p>2</p><n>500</n><c>&lt;{page}&gt;</c><k></k>{other}{"
        );
        assert_eq!(
            soap_envelope(&c, &Position::Page(1), None),
            "<p>1</p><n>500</n><c></c><k></k>{other}{"
        );
    }

    #[test]
    fn rows_of_the_core_are_named_by_page_and_item() {
        let rows = Rows {
            starts: vec![(0, 1), (3, 2), (5, 4)],
        };
        assert_eq!(rows.locate(0), Some((1, 1)));
        assert_eq!(rows.locate(4), Some((2, 2)));
        assert_eq!(rows.locate(9), Some((4, 5)));
        assert_eq!(
            rows.annotate("persons[4].identifier: is required; persons[x]; persons[12"),
            "persons[4].identifier (page 2, item 2): is required; persons[x]; persons[12"
        );
        assert_eq!(Rows::default().annotate("persons[1]"), "persons[1]");
    }

    #[test]
    fn errors_keep_their_kind_and_name_the_page() {
        assert!(
            matches!(at_page(Error::Unavailable("x".into()), 3), Error::Unavailable(m) if m == "page 3: x")
        );
        assert!(
            matches!(at_page(Error::Denied("y".into()), 1), Error::Denied(m) if m == "page 1: y")
        );
    }
}
