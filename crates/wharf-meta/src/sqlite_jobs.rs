//! [`JobStore`] on [`SqliteStore`]: the `jobs` and `leases` tables of schema version 7.
//! Every change runs in the writer's immediate transaction, so claims are serialized
//! across connections and processes.

use crate::jobs::{Job, JobStore};
use crate::sqlite::Context;
use crate::{MetaError, Millis, SqliteStore};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

const JOB_COLUMNS: &str = "id, kind, key, payload, attempts, run_at, last_error";

fn job(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        key: r.get(2)?,
        payload: r.get(3)?,
        attempts: r.get(4)?,
        run_at: r.get(5)?,
        last_error: r.get(6)?,
    })
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue_job(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_at: Millis,
    ) -> Result<bool, MetaError> {
        let (kind, key, payload) = (kind.to_owned(), key.to_owned(), payload.to_owned());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO jobs (kind, key, payload, run_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, key) DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![kind, key, payload, run_at]))
                .ctx(&format!("queueing job {kind}/{key}"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_job(
        &self,
        kinds: &[&str],
        holder: &str,
        now: Millis,
        lease_ms: Millis,
    ) -> Result<Option<Job>, MetaError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let holder = holder.to_owned();
        self.write(move |tx| {
            let marks = vec!["?"; kinds.len()].join(", ");
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                 WHERE kind IN ({marks}) AND run_at <= ?
                   AND (lease_until IS NULL OR lease_until < ?)
                 ORDER BY run_at, id LIMIT 1"
            );
            let mut args: Vec<&dyn rusqlite::ToSql> =
                kinds.iter().map(|k| k as &dyn rusqlite::ToSql).collect();
            args.push(&now);
            args.push(&now);
            let found = tx
                .prepare_cached(&sql)
                .and_then(|mut st| st.query_row(args.as_slice(), job).optional())
                .ctx("looking for a due job")?;
            let Some(mut j) = found else {
                return Ok(None);
            };
            tx.prepare_cached(
                "UPDATE jobs SET holder = ?2, lease_until = ?3, attempts = attempts + 1
                 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![j.id, holder, now + lease_ms]))
            .ctx(&format!("claiming job {}", j.id))?;
            j.attempts += 1;
            Ok(Some(j))
        })
        .await
    }

    async fn extend_job(
        &self,
        id: i64,
        holder: &str,
        now: Millis,
        lease_ms: Millis,
    ) -> Result<bool, MetaError> {
        let holder = holder.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET lease_until = ?3 + ?4
                     WHERE id = ?1 AND holder = ?2 AND lease_until >= ?3",
                )
                .and_then(|mut st| st.execute(params![id, holder, now, lease_ms]))
                .ctx(&format!("extending the lease of job {id}"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn complete_job(&self, id: i64, holder: &str) -> Result<bool, MetaError> {
        let holder = holder.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND holder = ?2")
                .and_then(|mut st| st.execute(params![id, holder]))
                .ctx(&format!("completing job {id}"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn retry_job(
        &self,
        id: i64,
        holder: &str,
        run_at: Millis,
        error: &str,
    ) -> Result<bool, MetaError> {
        let (holder, error) = (holder.to_owned(), error.to_owned());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET holder = NULL, lease_until = NULL, run_at = ?3,
                            last_error = ?4
                     WHERE id = ?1 AND holder = ?2",
                )
                .and_then(|mut st| st.execute(params![id, holder, run_at, error]))
                .ctx(&format!("releasing job {id} for a retry"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_jobs(&self, kind: &str) -> Result<Vec<Job>, MetaError> {
        let kind = kind.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = ?1 ORDER BY id"
            ))
            .and_then(|mut st| st.query_map([&kind], job)?.collect())
            .ctx(&format!("listing jobs of kind {kind}"))
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Millis,
        ttl_ms: Millis,
    ) -> Result<bool, MetaError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "INSERT INTO leases (name, holder, lease_until) VALUES (?1, ?2, ?3 + ?4)
                     ON CONFLICT (name) DO UPDATE
                       SET holder = excluded.holder, lease_until = excluded.lease_until
                       WHERE leases.holder = excluded.holder OR leases.lease_until < ?3",
                )
                .and_then(|mut st| st.execute(params![name, holder, now, ttl_ms]))
                .ctx(&format!("taking lease {name}"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), MetaError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")
                .and_then(|mut st| st.execute(params![name, holder]))
                .ctx(&format!("releasing lease {name}"))?;
            Ok(())
        })
        .await
    }
}
