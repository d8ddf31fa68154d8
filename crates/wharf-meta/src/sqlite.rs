//! The SQLite backend of [`MetadataStore`].
//!
//! One file, opened in WAL mode with `synchronous=FULL` (an acknowledged write survives
//! a crash) and a busy timeout, so several processes (the server and a `wharf repo`
//! command) may use it at once. Each [`SqliteStore`] has one writer connection behind a
//! mutex, used only inside `BEGIN IMMEDIATE` transactions, and a small pool of reader
//! connections so reads never wait for writes. All SQLite work runs on tokio's blocking
//! pool.
//!
//! Conventions shared with every backend (see [`crate::testsuite`]): calls that create
//! something in a repository fail with [`MetaError::RepositoryNotFound`] when it does
//! not exist; lookups, lists and removals in a missing repository return
//! `None`/empty/`false`.

use crate::{
    now_millis, AccessKey, ImageRecord, ManifestRecord, MetaError, MetadataStore, Millis,
    NewManifest, PutOutcome, Reference, Referrer, Repository, RepositorySettings, TagMutability,
    TagPolicy, Upload,
};
use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use wharf_oci::Digest;

/// Reader connections per store.
const READERS: usize = 4;
/// How long a statement waits for another connection's (or process's) lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 64;

/// Schema migrations; migration `i` brings the file from `user_version` `i` to `i + 1`.
/// Append only: never edit a released entry, add a new one (e.g. `ALTER TABLE … ADD
/// COLUMN`).
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE repositories (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE blobs (
        digest     TEXT PRIMARY KEY NOT NULL,
        size       INTEGER NOT NULL CHECK (size >= 0),
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT;

    CREATE TABLE repository_blobs (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest        TEXT NOT NULL REFERENCES blobs(digest),
        linked_at     INTEGER NOT NULL,
        PRIMARY KEY (repository_id, digest)
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

    CREATE TABLE manifests (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest        TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        body          BLOB NOT NULL,
        size          INTEGER NOT NULL CHECK (size >= 0),
        artifact_type TEXT,
        annotations   TEXT,
        subject       TEXT,
        pushed_at     INTEGER NOT NULL,
        PRIMARY KEY (repository_id, digest)
    ) STRICT;
    -- Serves the referrers query's filter and its order by digest.
    CREATE INDEX manifests_subject ON manifests(repository_id, subject, digest);

    CREATE TABLE manifest_blobs (
        repository_id   INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        manifest_digest TEXT NOT NULL,
        blob_digest     TEXT NOT NULL,
        PRIMARY KEY (repository_id, manifest_digest, blob_digest),
        FOREIGN KEY (repository_id, manifest_digest)
            REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX manifest_blobs_blob ON manifest_blobs(repository_id, blob_digest);

    CREATE TABLE manifest_children (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        parent_digest TEXT NOT NULL,
        child_digest  TEXT NOT NULL,
        PRIMARY KEY (repository_id, parent_digest, child_digest),
        FOREIGN KEY (repository_id, parent_digest)
            REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX manifest_children_child ON manifest_children(repository_id, child_digest);

    CREATE TABLE tags (
        repository_id   INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (repository_id, name),
        FOREIGN KEY (repository_id, manifest_digest)
            REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX tags_manifest ON tags(repository_id, manifest_digest);

    CREATE TABLE uploads (
        id            TEXT PRIMARY KEY NOT NULL,
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        started_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX uploads_repository ON uploads(repository_id);
    CREATE INDEX uploads_updated ON uploads(updated_at);
    "#,
    // 2: tag mutability per repository.
    r#"
    ALTER TABLE repositories ADD COLUMN tag_mutability TEXT NOT NULL DEFAULT 'MUTABLE';
    ALTER TABLE repositories ADD COLUMN tag_exclusion_filters TEXT NOT NULL DEFAULT '';
    "#,
    // 3: access keys.
    r#"
    CREATE TABLE access_keys (
        access_key_id     TEXT PRIMARY KEY,
        secret_access_key TEXT NOT NULL,
        account_id        TEXT NOT NULL,
        user_name         TEXT NOT NULL,
        active            INTEGER NOT NULL,
        created_at        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX access_keys_by_account ON access_keys (account_id, access_key_id);
    "#,
    // 4: scanning and encryption settings per repository.
    r#"
    ALTER TABLE repositories ADD COLUMN scan_on_push INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE repositories ADD COLUMN encryption_type TEXT NOT NULL DEFAULT 'AES256';
    ALTER TABLE repositories ADD COLUMN kms_key TEXT;
    "#,
    // 5: repository policies, resource tags, registry settings, server secrets, pull times.
    r#"
    ALTER TABLE repositories ADD COLUMN policy TEXT;
    ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER;
    CREATE TABLE repository_tags (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        key           TEXT NOT NULL,
        value         TEXT NOT NULL,
        PRIMARY KEY (repository_id, key)
    ) STRICT;
    CREATE TABLE registries (
        account_id TEXT PRIMARY KEY NOT NULL,
        policy     TEXT
    ) STRICT;
    CREATE TABLE server_secrets (
        name       TEXT PRIMARY KEY NOT NULL,
        value      BLOB NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 6: IAM users, roles, customer managed policies, their tags, inline policies and
    // attachments; role sessions. Names compare without case, as in IAM.
    r#"
    CREATE TABLE iam_users (
        account_id TEXT NOT NULL,
        user_name  TEXT NOT NULL COLLATE NOCASE,
        user_id    TEXT NOT NULL UNIQUE,
        path       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (account_id, user_name)
    ) STRICT;
    CREATE TABLE iam_roles (
        account_id           TEXT NOT NULL,
        role_name            TEXT NOT NULL COLLATE NOCASE,
        role_id              TEXT NOT NULL UNIQUE,
        path                 TEXT NOT NULL,
        assume_role_policy   TEXT NOT NULL,
        description          TEXT,
        max_session_duration INTEGER NOT NULL,
        created_at           INTEGER NOT NULL,
        PRIMARY KEY (account_id, role_name)
    ) STRICT;
    CREATE TABLE iam_policies (
        account_id         TEXT NOT NULL,
        policy_name        TEXT NOT NULL COLLATE NOCASE,
        policy_id          TEXT NOT NULL UNIQUE,
        path               TEXT NOT NULL,
        arn                TEXT NOT NULL UNIQUE,
        document           TEXT NOT NULL,
        default_version_id TEXT NOT NULL,
        description        TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        PRIMARY KEY (account_id, policy_name)
    ) STRICT;
    -- kind: 'user', 'role' or 'policy'; name: the entity's name.
    CREATE TABLE iam_tags (
        account_id TEXT NOT NULL,
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL COLLATE NOCASE,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        PRIMARY KEY (account_id, kind, name, key)
    ) STRICT;
    -- kind: 'user' or 'role'.
    CREATE TABLE iam_inline_policies (
        account_id     TEXT NOT NULL,
        kind           TEXT NOT NULL,
        principal_name TEXT NOT NULL COLLATE NOCASE,
        policy_name    TEXT NOT NULL COLLATE NOCASE,
        document       TEXT NOT NULL,
        PRIMARY KEY (account_id, kind, principal_name, policy_name)
    ) STRICT;
    CREATE TABLE iam_attachments (
        account_id     TEXT NOT NULL,
        kind           TEXT NOT NULL,
        principal_name TEXT NOT NULL COLLATE NOCASE,
        policy_arn     TEXT NOT NULL,
        attached_at    INTEGER NOT NULL,
        PRIMARY KEY (account_id, kind, principal_name, policy_arn)
    ) STRICT;
    CREATE INDEX iam_attachments_by_policy ON iam_attachments (policy_arn, account_id);
    CREATE TABLE iam_sessions (
        access_key_id     TEXT PRIMARY KEY NOT NULL,
        secret_access_key TEXT NOT NULL,
        session_token     TEXT NOT NULL,
        account_id        TEXT NOT NULL,
        role_name         TEXT NOT NULL COLLATE NOCASE,
        role_path         TEXT NOT NULL,
        session_name      TEXT NOT NULL,
        expires_at        INTEGER NOT NULL,
        created_at        INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX iam_sessions_by_expiry ON iam_sessions (expires_at);
    CREATE INDEX iam_sessions_by_role ON iam_sessions (account_id, role_name);
    CREATE INDEX access_keys_by_user ON access_keys (account_id, user_name COLLATE NOCASE);
    "#,
    // 7: background jobs and named leases (JobStore).
    r#"
    CREATE TABLE jobs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        kind         TEXT NOT NULL,
        key          TEXT NOT NULL,
        payload      TEXT NOT NULL,
        run_at       INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        holder       TEXT,
        lease_until  INTEGER,
        last_error   TEXT,
        UNIQUE (kind, key)
    ) STRICT;
    CREATE INDEX jobs_due ON jobs (kind, run_at, id);
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY NOT NULL,
        holder      TEXT NOT NULL,
        lease_until INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT;
    "#,
];

// Queries of the read paths, named so their plans can be checked (see the tests).

/// A manifest by tag: the hottest query (every pull by tag).
const MANIFEST_BY_TAG: &str = "
    SELECT m.digest, m.media_type, m.body, m.artifact_type, m.annotations, m.subject,
           m.pushed_at
    FROM repositories r
    JOIN tags t ON t.repository_id = r.id
    JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
    WHERE r.name = ?1 AND t.name = ?2";
const MANIFEST_BY_DIGEST: &str = "
    SELECT m.digest, m.media_type, m.body, m.artifact_type, m.annotations, m.subject,
           m.pushed_at
    FROM repositories r
    JOIN manifests m ON m.repository_id = r.id
    WHERE r.name = ?1 AND m.digest = ?2";
const REFERRERS: &str = "
    SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
    FROM repositories r
    JOIN manifests m ON m.repository_id = r.id
    WHERE r.name = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3)
    ORDER BY m.digest";
const TAGS_FIRST: &str = "
    SELECT t.name FROM repositories r JOIN tags t ON t.repository_id = r.id
    WHERE r.name = ?1
    ORDER BY t.name LIMIT ?2";
const TAGS_AFTER: &str = "
    SELECT t.name FROM repositories r JOIN tags t ON t.repository_id = r.id
    WHERE r.name = ?1 AND t.name > ?2
    ORDER BY t.name LIMIT ?3";
const REPOSITORIES_FIRST: &str = "SELECT name, created_at, tag_mutability, tag_exclusion_filters, scan_on_push, encryption_type, kms_key, policy FROM repositories ORDER BY name LIMIT ?1";
const REPOSITORIES_AFTER: &str =
    "SELECT name, created_at, tag_mutability, tag_exclusion_filters, scan_on_push, encryption_type, kms_key, policy FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2";
/// Size of a blob if the named repository links it.
const REPOSITORY_BLOB: &str = "
    SELECT b.size FROM repositories r
    JOIN repository_blobs rb ON rb.repository_id = r.id
    JOIN blobs b ON b.digest = rb.digest
    WHERE r.name = ?1 AND rb.digest = ?2";
const STALE_UPLOADS: &str = "
    SELECT u.id, r.name, u.started_at, u.updated_at
    FROM uploads u JOIN repositories r ON r.id = u.repository_id
    WHERE u.updated_at < ?1 ORDER BY u.updated_at, u.id";

/// The schema version this build creates and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Maps rusqlite errors to [`MetaError::Backend`] with what was being done.
pub(crate) trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, MetaError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T, MetaError> {
        self.map_err(|e| MetaError::Backend(format!("{what}: {e}")))
    }
}

/// A metadata store in one SQLite file.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    /// Idle reader connections; a permit of `reader_permits` entitles to take one.
    readers: StdMutex<Vec<Connection>>,
    reader_permits: Arc<Semaphore>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database at
    /// `path` and brings its schema up to date. Blocks, up to the busy timeout if
    /// another process holds the write lock.
    pub fn open(path: &Path) -> Result<SqliteStore, MetaError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                MetaError::Backend(format!("creating directory {}: {e}", parent.display()))
            })?;
        }
        let mut writer = open_connection(path, false)?;
        migrate(&mut writer, path)?;
        let readers = (0..READERS)
            .map(|_| open_connection(path, true))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(path = %path.display(), "opened metadata database");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Arc::new(Mutex::new(writer)),
                readers: StdMutex::new(readers),
                reader_permits: Arc::new(Semaphore::new(READERS)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer connection, committing
    /// if it succeeds and rolling back otherwise.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, MetaError> + Send + 'static,
    {
        let mut conn = self.inner.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("starting a write transaction")?;
            let out = f(&tx)?;
            tx.commit().ctx("committing a write transaction")?;
            Ok(out)
        })
        .await
        .map_err(|e| MetaError::Backend(format!("metadata write task failed: {e}")))?
    }

    /// Runs `f` on a reader connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, MetaError> + Send + 'static,
    {
        let permit = self
            .inner
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| MetaError::Backend(format!("metadata reader pool closed: {e}")))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let popped = inner
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            // A connection is lost only if a previous read panicked; replace it.
            let conn = match popped {
                Some(conn) => conn,
                None => open_connection(&inner.path, true)?,
            };
            let out = f(&conn);
            inner
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn);
            out
        })
        .await
        .map_err(|e| MetaError::Backend(format!("metadata read task failed: {e}")))?
    }
}

