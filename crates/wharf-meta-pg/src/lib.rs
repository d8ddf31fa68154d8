//! The PostgreSQL backend of Wharf's metadata: [`PgStore`] implements
//! [`MetadataStore`](wharf_meta::MetadataStore), [`IamStore`](wharf_meta::IamStore)
//! and [`JobStore`](wharf_meta::JobStore) over one database that several `wharf`
//! processes (replicas) share. It passes the same shared suites as the SQLite backend
//! and keeps its semantics: the same errors and messages, byte-ordered listings,
//! exclusive cursors, case-insensitive IAM names.
//!
//! # Driver and pool
//!
//! `tokio-postgres` with a `deadpool-postgres` pool (plain TCP or Unix socket, no TLS).
//! Every query goes through the pool's per-connection cache of prepared statements.
//! [`PgStore::connect`] accepts `postgres://` and `postgresql://` URLs, with
//! `?host=/socket/dir` for a Unix socket, and brings the schema up to date.
//!
//! # Schema
//!
//! Versioned migrations ([`schema`]), append-only like SQLite's, recorded in table
//! `wharf_schema_versions` and applied on connect in one transaction that first takes
//! `pg_advisory_xact_lock(`[`schema::MIGRATION_LOCK`]`)`, so replicas starting together
//! migrate once and the others find the schema current. Times are `BIGINT`
//! milliseconds, manifest bodies and secrets `BYTEA`. Every compared or sorted text
//! column is `COLLATE "C"`, so names, tags and digests sort by bytes whatever the
//! database's locale. IAM names are unique through indexes on `lower(name)`; on a
//! `"C"` column `lower` folds ASCII letters only, exactly as SQLite's `NOCASE`.
//! Foreign keys cascade where SQLite's do.
//!
//! # Concurrency
//!
//! Transactions run at `READ COMMITTED` and make their decisions on rows they have
//! locked or on the outcome of `INSERT … ON CONFLICT`, which PostgreSQL resolves
//! against committed rows (waiting for an in-flight insert of the same key). Each
//! statement sees every transaction committed before it started, so a check made after
//! taking a lock sees the latest state. Locks are taken in one order — repository row,
//! then manifest rows, then tag rows — so writers do not deadlock each other; should a
//! transaction still fail with a deadlock (`40P01`) or serialization failure
//! (`40001`), it is rolled back and retried from the start, a few times.
//!
//! Per operation:
//! - `create_repository[_with]`: `INSERT … ON CONFLICT (name) DO NOTHING`; no row
//!   inserted means another transaction owns the name: [`MetaError::RepositoryExists`].
//!   `ensure_repository` inserts the same way, then reads the winner's row.
//! - `put_manifest`: locks the repository row `FOR SHARE` (so a tag-policy change or a
//!   repository deletion waits for in-flight pushes, and pushes wait for them), the
//!   referenced blob links and child manifests `FOR KEY SHARE` (an unlink or delete
//!   waits until the push committed), inserts the manifest with `ON CONFLICT DO
//!   NOTHING`, then moves the tag: `INSERT … ON CONFLICT DO NOTHING` creates a new tag
//!   (exactly one racing push creates it), otherwise the tag row is locked
//!   `FOR UPDATE` and the tag policy checked against its current target. Racing moves
//!   of one tag are thus serialized: each reports the target it replaced, no update is
//!   lost, and of two pushes to a new immutable tag one wins and the other gets
//!   [`MetaError::TagImmutable`].
//! - `delete_manifest` locks the manifest row before touching its tags; `delete_tag`,
//!   `unlink_blob`, `touch_upload` … are single statements.
//! - `link_blob`, `mount_blob`: `ON CONFLICT DO NOTHING` inserts of the blob record and
//!   the link, under a `FOR KEY SHARE` lock of the repository row (a concurrent
//!   repository deletion waits, then cascades).
//! - `tag_repository`: the repository row is locked `FOR NO KEY UPDATE` so concurrent
//!   taggers cannot together pass the resource-tag limit.
//! - `server_secret`: `INSERT … ON CONFLICT DO NOTHING`, then a read in a new
//!   statement, which sees whichever candidate committed first.
//! - `record_pulls` locks the manifest rows in digest order, then updates them.
//! - IAM: names are claimed with `ON CONFLICT DO NOTHING` on the `lower(name)` unique
//!   indexes. Every change to a user or role (keys, tags, inline and attached
//!   policies, deletion) first locks its row `FOR UPDATE`, so quota counts and
//!   "still has dependents" checks cannot race. Attaching a customer policy locks the
//!   policy `FOR SHARE`; deleting it locks it `FOR UPDATE`. Creating an access key
//!   through the metadata store locks its user's row too, when the user exists.
//!   Access-key and session ids share one space: creating either takes a
//!   transaction-scoped advisory lock on the id before checking both tables.
//! - Jobs: `claim_job` is one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED
//!   LIMIT 1)`, so concurrent claimants skip each other's candidate rows and a job is
//!   handed out once per lease; named leases are one `INSERT … ON CONFLICT DO UPDATE …
//!   WHERE` (free, ended, or renewed by its holder).
//!
//! Metadata reads are single statements (a listing of images computes sizes and tags
//! in the same query), so each sees one snapshot. IAM reads that add tags or policies
//! to an entity take a statement for each; every statement sees committed data, so a
//! concurrent change of that same entity may show in part.

