//! [`JobStore`] on [`PgStore`]: the `jobs` and `leases` tables.
//!
//! Every operation is one statement. A claim picks the due job with `FOR UPDATE SKIP
//! LOCKED`, so concurrent claimants never wait on or take each other's candidate, and
//! PostgreSQL re-checks the due condition on the latest version of the row it locked:
//! a job claimed (and committed) by another replica meanwhile is passed over. Named
//! leases are an upsert whose `DO UPDATE … WHERE` only takes a free, ended or own
//! lease; the conflicting row is locked while it is decided.

use crate::{exec, get, row, rows, PgStore, R};
use async_trait::async_trait;
use tokio_postgres::Row;
use wharf_meta::{Job, JobStore, MetaError, Millis};

const JOB_COLUMNS: &str = "id, kind, key, payload, attempts, run_at, last_error";

fn job(r: &Row) -> R<Job> {
    let id: i64 = get(r, 0)?;
    let attempts: i32 = get(r, 4)?;
    Ok(Job {
        id,
        kind: get(r, 1)?,
        key: get(r, 2)?,
        payload: get(r, 3)?,
        attempts: u32::try_from(attempts).map_err(|_| {
            MetaError::Backend(format!("job {id} has a negative attempt count {attempts}"))
        })?,
        run_at: get(r, 5)?,
        last_error: get(r, 6)?,
    })
}

#[async_trait]
impl JobStore for PgStore {
    async fn enqueue_job(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_at: Millis,
    ) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "INSERT INTO jobs (kind, key, payload, run_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, key) DO NOTHING",
            &[&kind, &key, &payload, &run_at],
            &format!("queueing job {kind} {key:?}"),
        )
        .await?;
        Ok(n > 0)
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
        let c = self.client().await?;
        let until = now.saturating_add(lease_ms);
        let found = row(
            &c,
            &format!(
                "UPDATE jobs SET holder = $2, lease_until = $4, attempts = attempts + 1
                 WHERE id = (
                     SELECT id FROM jobs
                     WHERE kind = ANY($1) AND run_at <= $3
                       AND (lease_until IS NULL OR lease_until < $3)
                     ORDER BY run_at, id
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&kinds, &holder, &now, &until],
            &format!("claiming a job of {kinds:?} for {holder}"),
        )
        .await?;
        Ok(found.as_ref().map(job).transpose()?)
    }

    async fn extend_job(
        &self,
        id: i64,
        holder: &str,
        now: Millis,
        lease_ms: Millis,
    ) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE jobs SET lease_until = $4
             WHERE id = $1 AND holder = $2 AND lease_until >= $3",
            &[&id, &holder, &now, &now.saturating_add(lease_ms)],
            &format!("extending the lease of job {id} for {holder}"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn complete_job(&self, id: i64, holder: &str) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM jobs WHERE id = $1 AND holder = $2",
            &[&id, &holder],
            &format!("completing job {id} of {holder}"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn retry_job(
        &self,
        id: i64,
        holder: &str,
        run_at: Millis,
        error: &str,
    ) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE jobs SET holder = NULL, lease_until = NULL, run_at = $3, last_error = $4
             WHERE id = $1 AND holder = $2",
            &[&id, &holder, &run_at, &error],
            &format!("releasing job {id} of {holder} for a retry"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn list_jobs(&self, kind: &str) -> Result<Vec<Job>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE kind = $1 ORDER BY id"),
            &[&kind],
            &format!("listing jobs of kind {kind}"),
        )
        .await?;
        Ok(found.iter().map(job).collect::<R<_>>()?)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Millis,
        ttl_ms: Millis,
    ) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let taken = row(
            &c,
            "INSERT INTO leases (name, holder, lease_until) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE
                 SET holder = excluded.holder, lease_until = excluded.lease_until
                 WHERE leases.holder = excluded.holder OR leases.lease_until < $3
             RETURNING holder",
            &[&name, &holder, &now, &now.saturating_add(ttl_ms)],
            &format!("acquiring lease {name:?} for {holder}"),
        )
        .await?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), MetaError> {
        let c = self.client().await?;
        exec(
            &c,
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[&name, &holder],
            &format!("releasing lease {name:?} of {holder}"),
        )
        .await?;
        Ok(())
    }
}