/// Opens one connection with the settings every connection needs.
fn open_connection(path: &Path, reader: bool) -> Result<Connection, MetaError> {
    let what = |step: &str| format!("{step} of metadata database {}", path.display());
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ctx(&what("opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx(&what("setting the busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .ctx(&what("enabling WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(MetaError::Backend(format!(
            "metadata database {} cannot use WAL mode (journal mode is {mode:?}); \
             is it on a network file system?",
            path.display()
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )
    .ctx(&what("configuring the connection"))?;
    if reader {
        conn.execute_batch("PRAGMA query_only = ON;")
            .ctx(&what("configuring a reader connection"))?;
    }
    Ok(conn)
}

/// Applies the migrations the file lacks, in one immediate transaction (so two
/// processes opening a new file at once do not both migrate it).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), MetaError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the schema migration")?;
    let version: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")?;
    if version > SCHEMA_VERSION {
        return Err(MetaError::Backend(format!(
            "metadata database {} has schema version {version}, newer than this Wharf \
             understands ({SCHEMA_VERSION}); upgrade Wharf",
            path.display()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = i + 1;
        tx.execute_batch(sql)
            .ctx(&format!("migrating the schema to version {to}"))?;
        tx.execute_batch(&format!("PRAGMA user_version = {to}"))
            .ctx(&format!("recording schema version {to}"))?;
        tracing::info!(path = %path.display(), version = to, "migrated metadata schema");
    }
    tx.commit().ctx("committing the schema migration")
}

fn parse_digest(s: &str) -> Result<Digest, MetaError> {
    Digest::parse(s).map_err(|e| MetaError::Backend(format!("stored digest is invalid: {e}")))
}

fn to_i64(n: u64, what: &str) -> Result<i64, MetaError> {
    i64::try_from(n).map_err(|_| MetaError::Backend(format!("{what} {n} is too large")))
}

fn to_u64(n: i64, what: &str) -> Result<u64, MetaError> {
    u64::try_from(n).map_err(|_| MetaError::Backend(format!("stored {what} {n} is negative")))
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The id of repository `name`, if it exists.
fn repository_id(conn: &Connection, name: &str) -> Result<Option<i64>, MetaError> {
    conn.prepare_cached("SELECT id FROM repositories WHERE name = ?1")
        .and_then(|mut st| st.query_row([name], |r| r.get(0)).optional())
        .ctx(&format!("looking up repository {name:?}"))
}

/// The id of repository `name`, or [`MetaError::RepositoryNotFound`].
fn require_repository(conn: &Connection, name: &str) -> Result<i64, MetaError> {
    repository_id(conn, name)?.ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()))
}

fn get_repository_row(conn: &Connection, name: &str) -> Result<Option<Repository>, MetaError> {
    conn.prepare_cached(
        "SELECT name, created_at, tag_mutability, tag_exclusion_filters, scan_on_push,
                encryption_type, kms_key, policy
         FROM repositories WHERE name = ?1",
    )
    .and_then(|mut st| st.query_row([name], repository_row).optional())
    .ctx(&format!("reading repository {name:?}"))
}

fn insert_repository(tx: &Transaction<'_>, name: &str) -> Result<Repository, MetaError> {
    insert_repository_with(tx, name, &RepositorySettings::default())
}

fn insert_repository_with(
    tx: &Transaction<'_>,
    name: &str,
    s: &RepositorySettings,
) -> Result<Repository, MetaError> {
    let created_at = now_millis();
    tx.prepare_cached(
        "INSERT INTO repositories (name, created_at, tag_mutability, tag_exclusion_filters,
                                   scan_on_push, encryption_type, kms_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            name,
            created_at,
            s.tag_policy.mutability.as_str(),
            s.tag_policy.exclusion_filters.join(","),
            s.scan_on_push,
            s.encryption_type,
            s.kms_key
        ])
    })
    .ctx(&format!("creating repository {name:?}"))?;
    Ok(Repository {
        name: name.to_string(),
        created_at,
        tag_policy: s.tag_policy.clone(),
        scan_on_push: s.scan_on_push,
        encryption_type: s.encryption_type.clone(),
        kms_key: s.kms_key.clone(),
        policy: None,
    })
}

/// Sum of the sizes of the blobs manifest `digest` references.
fn blob_bytes(conn: &Connection, repo: i64, digest: &str) -> Result<u64, MetaError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(b.size), 0) FROM manifest_blobs mb
             JOIN blobs b ON b.digest = mb.blob_digest
             WHERE mb.repository_id = ?1 AND mb.manifest_digest = ?2",
        )
        .and_then(|mut st| st.query_row(params![repo, digest], |r| r.get(0)))
        .ctx(&format!("sizing image {digest}"))?;
    to_u64(n, "image size")
}

