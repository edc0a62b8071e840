//! SQL helpers shared by the queue and the outbox: placeholders per backend, timestamps as
//! fixed-width RFC 3339 text, and row decoding.

use std::borrow::Cow;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{JobsError, Result};

/// Longest error text kept in `last_error`.
pub(crate) const MAX_ERROR_LEN: usize = 4000;

/// Render `?` placeholders as `$1, $2, …` on PostgreSQL; SQLite keeps plain `?`.
/// The statements of this crate never contain `?` inside a literal.
pub(crate) fn render(sqlite: bool, sql: &str) -> Cow<'_, str> {
    if sqlite {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            let _ = write!(out, "${n}");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `?, ?, ?` for an `IN (…)` list of `n` items.
pub(crate) fn list(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// Whether a connection talks to SQLite.
pub(crate) fn is_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

/// Stored timestamp: UTC, microseconds, `Z` (fixed width, so text order is time order).
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| JobsError::Corrupt(format!("timestamp '{s}': {e}")))
}

pub(crate) fn get_ts(row: &AnyRow, col: &str) -> Result<DateTime<Utc>> {
    parse_ts(&row.try_get::<String, _>(col)?)
}

pub(crate) fn get_opt_ts(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<String>, _>(col)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

pub(crate) fn get_json(row: &AnyRow, col: &str) -> Result<serde_json::Value> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| JobsError::Corrupt(format!("{col}: {e}")))
}

/// `u32` from a stored non-negative counter.
pub(crate) fn get_u32(row: &AnyRow, col: &str) -> Result<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| JobsError::Corrupt(format!("{col} = {v}")))
}

/// Error text cut to [`MAX_ERROR_LEN`] on a character boundary.
pub(crate) fn clip(message: &str) -> String {
    if message.len() <= MAX_ERROR_LEN {
        return message.to_string();
    }
    let mut end = MAX_ERROR_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn after(now: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_backend() {
        assert_eq!(
            render(true, "a = ? AND b IN (?, ?)"),
            "a = ? AND b IN (?, ?)"
        );
        assert_eq!(
            render(false, "a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(list(3), "?, ?, ?");
        assert_eq!(list(0), "");
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .expect("ts")
            .with_timezone(&Utc);
        let b = after(a, std::time::Duration::from_micros(1));
        assert!(ts(a) < ts(b));
        assert_eq!(ts(a).len(), ts(b).len());
        assert_eq!(parse_ts(&ts(b)).expect("parses"), b);
    }

    #[test]
    fn clips_on_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let c = clip(&long);
        assert!(c.len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }
}