#![warn(missing_docs)]

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};
use wharf_meta::MetaError;

mod iam;
mod jobs;
mod meta;
pub mod schema;

/// How many times a transaction is attempted when it fails with a deadlock or a
/// serialization failure.
const MAX_ATTEMPTS: u32 = 5;

/// Settings of a [`PgStore`]'s connection pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections the store opens to the database.
    pub max_connections: usize,
    /// How long a call waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl PgOptions {
    /// Takes Wharf's pool parameters (`pool_size`, `pool_timeout`) out of a
    /// `postgres://` URL's query: the URL without them, and the options they set over
    /// the defaults. Key-value connection strings are returned unchanged.
    pub fn from_url(url: &str) -> Result<(String, PgOptions), MetaError> {
        let mut options = PgOptions::default();
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), options));
        };
        if !url.contains("://") {
            return Ok((url.to_string(), options));
        }
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| {
                value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    MetaError::Backend(format!(
                        "PostgreSQL URL: {key}={value:?} must be a positive whole number ({what})"
                    ))
                })
            };
            match key {
                "pool_size" => {
                    options.max_connections =
                        usize::try_from(number("connections")?).unwrap_or(usize::MAX)
                }
                "pool_timeout" => options.acquire_timeout = Duration::from_secs(number("seconds")?),
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((url, options))
    }
}

/// A metadata, IAM and job store in a PostgreSQL database, safe to share between
/// several processes (see the [crate documentation](crate) for how).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Where the database is, for messages (never the password).
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db` or
    /// `postgresql://…`, `?host=/socket/dir` for a Unix socket) with default
    /// [`PgOptions`] and brings its schema up to date.
    ///
    /// The URL may carry the pool's settings as query parameters of Wharf's own, which
    /// are taken out before the rest goes to the driver: `pool_size` (most
    /// connections, default 16) and `pool_timeout` (seconds a call waits for a free
    /// connection, default 30).
    pub async fn connect(url: &str) -> Result<PgStore, MetaError> {
        let (url, options) = PgOptions::from_url(url)?;
        PgStore::connect_with(&url, options).await
    }

    /// [`PgStore::connect`] with explicit pool settings.
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<PgStore, MetaError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            MetaError::Backend(format!(
                "invalid PostgreSQL URL (the URL is not shown): {e}"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("wharf");
        }
        config.connect_timeout(options.connect_timeout);
        let target = describe_target(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| {
                MetaError::Backend(format!("creating the connection pool for {target}: {e}"))
            })?;
        let store = PgStore { pool, target };
        schema::migrate(&store).await?;
        tracing::debug!(database = %store.target, "opened metadata database");
        Ok(store)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object, MetaError> {
        self.pool.get().await.map_err(|e| {
            let why = match &e {
                PoolError::Backend(db) => describe(db),
                other => other.to_string(),
            };
            MetaError::Backend(format!(
                "getting a connection to PostgreSQL database {}: {why}",
                self.target
            ))
        })
    }
}

