//! Leases with fencing tokens, the one protocol the queue (`queue_jobs`) and the outbox
//! (`outbox`) share: claiming due rows (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, a
//! `BEGIN IMMEDIATE` write transaction on SQLite), sending rows whose last attempt's lease
//! expired to the dead letters, and every later write of the holder guarded by
//! `WHERE id = ? AND fencing = ?`, which is [`JobsError::LeaseLost`] when the token moved on.
//!
//! The two tables differ only in the columns a [`LeaseTable`] names; the statements are built
//! here. Every `?` in the table's fragments (`claimed`, `dead`, `touch`) is bound to the
//! statement's `now`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lockgate_store::{Backend, Store};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::queue::FailOutcome;
use crate::retry::RetryPolicy;
use crate::sql::{after, list, render, ts};
use crate::{JobsError, Result};

/// How one table keeps its leases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseTable {
    pub table: &'static str,
    /// What a row is, in errors (`job`, `outbox message`).
    pub what: &'static str,
    /// Who holds leases on it, in the dead letter's reason (`worker`, `dispatcher`).
    pub holder: &'static str,
    /// Condition under which the holder of the current fencing token still owns the row
    /// (no placeholders).
    pub held: &'static str,
    /// Assignments a claim adds to the lease, fencing and attempt columns.
    pub claimed: &'static str,
    /// Assignments that make a row dead (besides clearing the lease and moving the token on).
    pub dead: &'static str,
    /// Assignment every write of the row adds (its `updated_at`), or empty.
    pub touch: &'static str,
}

/// An argument of a caller's condition or assignment.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    /// The statement's `now` (fixed-width RFC 3339 text).
    Now,
}

/// Which rows a claim takes.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    /// Columns the candidates are read with (what `expired_last_attempt` looks at).
    pub columns: &'static str,
    /// Claimable rows: due and not leased, or leased with an expired lease; `?` bound from `args`.
    pub due: String,
    pub args: Vec<Arg>,
    pub order: &'static str,
    pub limit: i64,
    pub owner: &'a str,
    pub lease: Duration,
    /// Columns the claimed rows are returned with.
    pub returning: &'static str,
}

/// What one claim did.
#[derive(Debug)]
pub(crate) struct Claimed<T> {
    /// The claimed rows (in no particular order: `RETURNING` has none), decoded.
    pub rows: Vec<T>,
    /// Rows sent to the dead letters because their last attempt's lease expired.
    pub dead: Vec<i64>,
}

/// A holder's proof of its lease: the row and the fencing token of its claim.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fence {
    pub id: i64,
    pub fencing: i64,
}

/// Where a failed attempt goes: dead after the last attempt or on [`JobsError::Permanent`],
/// otherwise due again after the retry policy's backoff.
pub(crate) fn fail_outcome(
    retry: &RetryPolicy,
    attempt: u32,
    max_attempts: u32,
    error: &JobsError,
    now: DateTime<Utc>,
) -> FailOutcome {
    if matches!(error, JobsError::Permanent(_)) || attempt >= max_attempts {
        FailOutcome::Dead
    } else {
        FailOutcome::Retry {
            run_at: after(now, retry.delay(attempt)),
        }
    }
}

/// The number of placeholders in a fragment.
fn holes(fragment: &str) -> usize {
    fragment.matches('?').count()
}

/// `, fragment` when the fragment is not empty.
fn and(fragment: &str) -> String {
    if fragment.is_empty() {
        String::new()
    } else {
        format!(", {fragment}")
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_now<'q>(mut q: Query<'q>, now: &str, n: usize) -> Query<'q> {
    for _ in 0..n {
        q = q.bind(now.to_string());
    }
    q
}

fn bind_args<'q>(mut q: Query<'q>, args: Vec<Arg>, now: &str) -> Query<'q> {
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t),
            Arg::Now => q.bind(now.to_string()),
        };
    }
    q
}

impl LeaseTable {
    fn sqlite(store: &Store) -> bool {
        store.backend() == Backend::Sqlite
    }

    pub fn lease_lost(&self, fence: Fence) -> JobsError {
        JobsError::LeaseLost {
            what: self.what,
            id: fence.id,
            fencing: fence.fencing,
        }
    }

