//! The PostgreSQL schema and its migrations.
//!
//! [`MIGRATIONS`] is append-only: entry `i` brings a database from version `i` to
//! `i + 1`; never edit a released entry, add a new one. Applied versions are rows of
//! `wharf_schema_versions`. [`PgStore::connect`](crate::PgStore::connect) applies the
//! missing ones in one transaction under `pg_advisory_xact_lock(`[`MIGRATION_LOCK`]`)`:
//! replicas starting at once queue on the lock, the first migrates, the others find
//! the schema current. A database of a newer version than this build knows is refused.
//!
//! Conventions: times are `BIGINT` milliseconds since the Unix epoch; every text column
//! that is compared or sorted is `COLLATE "C"` (byte order, and `lower()` folds ASCII
//! letters only, as SQLite's `NOCASE`); IAM names are unique through indexes on
//! `lower(name)`; foreign keys cascade where the SQLite schema's do.

use crate::{get, Context, PgStore, R};
use wharf_meta::{now_millis, MetaError};

/// The advisory lock key (64-bit form) held while migrating: `wharfmig` in ASCII.
pub const MIGRATION_LOCK: i64 = 0x7768_6172_666d_6967;

/// First key of the transaction-scoped advisory locks (two-key form) on an access-key
/// or session id; the second key is a hash of the id.
pub(crate) const KEY_ID_LOCK: i32 = 0x7768_6b31;