/// `user@host:port/db` of a connection config, for messages.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// A database error in words: the server's message with its SQLSTATE and detail, or
/// the client's error.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(": ");
                s.push_str(detail);
            }
            s
        }
        None => e.to_string(),
    }
}

/// Why an operation failed: a rule of the store, returned as it is, or a database
/// error with what was being done.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A store rule ([`MetaError::RepositoryNotFound`], an IAM rule, …).
    Meta(MetaError),
    /// The database refused or failed.
    Db {
        /// What was being done.
        what: String,
        /// The error.
        source: tokio_postgres::Error,
    },
}

impl Failure {
    /// A deadlock or serialization failure: the transaction may succeed when retried.
    fn transient(&self) -> bool {
        match self {
            Failure::Db { source, .. } => matches!(
                source.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            Failure::Meta(_) => false,
        }
    }
}

impl From<MetaError> for Failure {
    fn from(e: MetaError) -> Self {
        Failure::Meta(e)
    }
}

impl From<Failure> for MetaError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Meta(e) => e,
            Failure::Db { what, source } => {
                MetaError::Backend(format!("{what}: {}", describe(&source)))
            }
        }
    }
}

/// Results inside the store.
pub(crate) type R<T> = Result<T, Failure>;

/// Attaches what was being done to a database error.
pub(crate) trait Context<T> {
    fn ctx(self, what: &str) -> R<T>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, what: &str) -> R<T> {
        self.map_err(|source| Failure::Db {
            what: what.to_string(),
            source,
        })
    }
}

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs `sql` (prepared once per connection) and returns its rows.
pub(crate) async fn rows<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> R<Vec<Row>> {
    let st = c.prepare_cached(sql).await.ctx(what)?;
    c.query(&st, params).await.ctx(what)
}

/// Runs `sql` and returns its row, if any (an error if there are several).
pub(crate) async fn row<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> R<Option<Row>> {
    let st = c.prepare_cached(sql).await.ctx(what)?;
    c.query_opt(&st, params).await.ctx(what)
}

/// Runs `sql` and returns its one row.
pub(crate) async fn one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> R<Row> {
    let st = c.prepare_cached(sql).await.ctx(what)?;
    c.query_one(&st, params).await.ctx(what)
}

/// Runs `sql` and returns how many rows it changed.
pub(crate) async fn exec<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> R<u64> {
    let st = c.prepare_cached(sql).await.ctx(what)?;
    c.execute(&st, params).await.ctx(what)
}

/// Column `idx` of `row`, converted.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> R<T> {
    row.try_get(idx).map_err(|source| Failure::Db {
        what: format!(
            "reading column {}",
            row.columns().get(idx).map(|c| c.name()).unwrap_or("?")
        ),
        source,
    })
}

/// A stored count or size as `u64`.
pub(crate) fn to_u64(n: i64, what: &str) -> R<u64> {
    u64::try_from(n)
        .map_err(|_| Failure::Meta(MetaError::Backend(format!("stored {what} {n} is negative"))))
}

/// A size or count to store as `BIGINT`.
pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64, MetaError> {
    i64::try_from(n).map_err(|_| MetaError::Backend(format!("{what} {n} is too large")))
}

/// A `LIMIT` parameter.
pub(crate) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Waits a little before retrying a transaction, longer after each attempt, with some
/// jitter so two retrying replicas do not collide again.
pub(crate) async fn backoff(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 5))
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5 + jitter)).await;
}