    /// Claim the rows `claim` selects for `claim.owner`, in one write transaction: a
    /// candidate whose last attempt's lease expired (`expired_last_attempt`) goes to the
    /// dead letters; every other one gets the lease (`lease_owner`, `lease_expires_at` =
    /// now + lease), one more attempt and the next fencing token. `decode` reads a returned
    /// row, given the lease's expiry.
    pub async fn claim<T>(
        &self,
        store: &Store,
        claim: Claim<'_>,
        expired_last_attempt: impl Fn(&AnyRow) -> Result<bool>,
        decode: impl Fn(&AnyRow, DateTime<Utc>) -> Result<T>,
    ) -> Result<Claimed<T>> {
        let sqlite = Self::sqlite(store);
        // SQLite: BEGIN IMMEDIATE holds the write lock for the whole claim.
        // PostgreSQL: the selected rows stay locked (and skipped by others) until commit.
        let mut tx = store.write_tx().await?;
        let now = Utc::now();
        let now_s = ts(now);
        let mut select = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT ?",
            claim.columns, self.table, claim.due, claim.order
        );
        if !sqlite {
            select.push_str(" FOR UPDATE SKIP LOCKED");
        }
        let select = render(sqlite, &select).into_owned();
        let candidates = bind_args(sqlx::query(&select), claim.args, &now_s)
            .bind(claim.limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut claim_ids = Vec::with_capacity(candidates.len());
        let mut dead = Vec::new();
        for row in &candidates {
            let id: i64 = row.try_get("id")?;
            if expired_last_attempt(row)? {
                dead.push(id);
            } else {
                claim_ids.push(id);
            }
        }
        if !dead.is_empty() {
            let sql = render(
                sqlite,
                &format!(
                    "UPDATE {} SET lease_owner = NULL, lease_expires_at = NULL, \
                     fencing = fencing + 1, last_error = ?{} WHERE id IN ({})",
                    self.table,
                    and(self.dead),
                    list(dead.len())
                ),
            )
            .into_owned();
            let mut q = sqlx::query(&sql).bind(format!(
                "the lease of the last attempt expired (the {} stopped or hung)",
                self.holder
            ));
            q = bind_now(q, &now_s, holes(self.dead));
            for id in &dead {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        let mut rows = Vec::with_capacity(claim_ids.len());
        if !claim_ids.is_empty() {
            let expires = after(now, claim.lease);
            let sql = render(
                sqlite,
                &format!(
                    "UPDATE {} SET lease_owner = ?, lease_expires_at = ?, \
                     fencing = fencing + 1, attempts = attempts + 1{} WHERE id IN ({}) \
                     RETURNING {}",
                    self.table,
                    and(self.claimed),
                    list(claim_ids.len()),
                    claim.returning
                ),
            )
            .into_owned();
            let mut q = sqlx::query(&sql)
                .bind(claim.owner.to_string())
                .bind(ts(expires));
            q = bind_now(q, &now_s, holes(self.claimed));
            for id in &claim_ids {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut *tx).await? {
                rows.push(decode(&row, expires)?);
            }
        }
        tx.commit().await?;
        Ok(Claimed { rows, dead })
    }

    /// A write of the lease holder at `now`: `UPDATE … SET set WHERE id = ? AND fencing = ?
    /// AND held`, `set`'s placeholders bound from `args`. `LeaseLost` (and nothing written)
    /// when the row was claimed again since (its fencing token moved on) or left the held state.
    async fn fenced(
        &self,
        store: &Store,
        fence: Fence,
        now: DateTime<Utc>,
        set: &str,
        args: Vec<Arg>,
    ) -> Result<()> {
        let now = ts(now);
        let sql = render(
            Self::sqlite(store),
            &format!(
                "UPDATE {} SET {set}{} WHERE id = ? AND fencing = ? AND {}",
                self.table,
                and(self.touch),
                self.held
            ),
        )
        .into_owned();
        let q = bind_args(sqlx::query(&sql), args, &now);
        let n = bind_now(q, &now, holes(self.touch))
            .bind(fence.id)
            .bind(fence.fencing)
            .execute(store.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(self.lease_lost(fence));
        }
        Ok(())
    }

    /// End the lease at `now` with the assignments `set` (the row done, due again, or dead).
    pub async fn release(
        &self,
        store: &Store,
        fence: Fence,
        now: DateTime<Utc>,
        set: &str,
        args: Vec<Arg>,
    ) -> Result<()> {
        self.fenced(
            store,
            fence,
            now,
            &format!("{set}, lease_owner = NULL, lease_expires_at = NULL"),
            args,
        )
        .await
    }

    /// Extend the lease to now + `lease`; the new expiry.
    pub async fn extend(
        &self,
        store: &Store,
        fence: Fence,
        lease: Duration,
    ) -> Result<DateTime<Utc>> {
        let now = Utc::now();
        let expires = after(now, lease);
        self.fenced(
            store,
            fence,
            now,
            "lease_expires_at = ?",
            vec![Arg::Text(Some(ts(expires)))],
        )
        .await?;
        Ok(expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_retry_until_the_last_attempt_or_a_permanent_error() {
        let retry = RetryPolicy::default();
        let now = Utc::now();
        let failed = JobsError::failed("x");
        assert!(matches!(
            fail_outcome(&retry, 1, 3, &failed, now),
            FailOutcome::Retry { run_at } if run_at > now
        ));
        assert_eq!(fail_outcome(&retry, 3, 3, &failed, now), FailOutcome::Dead);
        assert_eq!(
            fail_outcome(&retry, 1, 3, &JobsError::permanent("x"), now),
            FailOutcome::Dead
        );
    }

    #[test]
    fn fragments_count_their_placeholders() {
        assert_eq!(holes("state = 'dead', updated_at = ?"), 1);
        assert_eq!(holes(""), 0);
        assert_eq!(and(""), "");
        assert_eq!(and("a = ?"), ", a = ?");
    }
}
