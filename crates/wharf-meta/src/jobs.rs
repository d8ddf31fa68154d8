//! Background work as rows (DESIGN.md §6): a queue of jobs that any replica may claim
//! under a lease, and named leases that let one replica at a time run a periodic task
//! (upload expiry, garbage collection, lifecycle runs).
//!
//! [`JobStore`] is the seam; every backend must pass [`crate::testsuite_jobs::run_all`].
//! Times are given by the caller, so a store never reads the clock and tests can
//! predict every answer.

use crate::{MetaError, Millis};
use async_trait::async_trait;

/// A queued job as claimed by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Store-assigned id.
    pub id: i64,
    /// What kind of work (`scan`, `replicate`, ...); workers claim by kind.
    pub kind: String,
    /// What the work is about, unique among the pending jobs of one kind (e.g.
    /// `<repository>@<digest>`), so the same work is not queued twice.
    pub key: String,
    /// Kind-specific parameters (JSON text).
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// Not claimable before this time.
    pub run_at: Millis,
    /// The error of the previous attempt, if it failed.
    pub last_error: Option<String>,
}

/// The job queue and named leases.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Queues a job runnable from `run_at`. When a job of this `kind` and `key` is
    /// already queued (claimed or not), nothing changes and `false` is returned.
    async fn enqueue_job(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_at: Millis,
    ) -> Result<bool, MetaError>;

    /// Claims the job of one of `kinds` that is due at `now` (`run_at <= now`) and not
    /// leased (or whose lease ended before `now`), the one with the earliest `run_at`
    /// first (then the lowest id). The claim leases it to `holder` until
    /// `now + lease_ms` and counts an attempt. Two concurrent claims never get the same
    /// job while its lease lasts.
    async fn claim_job(
        &self,
        kinds: &[&str],
        holder: &str,
        now: Millis,
        lease_ms: Millis,
    ) -> Result<Option<Job>, MetaError>;

    /// Extends the lease of job `id` to `now + lease_ms` if `holder` still holds it
    /// (its lease has not ended before `now`, and nobody claimed it since).
    async fn extend_job(
        &self,
        id: i64,
        holder: &str,
        now: Millis,
        lease_ms: Millis,
    ) -> Result<bool, MetaError>;

    /// Removes job `id`, done, if `holder` holds it. `false` if it lost the lease to
    /// another claim (the other holder will finish it).
    async fn complete_job(&self, id: i64, holder: &str) -> Result<bool, MetaError>;

    /// Releases job `id` held by `holder` for another attempt from `run_at`, recording
    /// `error`. `false` if `holder` no longer holds it.
    async fn retry_job(
        &self,
        id: i64,
        holder: &str,
        run_at: Millis,
        error: &str,
    ) -> Result<bool, MetaError>;

    /// Queued jobs of `kind` (claimed or not), by id; for status pages and tests.
    async fn list_jobs(&self, kind: &str) -> Result<Vec<Job>, MetaError>;

    /// Takes named lease `name` for `holder` until `now + ttl_ms` when it is free, ended
    /// before `now`, or already held by `holder` (a renewal). Returns whether `holder`
    /// holds it now.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Millis,
        ttl_ms: Millis,
    ) -> Result<bool, MetaError>;

    /// Gives up lease `name` if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), MetaError>;
}