/// Runs `$body` (an expression using the transaction `$tx` and evaluating to a future
/// of `R<T>`) in a transaction on a pooled connection: committed if it succeeds,
/// rolled back otherwise, and attempted again from the start (up to
/// [`MAX_ATTEMPTS`]) after a deadlock or serialization failure. Evaluates to
/// `Result<T, MetaError>`; `$what` names the operation in messages.
macro_rules! transaction {
    ($store:expr, $what:expr, |$tx:ident| $body:expr) => {{
        let store: &$crate::PgStore = $store;
        let mut attempt: u32 = 1;
        loop {
            let mut client = match store.client().await {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let outcome: $crate::R<_> = async {
                let $tx = $crate::Context::ctx(
                    client.transaction().await,
                    &format!("starting a transaction for {}", $what),
                )?;
                let value: $crate::R<_> = $body.await;
                let value = value?;
                $crate::Context::ctx(
                    $tx.commit().await,
                    &format!("committing the transaction for {}", $what),
                )?;
                Ok(value)
            }
            .await;
            match outcome {
                Ok(v) => break Ok(v),
                Err(f) if f.transient() && attempt < $crate::MAX_ATTEMPTS => {
                    tracing::debug!(operation = %$what, attempt, error = ?f, "retrying a transaction");
                    $crate::backoff(attempt).await;
                    attempt += 1;
                }
                Err(f) => break Err(wharf_meta::MetaError::from(f)),
            }
        }
    }};
}
pub(crate) use transaction;

/// 32-bit FNV-1a of `s`: the second key of an advisory lock on a name.
pub(crate) fn lock_key(s: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_both_schemes_and_sockets_parse() {
        for (url, host, db) in [
            (
                "postgres://u:p@db.example:6432/wharf",
                "db.example",
                "wharf",
            ),
            ("postgresql://u@127.0.0.1:5432/wharf", "127.0.0.1", "wharf"),
            (
                "postgres://u@/wharf?host=/run/postgresql",
                "/run/postgresql",
                "wharf",
            ),
            (
                "postgresql:///wharf?host=/tmp/sock&user=u",
                "/tmp/sock",
                "wharf",
            ),
        ] {
            let config: tokio_postgres::Config = url.parse().unwrap();
            let target = describe_target(&config);
            assert!(target.contains(host), "{url}: {target}");
            assert!(target.ends_with(&format!("/{db}")), "{url}: {target}");
            assert!(!target.contains(":p@"), "no password in {target}");
        }
    }

    #[test]
    fn lock_keys_are_stable() {
        assert_eq!(
            lock_key(""),
            i32::from_ne_bytes(0x811c_9dc5u32.to_ne_bytes())
        );
        assert_ne!(lock_key("AKIA1"), lock_key("AKIA2"));
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn pool_parameters_are_taken_out_of_the_url() {
        let (url, o) =
            PgOptions::from_url("postgres://u:p@h:5/db?pool_size=40&host=/run/pg&pool_timeout=5")
                .unwrap();
        assert_eq!(url, "postgres://u:p@h:5/db?host=/run/pg");
        assert_eq!(o.max_connections, 40);
        assert_eq!(o.acquire_timeout, Duration::from_secs(5));
        let (url, o) = PgOptions::from_url("postgres://h/db?pool_size=2").unwrap();
        assert_eq!((url.as_str(), o.max_connections), ("postgres://h/db", 2));
        let (url, o) = PgOptions::from_url("postgres://h/db").unwrap();
        assert_eq!((url.as_str(), o.max_connections), ("postgres://h/db", 16));
        for bad in [
            "pool_size=0",
            "pool_size=x",
            "pool_timeout=",
            "pool_size=-1",
        ] {
            let e = PgOptions::from_url(&format!("postgres://h/db?{bad}")).unwrap_err();
            assert!(
                e.to_string().contains("positive whole number"),
                "{bad}: {e}"
            );
        }
        let kv = "host=/run/pg dbname=x";
        assert_eq!(PgOptions::from_url(kv).unwrap().0, kv);
    }
}
