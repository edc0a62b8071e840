//! A small SQL builder whose placeholders fit the connection it runs on: `$1, $2, ...`
//! on PostgreSQL, plain positional `?` on SQLite (sqlx's `QueryBuilder<Any>` always writes
//! `?`, which PostgreSQL refuses; and SQLite resolves each named `$n` by a linear search
//! over the names seen so far, which makes large multi-row statements quadratic).

use std::fmt::Write;

/// Stands for a placeholder until the statement is rendered for its backend.
const PLACEHOLDER: char = '\u{1}';

use sqlx::{Any, Arguments, Encode, Type, any::AnyArguments, error::BoxDynError};

use crate::{Result, StoreError};

/// SQL text plus its bound arguments.
pub(crate) struct Sql {
    sql: String,
    args: AnyArguments<'static>,
    n: usize,
    err: Option<BoxDynError>,
    /// Inside a `values` row: placeholders bound so far in that row (for the commas).
    row_items: Option<usize>,
}

impl Sql {
    pub fn new(sql: &str) -> Self {
        Sql {
            sql: sql.to_string(),
            args: AnyArguments::default(),
            n: 0,
            err: None,
            row_items: None,
        }
    }

    /// Append SQL text.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// Append a placeholder and bind its value.
    pub fn bind<T>(&mut self, v: T) -> &mut Self
    where
        T: 'static + Encode<'static, Any> + Type<Any>,
    {
        if let Some(k) = self.row_items.as_mut() {
            if *k > 0 {
                self.sql.push_str(", ");
            }
            *k += 1;
        }
        self.n += 1;
        self.sql.push(PLACEHOLDER);
        if let Err(e) = self.args.add(v) {
            self.err.get_or_insert(e);
        }
        self
    }

    /// Append `$a, $b, ...` binding each item.
    pub fn bind_list<T, I>(&mut self, items: I) -> &mut Self
    where
        T: 'static + Encode<'static, Any> + Type<Any>,
        I: IntoIterator<Item = T>,
    {
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(v);
        }
        self
    }

    /// Append ` VALUES (...), (...)`: one parenthesised row per item, filled by `row`.
    pub fn values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(&mut Sql, I::Item),
    {
        self.sql.push_str(" VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.sql.push_str(if i > 0 { ", (" } else { "(" });
            self.row_items = Some(0);
            row(self, item);
            self.row_items = None;
            self.sql.push(')');
        }
        self
    }

    /// Run it on a connection and return the rows.
    pub async fn fetch_all(self, conn: &mut sqlx::AnyConnection) -> Result<Vec<sqlx::any::AnyRow>> {
        let (sql, args) = self.finish(is_sqlite(conn))?;
        Ok(sqlx::query_with(&sql, args).fetch_all(conn).await?)
    }

    /// Run it on a connection.
    pub async fn execute(self, conn: &mut sqlx::AnyConnection) -> Result<u64> {
        let (sql, args) = self.finish(is_sqlite(conn))?;
        Ok(sqlx::query_with(&sql, args)
            .execute(conn)
            .await?
            .rows_affected())
    }

    /// The finished text for SQLite (`?`) or PostgreSQL (`$n`), and the arguments.
    pub fn finish(self, sqlite: bool) -> Result<(String, AnyArguments<'static>)> {
        if let Some(e) = self.err {
            return Err(StoreError::Corrupt(format!(
                "cannot encode a query argument: {e}"
            )));
        }
        let mut out = String::with_capacity(self.sql.len() + self.n * 4);
        let mut k = 0;
        for c in self.sql.chars() {
            if c == PLACEHOLDER {
                k += 1;
                if sqlite {
                    out.push('?');
                } else {
                    let _ = write!(out, "${k}");
                }
            } else {
                out.push(c);
            }
        }
        Ok((out, self.args))
    }
}

/// Whether a connection talks to SQLite.
fn is_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders() {
        let mut s = Sql::new("SELECT 1 WHERE a = ");
        s.bind(1_i64)
            .push(" AND b IN (")
            .bind_list(["x".to_string(), "y".to_string()])
            .push(")");
        let (sql, args) = s.finish(false).expect("encodes");
        assert_eq!(sql, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(args.len(), 3);
        let mut s = Sql::new("INSERT INTO t (a, b)");
        s.values(
            [(1_i64, "x".to_string()), (2, "y".to_string())],
            |q, (a, b)| {
                q.bind(a).bind(b);
            },
        );
        assert_eq!(
            s.finish(true).expect("encodes").0,
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