/// Schema migrations, oldest first.
pub const MIGRATIONS: &[&str] = &[
    // 1: repositories, blobs, manifests and their edges, tags, uploads, access keys,
    // policies and resource tags, server secrets, IAM, jobs and named leases.
    r#"
    CREATE TABLE repositories (
        id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name                  TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at            BIGINT NOT NULL,
        tag_mutability        TEXT NOT NULL DEFAULT 'MUTABLE',
        tag_exclusion_filters TEXT[] NOT NULL DEFAULT '{}',
        scan_on_push          BOOLEAN NOT NULL DEFAULT FALSE,
        encryption_type       TEXT NOT NULL DEFAULT 'AES256',
        kms_key               TEXT,
        policy                TEXT
    );

    CREATE TABLE blobs (
        digest     TEXT COLLATE "C" PRIMARY KEY,
        size       BIGINT NOT NULL CHECK (size >= 0),
        created_at BIGINT NOT NULL
    );

    CREATE TABLE repository_blobs (
        repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest        TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
        linked_at     BIGINT NOT NULL,
        PRIMARY KEY (repository_id, digest)
    );
    CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

    CREATE TABLE manifests (
        repository_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest         TEXT COLLATE "C" NOT NULL,
        media_type     TEXT NOT NULL,
        body           BYTEA NOT NULL,
        size           BIGINT NOT NULL CHECK (size >= 0),
        artifact_type  TEXT,
        annotations    TEXT,
        subject        TEXT COLLATE "C",
        pushed_at      BIGINT NOT NULL,
        last_pulled_at BIGINT,
        PRIMARY KEY (repository_id, digest)
    );
    -- Serves the referrers query's filter and its order by digest.
    CREATE INDEX manifests_subject ON manifests (repository_id, subject, digest);

    CREATE TABLE manifest_blobs (
        repository_id   BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        manifest_digest TEXT COLLATE "C" NOT NULL,
        blob_digest     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (repository_id, manifest_digest, blob_digest),
        FOREIGN KEY (repository_id, manifest_digest)
            REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    );
    CREATE INDEX manifest_blobs_blob ON manifest_blobs (repository_id, blob_digest);

    CREATE TABLE manifest_children (
        repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        parent_digest TEXT COLLATE "C" NOT NULL,
        child_digest  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (repository_id, parent_digest, child_digest),
        FOREIGN KEY (repository_id, parent_digest)
            REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    );
    CREATE INDEX manifest_children_child ON manifest_children (repository_id, child_digest);

    CREATE TABLE tags (
        repository_id   BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        name            TEXT COLLATE "C" NOT NULL,
        manifest_digest TEXT COLLATE "C" NOT NULL,
        updated_at      BIGINT NOT NULL,
        PRIMARY KEY (repository_id, name),
        FOREIGN KEY (repository_id, manifest_digest)
            REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
    );
    -- Tags of a manifest, in order (image listings).
    CREATE INDEX tags_manifest ON tags (repository_id, manifest_digest, name);

    CREATE TABLE uploads (
        id            TEXT COLLATE "C" PRIMARY KEY,
        repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        started_at    BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL
    );
    CREATE INDEX uploads_repository ON uploads (repository_id);
    CREATE INDEX uploads_updated ON uploads (updated_at, id);

    CREATE TABLE access_keys (
        access_key_id     TEXT COLLATE "C" PRIMARY KEY,
        secret_access_key TEXT NOT NULL,
        account_id        TEXT COLLATE "C" NOT NULL,
        user_name         TEXT COLLATE "C" NOT NULL,
        active            BOOLEAN NOT NULL,
        created_at        BIGINT NOT NULL
    );
    CREATE INDEX access_keys_by_account ON access_keys (account_id, access_key_id);
    CREATE INDEX access_keys_by_user ON access_keys (account_id, lower(user_name));

    CREATE TABLE repository_tags (
        repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        key           TEXT COLLATE "C" NOT NULL,
        value         TEXT NOT NULL,
        PRIMARY KEY (repository_id, key)
    );

    CREATE TABLE registries (
        account_id TEXT COLLATE "C" PRIMARY KEY,
        policy     TEXT
    );

    CREATE TABLE server_secrets (
        name       TEXT COLLATE "C" PRIMARY KEY,
        value      BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE iam_users (
        user_id    TEXT COLLATE "C" PRIMARY KEY,
        account_id TEXT COLLATE "C" NOT NULL,
        user_name  TEXT COLLATE "C" NOT NULL,
        path       TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX iam_users_name ON iam_users (account_id, lower(user_name));

    CREATE TABLE iam_roles (
        role_id              TEXT COLLATE "C" PRIMARY KEY,
        account_id           TEXT COLLATE "C" NOT NULL,
        role_name            TEXT COLLATE "C" NOT NULL,
        path                 TEXT COLLATE "C" NOT NULL,
        assume_role_policy   TEXT NOT NULL,
        description          TEXT,
        max_session_duration BIGINT NOT NULL,
        created_at           BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX iam_roles_name ON iam_roles (account_id, lower(role_name));

    CREATE TABLE iam_policies (
        policy_id          TEXT COLLATE "C" PRIMARY KEY,
        account_id         TEXT COLLATE "C" NOT NULL,
        policy_name        TEXT COLLATE "C" NOT NULL,
        path               TEXT COLLATE "C" NOT NULL,
        arn                TEXT COLLATE "C" NOT NULL UNIQUE,
        document           TEXT NOT NULL,
        default_version_id TEXT NOT NULL,
        description        TEXT,
        created_at         BIGINT NOT NULL,
        updated_at         BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX iam_policies_name ON iam_policies (account_id, lower(policy_name));

    -- kind: 'user', 'role' or 'policy'; name: the entity's name as stored.
    CREATE TABLE iam_tags (
        account_id TEXT COLLATE "C" NOT NULL,
        kind       TEXT COLLATE "C" NOT NULL,
        name       TEXT COLLATE "C" NOT NULL,
        key        TEXT COLLATE "C" NOT NULL,
        value      TEXT NOT NULL
    );
    CREATE UNIQUE INDEX iam_tags_key ON iam_tags (account_id, kind, lower(name), key);

    -- kind: 'user' or 'role'.
    CREATE TABLE iam_inline_policies (
        account_id     TEXT COLLATE "C" NOT NULL,
        kind           TEXT COLLATE "C" NOT NULL,
        principal_name TEXT COLLATE "C" NOT NULL,
        policy_name    TEXT COLLATE "C" NOT NULL,
        document       TEXT NOT NULL
    );
    CREATE UNIQUE INDEX iam_inline_policies_name
        ON iam_inline_policies (account_id, kind, lower(principal_name), lower(policy_name));

    CREATE TABLE iam_attachments (
        account_id     TEXT COLLATE "C" NOT NULL,
        kind           TEXT COLLATE "C" NOT NULL,
        principal_name TEXT COLLATE "C" NOT NULL,
        policy_arn     TEXT COLLATE "C" NOT NULL,
        attached_at    BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX iam_attachments_key
        ON iam_attachments (account_id, kind, lower(principal_name), policy_arn);
    CREATE INDEX iam_attachments_by_policy ON iam_attachments (policy_arn, account_id);

    CREATE TABLE iam_sessions (
        access_key_id     TEXT COLLATE "C" PRIMARY KEY,
        secret_access_key TEXT NOT NULL,
        session_token     TEXT NOT NULL,
        account_id        TEXT COLLATE "C" NOT NULL,
        role_name         TEXT COLLATE "C" NOT NULL,
        role_path         TEXT NOT NULL,
        session_name      TEXT NOT NULL,
        expires_at        BIGINT NOT NULL,
        created_at        BIGINT NOT NULL
    );
    CREATE INDEX iam_sessions_by_expiry ON iam_sessions (expires_at);
    CREATE INDEX iam_sessions_by_role ON iam_sessions (account_id, lower(role_name));

    -- A job is queued until completed; holder/lease_until are set while claimed.
    CREATE TABLE jobs (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind        TEXT COLLATE "C" NOT NULL,
        key         TEXT COLLATE "C" NOT NULL,
        payload     TEXT NOT NULL,
        run_at      BIGINT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        holder      TEXT COLLATE "C",
        lease_until BIGINT,
        UNIQUE (kind, key)
    );
    CREATE INDEX jobs_due ON jobs (kind, run_at, id);

    CREATE TABLE leases (
        name        TEXT COLLATE "C" PRIMARY KEY,
        holder      TEXT COLLATE "C" NOT NULL,
        lease_until BIGINT NOT NULL
    );
    "#,
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Applies the migrations the database lacks (see the module documentation).
pub(crate) async fn migrate(store: &PgStore) -> Result<(), MetaError> {
    let mut client = store.client().await?;
    let target = store.target.clone();
    let result: R<()> = async {
        let tx = client
            .transaction()
            .await
            .ctx("starting the schema migration")?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .ctx("waiting for the schema migration lock")?;
        let table = tx
            .query_one(
                "SELECT to_regclass('wharf_schema_versions') IS NOT NULL",
                &[],
            )
            .await
            .ctx("looking for the schema version table")?;
        if !get::<bool>(&table, 0)? {
            tx.batch_execute(
                "CREATE TABLE wharf_schema_versions (
                     version    INTEGER PRIMARY KEY,
                     applied_at BIGINT NOT NULL
                 )",
            )
            .await
            .ctx("creating the schema version table")?;
        }
        let current = tx
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM wharf_schema_versions",
                &[],
            )
            .await
            .ctx("reading the schema version")?;
        let version: i32 = get(&current, 0)?;
        if version > SCHEMA_VERSION {
            return Err(MetaError::Backend(format!(
                "PostgreSQL database {target} has schema version {version}, newer than this \
                 Wharf understands ({SCHEMA_VERSION}); upgrade Wharf"
            ))
            .into());
        }
        let skip = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(skip) {
            let to = i as i32 + 1;
            tx.batch_execute(sql)
                .await
                .ctx(&format!("migrating the schema to version {to}"))?;
            tx.execute(
                "INSERT INTO wharf_schema_versions (version, applied_at) VALUES ($1, $2)",
                &[&to, &now_millis()],
            )
            .await
            .ctx(&format!("recording schema version {to}"))?;
            tracing::info!(database = %target, version = to, "migrated metadata schema");
        }
        tx.commit().await.ctx("committing the schema migration")
    }
    .await;
    result.map_err(MetaError::from)
}