/// Image `digest` of repository `repo`, with its size and tags.
fn image_row(conn: &Connection, repo: i64, digest: &str) -> Result<Option<ImageRecord>, MetaError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Millis,
        Option<Millis>,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT media_type, artifact_type, subject, pushed_at, last_pulled_at
             FROM manifests WHERE repository_id = ?1 AND digest = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![repo, digest], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .ctx(&format!("reading image {digest}"))?;
    let Some((media_type, artifact_type, subject, pushed_at, last_pulled_at)) = row else {
        return Ok(None);
    };
    let children: Vec<String> = conn
        .prepare_cached(
            "SELECT child_digest FROM manifest_children
             WHERE repository_id = ?1 AND parent_digest = ?2",
        )
        .and_then(|mut st| {
            st.query_map(params![repo, digest], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(&format!("reading the children of {digest}"))?;
    let mut size = blob_bytes(conn, repo, digest)?;
    for c in &children {
        size = size.max(blob_bytes(conn, repo, c)?);
    }
    let tags: Vec<String> = conn
        .prepare_cached(
            "SELECT name FROM tags WHERE repository_id = ?1 AND manifest_digest = ?2 ORDER BY name",
        )
        .and_then(|mut st| {
            st.query_map(params![repo, digest], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(&format!("reading the tags of {digest}"))?;
    Ok(Some(ImageRecord {
        digest: parse_digest(digest)?,
        media_type,
        artifact_type,
        size,
        tags,
        pushed_at,
        last_pulled_at,
        subject: subject.as_deref().map(parse_digest).transpose()?,
    }))
}

/// Inserts an access key row (callers check for duplicates and quotas first).
pub(crate) fn insert_access_key(tx: &Transaction<'_>, key: &AccessKey) -> Result<(), MetaError> {
    tx.prepare_cached(
        "INSERT INTO access_keys (access_key_id, secret_access_key, account_id,
                                  user_name, active, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![
            key.access_key_id,
            key.secret_access_key,
            key.account_id,
            key.user_name,
            key.active,
            key.created_at
        ])
    })
    .ctx(&format!("creating access key {}", key.access_key_id))?;
    Ok(())
}

const ACCESS_KEY_COLUMNS: &str = "SELECT access_key_id, secret_access_key, account_id,
    user_name, active, created_at FROM access_keys";

fn access_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessKey> {
    Ok(AccessKey {
        access_key_id: r.get(0)?,
        secret_access_key: r.get(1)?,
        account_id: r.get(2)?,
        user_name: r.get(3)?,
        active: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// A `repositories` row selected as (name, created_at, tag_mutability,
/// tag_exclusion_filters).
fn repository_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Repository> {
    let mutability: String = r.get(2)?;
    let filters: String = r.get(3)?;
    Ok(Repository {
        name: r.get(0)?,
        created_at: r.get(1)?,
        tag_policy: TagPolicy {
            mutability: TagMutability::parse(&mutability).unwrap_or_default(),
            exclusion_filters: filters
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
        },
        scan_on_push: r.get(4)?,
        encryption_type: r.get(5)?,
        kms_key: r.get(6)?,
        policy: r.get(7)?,
    })
}

/// Raw columns of a manifest row, converted outside rusqlite's row closure.
type ManifestRow = (
    String,
    String,
    Vec<u8>,
    Option<String>,
    Option<String>,
    Option<String>,
    Millis,
);

fn manifest_record(row: ManifestRow) -> Result<ManifestRecord, MetaError> {
    let (digest, media_type, body, artifact_type, annotations, subject, pushed_at) = row;
    Ok(ManifestRecord {
        digest: parse_digest(&digest)?,
        media_type,
        body: Bytes::from(body),
        artifact_type,
        annotations,
        subject: subject.as_deref().map(parse_digest).transpose()?,
        pushed_at,
    })
}

fn upload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        id: r.get(0)?,
        repository: r.get(1)?,
        started_at: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

fn put_manifest_tx(
    tx: &Transaction<'_>,
    repository: &str,
    m: &NewManifest,
    tag: Option<&str>,
) -> Result<PutOutcome, MetaError> {
    let repo = require_repository(tx, repository)?;
    let digest = m.digest.to_string();
    let ctx = |what: &str| format!("{what} for manifest {digest} in repository {repository:?}");

    let mut blobs: Vec<String> = Vec::with_capacity(m.blobs.len());
    {
        let mut linked = tx
            .prepare_cached(
                "SELECT 1 FROM repository_blobs WHERE repository_id = ?1 AND digest = ?2",
            )
            .ctx(&ctx("checking blobs"))?;
        let mut seen = HashSet::new();
        for blob in &m.blobs {
            if !seen.insert(blob) {
                continue;
            }
            let b = blob.to_string();
            if !linked
                .exists(params![repo, b])
                .ctx(&ctx("checking blobs"))?
            {
                return Err(MetaError::MissingBlob {
                    repository: repository.to_string(),
                    digest: blob.clone(),
                });
            }
            blobs.push(b);
        }
    }
    let mut children: Vec<String> = Vec::with_capacity(m.children.len());
    {
        let mut present = tx
            .prepare_cached("SELECT 1 FROM manifests WHERE repository_id = ?1 AND digest = ?2")
            .ctx(&ctx("checking child manifests"))?;
        let mut seen = HashSet::new();
        for child in &m.children {
            if !seen.insert(child) {
                continue;
            }
            let c = child.to_string();
            if !present
                .exists(params![repo, c])
                .ctx(&ctx("checking child manifests"))?
            {
                return Err(MetaError::MissingManifest {
                    repository: repository.to_string(),
                    digest: child.clone(),
                });
            }
            children.push(c);
        }
    }

    let size = to_i64(m.body.len() as u64, "manifest size")?;
    let now = now_millis();
    let created = tx
        .prepare_cached(
            "INSERT INTO manifests (repository_id, digest, media_type, body, size,
                 artifact_type, annotations, subject, pushed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .and_then(|mut st| {
            st.execute(params![
                repo,
                digest,
                m.media_type,
                m.body.as_ref(),
                size,
                m.artifact_type,
                m.annotations,
                m.subject.as_ref().map(|s| s.to_string()),
                now,
            ])
        })
        .ctx(&ctx("storing the manifest"))?
        > 0;
    if created {
        let mut edge = tx
            .prepare_cached(
                "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .ctx(&ctx("recording blob references"))?;
        for b in &blobs {
            edge.execute(params![repo, digest, b])
                .ctx(&ctx("recording blob references"))?;
        }
        let mut edge = tx
            .prepare_cached(
                "INSERT INTO manifest_children (repository_id, parent_digest, child_digest)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .ctx(&ctx("recording child manifests"))?;
        for c in &children {
            edge.execute(params![repo, digest, c])
                .ctx(&ctx("recording child manifests"))?;
        }
    }

    let mut previous_tag_target = None;
    if let Some(tag) = tag {
        let old: Option<String> = tx
            .prepare_cached(
                "SELECT manifest_digest FROM tags WHERE repository_id = ?1 AND name = ?2",
            )
            .and_then(|mut st| st.query_row(params![repo, tag], |r| r.get(0)).optional())
            .ctx(&ctx("reading the tag"))?;
        if let Some(current) = old.as_deref().filter(|o| *o != digest) {
            let policy = tx
                .prepare_cached(
                    "SELECT name, created_at, tag_mutability, tag_exclusion_filters, scan_on_push,
                            encryption_type, kms_key, policy
                     FROM repositories WHERE id = ?1",
                )
                .and_then(|mut st| st.query_row([repo], repository_row))
                .ctx(&ctx("reading the tag policy"))?
                .tag_policy;
            if policy.is_immutable(tag) {
                let why = match (policy.mutability, policy.matching_filter(tag)) {
                    (TagMutability::MutableWithExclusion, Some(f)) => format!(
                        "the repository is MUTABLE_WITH_EXCLUSION and the tag matches the immutable filter {f:?}"
                    ),
                    (TagMutability::ImmutableWithExclusion, _) => format!(
                        "the repository is IMMUTABLE_WITH_EXCLUSION and the tag matches none of the mutable filters {:?}",
                        policy.exclusion_filters
                    ),
                    _ => "the repository is immutable".to_string(),
                };
                return Err(MetaError::TagImmutable {
                    repository: repository.to_string(),
                    tag: tag.to_string(),
                    current: parse_digest(current)?,
                    why,
                });
            }
        }
        if old.as_deref() != Some(digest.as_str()) {
            tx.prepare_cached(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repository_id, name)
                 DO UPDATE SET manifest_digest = excluded.manifest_digest,
                               updated_at = excluded.updated_at",
            )
            .and_then(|mut st| st.execute(params![repo, tag, digest, now]))
            .ctx(&ctx(&format!("setting tag {tag:?}")))?;
            previous_tag_target = old.as_deref().map(parse_digest).transpose()?;
        }
    }
    Ok(PutOutcome {
        created,
        previous_tag_target,
    })
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn create_repository(&self, name: &str) -> Result<Repository, MetaError> {
        let name = name.to_string();
        self.write(move |tx| {
            if repository_id(tx, &name)?.is_some() {
                return Err(MetaError::RepositoryExists(name));
            }
            insert_repository(tx, &name)
        })
        .await
    }

    async fn ensure_repository(&self, name: &str) -> Result<Repository, MetaError> {
        // Most calls find it: try a reader first so pushes do not queue on the writer.
        if let Some(repo) = self.get_repository(name).await? {
            return Ok(repo);
        }
        let name = name.to_string();
        self.write(move |tx| match get_repository_row(tx, &name)? {
            Some(repo) => Ok(repo),
            None => insert_repository(tx, &name),
        })
        .await
    }

    async fn create_repository_with(
        &self,
        name: &str,
        settings: &RepositorySettings,
    ) -> Result<Repository, MetaError> {
        settings
            .tag_policy
            .validate()
            .map_err(MetaError::InvalidSetting)?;
        let name = name.to_string();
        let settings = settings.clone();
        self.write(move |tx| {
            if repository_id(tx, &name)?.is_some() {
                return Err(MetaError::RepositoryExists(name.clone()));
            }
            insert_repository_with(tx, &name, &settings)
        })
        .await
    }

    async fn set_scan_on_push(
        &self,
        name: &str,
        scan_on_push: bool,
    ) -> Result<Repository, MetaError> {
        let name = name.to_string();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE repositories SET scan_on_push = ?2 WHERE name = ?1")
                .and_then(|mut st| st.execute(params![name, scan_on_push]))
                .ctx(&format!("setting scan on push of {name:?}"))?;
            if changed == 0 {
                return Err(MetaError::RepositoryNotFound(name.clone()));
            }
            get_repository_row(tx, &name)?
                .ok_or_else(|| MetaError::RepositoryNotFound(name.clone()))
        })
        .await
    }

    async fn set_tag_policy(
        &self,
        name: &str,
        policy: &TagPolicy,
    ) -> Result<Repository, MetaError> {
        policy.validate().map_err(MetaError::InvalidSetting)?;
        let name = name.to_string();
        let policy = policy.clone();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE repositories SET tag_mutability = ?2, tag_exclusion_filters = ?3
                     WHERE name = ?1",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        name,
                        policy.mutability.as_str(),
                        policy.exclusion_filters.join(",")
                    ])
                })
                .ctx(&format!("setting the tag policy of {name:?}"))?;
            if changed == 0 {
                return Err(MetaError::RepositoryNotFound(name.clone()));
            }
            get_repository_row(tx, &name)?
                .ok_or_else(|| MetaError::RepositoryNotFound(name.clone()))
        })
        .await
    }

    async fn set_repository_policy(
        &self,
        name: &str,
        policy: Option<&str>,
    ) -> Result<Repository, MetaError> {
        let name = name.to_string();
        let policy = policy.map(str::to_string);
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE repositories SET policy = ?2 WHERE name = ?1")
                .and_then(|mut st| st.execute(params![name, policy]))
                .ctx(&format!("setting the policy of {name:?}"))?;
            if changed == 0 {
                return Err(MetaError::RepositoryNotFound(name.clone()));
            }
            get_repository_row(tx, &name)?
                .ok_or_else(|| MetaError::RepositoryNotFound(name.clone()))
        })
        .await
    }

    async fn repository_tags(&self, name: &str) -> Result<Vec<(String, String)>, MetaError> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT t.key, t.value FROM repositories r
                 JOIN repository_tags t ON t.repository_id = r.id
                 WHERE r.name = ?1 ORDER BY t.key",
            )
            .and_then(|mut st| {
                st.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .ctx(&format!("reading the tags of {name:?}"))
        })
        .await
    }

    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<(), MetaError> {
        let name = name.to_string();
        let tags = tags.to_vec();
        self.write(move |tx| {
            let repo = require_repository(tx, &name)?;
            for (k, v) in &tags {
                tx.prepare_cached(
                    "INSERT INTO repository_tags (repository_id, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (repository_id, key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut st| st.execute(params![repo, k, v]))
                .ctx(&format!("tagging {name:?}"))?;
            }
            let count: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM repository_tags WHERE repository_id = ?1")
                .and_then(|mut st| st.query_row([repo], |r| r.get(0)))
                .ctx(&format!("counting the tags of {name:?}"))?;
            if count as usize > crate::MAX_RESOURCE_TAGS {
                return Err(MetaError::InvalidSetting(format!(
                    "repository {name:?} would carry {count} tags; at most {} are allowed",
                    crate::MAX_RESOURCE_TAGS
                )));
            }
            Ok(())
        })
        .await
    }

    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<(), MetaError> {
        let name = name.to_string();
        let keys = keys.to_vec();
        self.write(move |tx| {
            let repo = require_repository(tx, &name)?;
            for k in &keys {
                tx.prepare_cached(
                    "DELETE FROM repository_tags WHERE repository_id = ?1 AND key = ?2",
                )
                .and_then(|mut st| st.execute(params![repo, k]))
                .ctx(&format!("untagging {name:?}"))?;
            }
            Ok(())
        })
        .await
    }

    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>, MetaError> {
        let account = account_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT policy FROM registries WHERE account_id = ?1")
                .and_then(|mut st| {
                    st.query_row([&account], |r| r.get::<_, Option<String>>(0))
                        .optional()
                })
                .map(Option::flatten)
                .ctx(&format!("reading the registry policy of account {account}"))
        })
        .await
    }

    async fn set_registry_policy(
        &self,
        account_id: &str,
        policy: Option<&str>,
    ) -> Result<(), MetaError> {
        let account = account_id.to_string();
        let policy = policy.map(str::to_string);
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO registries (account_id, policy) VALUES (?1, ?2)
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            )
            .and_then(|mut st| st.execute(params![account, policy]))
            .ctx(&format!("setting the registry policy of account {account}"))?;
            Ok(())
        })
        .await
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetaError> {
        let name = name.to_string();
        let candidate = candidate.to_vec();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO server_secrets (name, value, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![name, candidate, now_millis()]))
            .ctx(&format!("storing server secret {name:?}"))?;
            tx.prepare_cached("SELECT value FROM server_secrets WHERE name = ?1")
                .and_then(|mut st| st.query_row([&name], |r| r.get(0)))
                .ctx(&format!("reading server secret {name:?}"))
        })
        .await
    }

    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>, MetaError> {
        let repository = repository.to_string();
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| {
            let Some(repo) = repository_id(conn, &repository)? else {
                return Ok(Vec::new());
            };
            let digests: Vec<String> = conn
                .prepare_cached(
                    "SELECT digest FROM manifests WHERE repository_id = ?1 AND digest > ?2
                     ORDER BY digest LIMIT ?3",
                )
                .and_then(|mut st| {
                    st.query_map(params![repo, after, limit_param(limit)], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .ctx(&format!("listing the images of {repository:?}"))?;
            let mut out = Vec::with_capacity(digests.len());
            for d in digests {
                if let Some(img) = image_row(conn, repo, &d)? {
                    out.push(img);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_image(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ImageRecord>, MetaError> {
        let repository = repository.to_string();
        let reference = reference.clone();
        self.read(move |conn| {
            let Some(repo) = repository_id(conn, &repository)? else {
                return Ok(None);
            };
            let digest = match &reference {
                Reference::Digest(d) => d.to_string(),
                Reference::Tag(t) => {
                    let found: Option<String> = conn
                        .prepare_cached(
                            "SELECT manifest_digest FROM tags WHERE repository_id = ?1 AND name = ?2",
                        )
                        .and_then(|mut st| st.query_row(params![repo, t], |r| r.get(0)).optional())
                        .ctx(&format!("reading tag {t:?} of {repository:?}"))?;
                    match found {
                        Some(d) => d,
                        None => return Ok(None),
                    }
                }
            };
            image_row(conn, repo, &digest)
        })
        .await
    }

    async fn manifest_parents(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Digest>, MetaError> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.read(move |conn| {
            let Some(repo) = repository_id(conn, &repository)? else {
                return Ok(Vec::new());
            };
            let parents: Vec<String> = conn
                .prepare_cached(
                    "SELECT parent_digest FROM manifest_children
                     WHERE repository_id = ?1 AND child_digest = ?2 ORDER BY parent_digest",
                )
                .and_then(|mut st| {
                    st.query_map(params![repo, digest], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .ctx(&format!("reading the indexes that list {digest}"))?;
            parents.iter().map(|p| parse_digest(p)).collect()
        })
        .await
    }

    async fn record_pulls(
        &self,
        repository: &str,
        pulls: &[(Digest, Millis)],
    ) -> Result<(), MetaError> {
        let repository = repository.to_string();
        let pulls: Vec<(String, Millis)> = pulls.iter().map(|(d, t)| (d.to_string(), *t)).collect();
        self.write(move |tx| {
            let Some(repo) = repository_id(tx, &repository)? else {
                return Ok(());
            };
            for (d, t) in &pulls {
                tx.prepare_cached(
                    "UPDATE manifests SET last_pulled_at = ?3
                     WHERE repository_id = ?1 AND digest = ?2
                       AND (last_pulled_at IS NULL OR last_pulled_at < ?3)",
                )
                .and_then(|mut st| st.execute(params![repo, d, t]))
                .ctx(&format!("recording pulls of {repository:?}"))?;
            }
            Ok(())
        })
        .await
    }

    async fn get_repository(&self, name: &str) -> Result<Option<Repository>, MetaError> {
        let name = name.to_string();
        self.read(move |conn| get_repository_row(conn, &name)).await
    }

    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>, MetaError> {
        let after = after.map(str::to_string);
        self.read(move |conn| {
            let row = repository_row;
            let limit = limit_param(limit);
            match &after {
                Some(after) => conn
                    .prepare_cached(REPOSITORIES_AFTER)
                    .and_then(|mut st| st.query_map(params![after, limit], row)?.collect()),
                None => conn
                    .prepare_cached(REPOSITORIES_FIRST)
                    .and_then(|mut st| st.query_map(params![limit], row)?.collect()),
            }
            .ctx("listing repositories")
        })
        .await
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<(), MetaError> {
        let name = name.to_string();
        self.write(move |tx| {
            let id = require_repository(tx, &name)?;
            if !force {
                let manifests: i64 = tx
                    .prepare_cached("SELECT count(*) FROM manifests WHERE repository_id = ?1")
                    .and_then(|mut st| st.query_row([id], |r| r.get(0)))
                    .ctx(&format!("counting manifests of repository {name:?}"))?;
                if manifests > 0 {
                    return Err(MetaError::RepositoryNotEmpty {
                        name,
                        manifests: to_u64(manifests, "manifest count")?,
                    });
                }
            }
            // Tags, manifests, edges, blob links and uploads go by ON DELETE CASCADE;
            // the registry-wide `blobs` rows stay for garbage collection.
            tx.prepare_cached("DELETE FROM repositories WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .ctx(&format!("deleting repository {name:?}"))?;
            Ok(())
        })
        .await
    }

    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let repository = repository.to_string();
        let digest = digest.to_string();
        let size = to_i64(size, "blob size")?;
        self.write(move |tx| {
            let repo = require_repository(tx, &repository)?;
            let now = now_millis();
            let what = format!("linking blob {digest} to repository {repository:?}");
            tx.prepare_cached(
                "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![digest, size, now]))
            .ctx(&what)?;
            tx.prepare_cached(
                "INSERT INTO repository_blobs (repository_id, digest, linked_at)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![repo, digest, now]))
            .ctx(&what)?;
            Ok(())
        })
        .await
    }

    async fn mount_blob(
        &self,
        from: &str,
        to: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (from, to, digest) = (from.to_string(), to.to_string(), digest.to_string());
        self.write(move |tx| {
            let target = require_repository(tx, &to)?;
            let what = format!("mounting blob {digest} from {from:?} into {to:?}");
            let size: Option<i64> = tx
                .prepare_cached(REPOSITORY_BLOB)
                .and_then(|mut st| st.query_row(params![from, digest], |r| r.get(0)).optional())
                .ctx(&what)?;
            let Some(size) = size else {
                return Ok(None);
            };
            tx.prepare_cached(
                "INSERT INTO repository_blobs (repository_id, digest, linked_at)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![target, digest, now_millis()]))
            .ctx(&what)?;
            Ok(Some(to_u64(size, "blob size")?))
        })
        .await
    }

    async fn repository_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.read(move |conn| {
            let size: Option<i64> = conn
                .prepare_cached(REPOSITORY_BLOB)
                .and_then(|mut st| {
                    st.query_row(params![repository, digest], |r| r.get(0))
                        .optional()
                })
                .ctx(&format!("looking up blob {digest} in {repository:?}"))?;
            size.map(|s| to_u64(s, "blob size")).transpose()
        })
        .await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let digest = digest.to_string();
        self.read(move |conn| {
            let size: Option<i64> = conn
                .prepare_cached("SELECT size FROM blobs WHERE digest = ?1")
                .and_then(|mut st| st.query_row([&digest], |r| r.get(0)).optional())
                .ctx(&format!("looking up blob {digest}"))?;
            size.map(|s| to_u64(s, "blob size")).transpose()
        })
        .await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError> {
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let digests: Vec<String> = conn
                .prepare_cached(
                    "SELECT digest FROM blobs WHERE digest > ?1 ORDER BY digest LIMIT ?2",
                )
                .and_then(|mut st| {
                    st.query_map(params![after, limit], |r| r.get(0))?
                        .collect::<Result<_, _>>()
                })
                .ctx("listing blobs")?;
            digests.iter().map(|d| parse_digest(d)).collect()
        })
        .await
    }

    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM repository_blobs
                     WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1)
                       AND digest = ?2",
                )
                .and_then(|mut st| st.execute(params![repository, digest]))
                .ctx(&format!("unlinking blob {digest} from {repository:?}"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_upload(&self, upload: &Upload) -> Result<(), MetaError> {
        let upload = upload.clone();
        self.write(move |tx| {
            let repo = require_repository(tx, &upload.repository)?;
            tx.prepare_cached(
                "INSERT INTO uploads (id, repository_id, started_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    upload.id,
                    repo,
                    upload.started_at,
                    upload.updated_at
                ])
            })
            .ctx(&format!("recording upload {}", upload.id))?;
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>, MetaError> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT u.id, r.name, u.started_at, u.updated_at
                 FROM uploads u JOIN repositories r ON r.id = u.repository_id
                 WHERE u.id = ?1",
            )
            .and_then(|mut st| st.query_row([&id], upload_row).optional())
            .ctx(&format!("looking up upload {id}"))
        })
        .await
    }

    async fn touch_upload(&self, id: &str, at: Millis) -> Result<(), MetaError> {
        let id = id.to_string();
        self.write(move |tx| {
            tx.prepare_cached("UPDATE uploads SET updated_at = ?2 WHERE id = ?1")
                .and_then(|mut st| st.execute(params![id, at]))
                .ctx(&format!("touching upload {id}"))?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM uploads WHERE id = ?1")
                .and_then(|mut st| st.execute([&id]))
                .ctx(&format!("deleting upload {id}"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<Upload>, MetaError> {
        self.read(move |conn| {
            conn.prepare_cached(STALE_UPLOADS)
                .and_then(|mut st| st.query_map([before], upload_row)?.collect())
                .ctx("listing stale uploads")
        })
        .await
    }

    async fn create_access_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        let key = key.clone();
        self.write(move |tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM access_keys WHERE access_key_id = ?1")
                .and_then(|mut st| st.exists([&key.access_key_id]))
                .ctx("checking access keys")?;
            if exists {
                return Err(MetaError::AccessKeyExists(key.access_key_id.clone()));
            }
            insert_access_key(tx, &key)?;
            Ok(())
        })
        .await
    }

    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, MetaError> {
        let id = access_key_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("{ACCESS_KEY_COLUMNS} WHERE access_key_id = ?1"))
                .and_then(|mut st| st.query_row([&id], access_key_row).optional())
                .ctx(&format!("reading access key {id}"))
        })
        .await
    }

    async fn list_access_keys(&self, account_id: &str) -> Result<Vec<AccessKey>, MetaError> {
        let account = account_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "{ACCESS_KEY_COLUMNS} WHERE account_id = ?1 ORDER BY access_key_id"
            ))
            .and_then(|mut st| st.query_map([&account], access_key_row)?.collect())
            .ctx(&format!("listing access keys of account {account}"))
        })
        .await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, MetaError> {
        let id = access_key_id.to_string();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM access_keys WHERE access_key_id = ?1")
                .and_then(|mut st| st.execute([&id]))
                .map(|n| n > 0)
                .ctx(&format!("deleting access key {id}"))
        })
        .await
    }

    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &NewManifest,
        tag: Option<&str>,
    ) -> Result<PutOutcome, MetaError> {
        let repository = repository.to_string();
        let manifest = manifest.clone();
        let tag = tag.map(str::to_string);
        self.write(move |tx| put_manifest_tx(tx, &repository, &manifest, tag.as_deref()))
            .await
    }

    async fn get_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let repository = repository.to_string();
        let reference = reference.clone();
        self.read(move |conn| {
            let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<ManifestRow> {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            };
            let found = match &reference {
                Reference::Tag(tag) => conn
                    .prepare_cached(MANIFEST_BY_TAG)
                    .and_then(|mut st| st.query_row(params![repository, tag], row).optional())
                    .ctx(&format!("reading manifest {tag:?} of {repository:?}"))?,
                Reference::Digest(digest) => conn
                    .prepare_cached(MANIFEST_BY_DIGEST)
                    .and_then(|mut st| {
                        st.query_row(params![repository, digest.to_string()], row)
                            .optional()
                    })
                    .ctx(&format!("reading manifest {digest} of {repository:?}"))?,
            };
            found.map(manifest_record).transpose()
        })
        .await
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.write(move |tx| {
            let Some(repo) = repository_id(tx, &repository)? else {
                return Ok(false);
            };
            let what = format!("deleting manifest {digest} of {repository:?}");
            // The foreign keys would cascade these too; explicit deletes keep the
            // protocol visible and independent of `PRAGMA foreign_keys`.
            for sql in [
                "DELETE FROM tags WHERE repository_id = ?1 AND manifest_digest = ?2",
                "DELETE FROM manifest_blobs WHERE repository_id = ?1 AND manifest_digest = ?2",
                "DELETE FROM manifest_children WHERE repository_id = ?1 AND parent_digest = ?2",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut st| st.execute(params![repo, digest]))
                    .ctx(&what)?;
            }
            let n = tx
                .prepare_cached("DELETE FROM manifests WHERE repository_id = ?1 AND digest = ?2")
                .and_then(|mut st| st.execute(params![repo, digest]))
                .ctx(&what)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, MetaError> {
        let (repository, tag) = (repository.to_string(), tag.to_string());
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM tags
                     WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1)
                       AND name = ?2",
                )
                .and_then(|mut st| st.execute(params![repository, tag]))
                .ctx(&format!("deleting tag {tag:?} of {repository:?}"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetaError> {
        let repository = repository.to_string();
        let after = after.map(str::to_string);
        self.read(move |conn| {
            let limit = limit_param(limit);
            let row = |r: &rusqlite::Row<'_>| r.get::<_, String>(0);
            match &after {
                Some(after) => conn.prepare_cached(TAGS_AFTER).and_then(|mut st| {
                    st.query_map(params![repository, after, limit], row)?
                        .collect()
                }),
                None => conn
                    .prepare_cached(TAGS_FIRST)
                    .and_then(|mut st| st.query_map(params![repository, limit], row)?.collect()),
            }
            .ctx(&format!("listing tags of {repository:?}"))
        })
        .await
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        let (repository, subject) = (repository.to_string(), subject.to_string());
        let artifact_type = artifact_type.map(str::to_string);
        self.read(move |conn| {
            let rows: Vec<(String, String, i64, Option<String>, Option<String>)> = conn
                .prepare_cached(REFERRERS)
                .and_then(|mut st| {
                    st.query_map(params![repository, subject, artifact_type], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect()
                })
                .ctx(&format!("listing referrers of {subject} in {repository:?}"))?;
            rows.into_iter()
                .map(|(digest, media_type, size, artifact_type, annotations)| {
                    Ok(Referrer {
                        digest: parse_digest(&digest)?,
                        media_type,
                        size: to_u64(size, "manifest size")?,
                        artifact_type,
                        annotations,
                    })
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every read path is an index search: no table scan, no sort.
    #[test]
    fn read_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let mut conn = open_connection(&path, false).unwrap();
        migrate(&mut conn, &path).unwrap();
        for (name, sql, expected_index) in [
            ("manifest by tag", MANIFEST_BY_TAG, None),
            ("manifest by digest", MANIFEST_BY_DIGEST, None),
            ("referrers", REFERRERS, Some("manifests_subject")),
            ("first tags", TAGS_FIRST, None),
            ("tags after", TAGS_AFTER, None),
            ("first repositories", REPOSITORIES_FIRST, None),
            ("repositories after", REPOSITORIES_AFTER, None),
            ("repository blob", REPOSITORY_BLOB, None),
            ("stale uploads", STALE_UPLOADS, Some("uploads_updated")),
        ] {
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // Parameters left unbound: the plan does not depend on their values.
            let mut rows = st.raw_query();
            let mut steps = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                steps.push(row.get::<_, String>(3).unwrap());
            }
            let plan = steps.join("; ");
            let scans = plan
                .split("; ")
                .any(|step| step.starts_with("SCAN") && !step.contains("INDEX"));
            assert!(!scans, "{name} scans a table: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{name} sorts: {plan}");
            if let Some(index) = expected_index {
                assert!(plan.contains(index), "{name} does not use {index}: {plan}");
            }
        }
    }
}
