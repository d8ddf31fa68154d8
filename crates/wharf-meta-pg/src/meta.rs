//! [`MetadataStore`] on [`PgStore`]: repositories, blobs, manifests, tags, uploads,
//! access keys, policies, resource tags, image listings and server secrets.

use crate::{
    exec, get, limit_param, one, row, rows, to_i64, to_u64, transaction, Failure, PgStore, R,
};
use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::GenericClient;
use std::collections::HashSet;
use tokio_postgres::Row;
use wharf_meta::{
    now_millis, AccessKey, ImageRecord, ManifestRecord, MetaError, MetadataStore, Millis,
    NewManifest, PutOutcome, Reference, Referrer, Repository, RepositorySettings, TagMutability,
    TagPolicy, Upload, MAX_RESOURCE_TAGS,
};
use wharf_oci::Digest;

/// The columns [`repository`] reads, in its order.
macro_rules! repository_columns {
    () => {
        "name, created_at, tag_mutability, tag_exclusion_filters, scan_on_push, \
         encryption_type, kms_key, policy"
    };
}

/// The columns [`manifest_record`] reads, in its order, of `manifests m`.
macro_rules! manifest_columns {
    () => {
        "m.digest, m.media_type, m.body, m.artifact_type, m.annotations, m.subject, m.pushed_at"
    };
}

/// The columns [`image_record`] reads, in its order, of `manifests m`: the size is the
/// blobs the manifest references, or the largest child's for an index.
macro_rules! image_columns {
    () => {
        "m.digest, m.media_type, m.artifact_type, m.subject, m.pushed_at, m.last_pulled_at,
         GREATEST(
             (SELECT COALESCE(SUM(b.size), 0) FROM manifest_blobs mb
              JOIN blobs b ON b.digest = mb.blob_digest
              WHERE mb.repository_id = m.repository_id AND mb.manifest_digest = m.digest),
             (SELECT COALESCE(MAX(c.total), 0) FROM manifest_children mc
              CROSS JOIN LATERAL (
                  SELECT COALESCE(SUM(b.size), 0) AS total FROM manifest_blobs mb
                  JOIN blobs b ON b.digest = mb.blob_digest
                  WHERE mb.repository_id = mc.repository_id
                    AND mb.manifest_digest = mc.child_digest) c
              WHERE mc.repository_id = m.repository_id AND mc.parent_digest = m.digest)
         )::BIGINT AS size,
         ARRAY(SELECT t.name FROM tags t
               WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest
               ORDER BY t.name) AS tags"
    };
}

const REPOSITORY_BY_NAME: &str = concat!(
    "SELECT ",
    repository_columns!(),
    " FROM repositories WHERE name = $1"
);
const REPOSITORIES_FIRST: &str = concat!(
    "SELECT ",
    repository_columns!(),
    " FROM repositories ORDER BY name LIMIT $1"
);
const REPOSITORIES_AFTER: &str = concat!(
    "SELECT ",
    repository_columns!(),
    " FROM repositories WHERE name > $1 ORDER BY name LIMIT $2"
);
const INSERT_REPOSITORY: &str = concat!(
    "INSERT INTO repositories (name, created_at, tag_mutability, tag_exclusion_filters,
                               scan_on_push, encryption_type, kms_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (name) DO NOTHING
     RETURNING ",
    repository_columns!()
);
/// A manifest by tag: the hottest query (every pull by tag).
const MANIFEST_BY_TAG: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r
      JOIN tags t ON t.repository_id = r.id
      JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
      WHERE r.name = $1 AND t.name = $2"
);
const MANIFEST_BY_DIGEST: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r
      JOIN manifests m ON m.repository_id = r.id
      WHERE r.name = $1 AND m.digest = $2"
);
const IMAGES_AFTER: &str = concat!(
    "SELECT ",
    image_columns!(),
    " FROM manifests m
      WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) AND m.digest > $2
      ORDER BY m.digest LIMIT $3"
);
const IMAGE_BY_DIGEST: &str = concat!(
    "SELECT ",
    image_columns!(),
    " FROM repositories r JOIN manifests m ON m.repository_id = r.id
      WHERE r.name = $1 AND m.digest = $2"
);
const IMAGE_BY_TAG: &str = concat!(
    "SELECT ",
    image_columns!(),
    " FROM repositories r
      JOIN tags tt ON tt.repository_id = r.id
      JOIN manifests m ON m.repository_id = tt.repository_id AND m.digest = tt.manifest_digest
      WHERE r.name = $1 AND tt.name = $2"
);
const REFERRERS: &str = "
    SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
    FROM manifests m
    WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) AND m.subject = $2
      AND ($3::text IS NULL OR m.artifact_type = $3)
    ORDER BY m.digest";
const TAGS_FIRST: &str = "
    SELECT t.name FROM tags t
    WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1)
    ORDER BY t.name LIMIT $2";
const TAGS_AFTER: &str = "
    SELECT t.name FROM tags t
    WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.name > $2
    ORDER BY t.name LIMIT $3";
/// Size of a blob if the named repository links it.
const REPOSITORY_BLOB: &str = "
    SELECT b.size FROM repositories r
    JOIN repository_blobs rb ON rb.repository_id = r.id
    JOIN blobs b ON b.digest = rb.digest
    WHERE r.name = $1 AND rb.digest = $2";
const STALE_UPLOADS: &str = "
    SELECT u.id, r.name, u.started_at, u.updated_at
    FROM uploads u JOIN repositories r ON r.id = u.repository_id
    WHERE u.updated_at < $1 ORDER BY u.updated_at, u.id";
pub(crate) const ACCESS_KEY_COLUMNS: &str = "SELECT access_key_id, secret_access_key, account_id,
    user_name, active, created_at FROM access_keys";

fn parse_digest(s: &str) -> R<Digest> {
    Digest::parse(s)
        .map_err(|e| MetaError::Backend(format!("stored digest {s:?} is invalid: {e}")).into())
}

/// A stored tag mutability of repository `name`.
fn mutability(name: &str, stored: &str) -> R<TagMutability> {
    TagMutability::parse(stored).ok_or_else(|| {
        MetaError::Backend(format!(
            "repository {name:?} has an unknown tag mutability {stored:?}"
        ))
        .into()
    })
}

/// A `repositories` row selected as [`repository_columns!`].
fn repository(r: &Row) -> R<Repository> {
    let name: String = get(r, 0)?;
    Ok(Repository {
        created_at: get(r, 1)?,
        tag_policy: TagPolicy {
            mutability: mutability(&name, get(r, 2)?)?,
            exclusion_filters: get(r, 3)?,
        },
        scan_on_push: get(r, 4)?,
        encryption_type: get(r, 5)?,
        kms_key: get(r, 6)?,
        policy: get(r, 7)?,
        name,
    })
}

/// A manifest selected as [`manifest_columns!`].
fn manifest_record(r: &Row) -> R<ManifestRecord> {
    let digest: &str = get(r, 0)?;
    let subject: Option<&str> = get(r, 5)?;
    let body: &[u8] = get(r, 2)?;
    Ok(ManifestRecord {
        digest: parse_digest(digest)?,
        media_type: get(r, 1)?,
        body: Bytes::copy_from_slice(body),
        artifact_type: get(r, 3)?,
        annotations: get(r, 4)?,
        subject: subject.map(parse_digest).transpose()?,
        pushed_at: get(r, 6)?,
    })
}

/// An image selected as [`image_columns!`].
fn image_record(r: &Row) -> R<ImageRecord> {
    let digest: &str = get(r, 0)?;
    let subject: Option<&str> = get(r, 3)?;
    Ok(ImageRecord {
        digest: parse_digest(digest)?,
        media_type: get(r, 1)?,
        artifact_type: get(r, 2)?,
        subject: subject.map(parse_digest).transpose()?,
        pushed_at: get(r, 4)?,
        last_pulled_at: get(r, 5)?,
        size: to_u64(get(r, 6)?, "image size")?,
        tags: get(r, 7)?,
    })
}

fn upload(r: &Row) -> R<Upload> {
    Ok(Upload {
        id: get(r, 0)?,
        repository: get(r, 1)?,
        started_at: get(r, 2)?,
        updated_at: get(r, 3)?,
    })
}

/// An access key selected as [`ACCESS_KEY_COLUMNS`].
pub(crate) fn access_key(r: &Row) -> R<AccessKey> {
    Ok(AccessKey {
        access_key_id: get(r, 0)?,
        secret_access_key: get(r, 1)?,
        account_id: get(r, 2)?,
        user_name: get(r, 3)?,
        active: get(r, 4)?,
        created_at: get(r, 5)?,
    })
}

/// The id of repository `name`, locked with `lock` (`FOR KEY SHARE`, `FOR SHARE`, …),
/// if it exists.
async fn locked_repository<C: GenericClient>(c: &C, name: &str, lock: Lock) -> R<Option<i64>> {
    let sql = match lock {
        Lock::KeyShare => "SELECT id FROM repositories WHERE name = $1 FOR KEY SHARE",
        Lock::NoKeyUpdate => "SELECT id FROM repositories WHERE name = $1 FOR NO KEY UPDATE",
        Lock::Update => "SELECT id FROM repositories WHERE name = $1 FOR UPDATE",
    };
    match row(c, sql, &[&name], &format!("looking up repository {name:?}")).await? {
        Some(r) => Ok(Some(get(&r, 0)?)),
        None => Ok(None),
    }
}

/// Row locks on a repository, weakest first.
#[derive(Clone, Copy)]
enum Lock {
    /// Holds off the repository's deletion only.
    KeyShare,
    /// Also holds off other writers of the row and its `FOR SHARE` lockers.
    NoKeyUpdate,
    /// Exclusive: the repository is about to be deleted.
    Update,
}

/// The id of repository `name` locked with `lock`, or [`MetaError::RepositoryNotFound`].
async fn require_repository<C: GenericClient>(c: &C, name: &str, lock: Lock) -> R<i64> {
    locked_repository(c, name, lock)
        .await?
        .ok_or_else(|| MetaError::RepositoryNotFound(name.to_string()).into())
}

/// Inserts repository `name` unless it exists; `None` if it does.
async fn insert_repository<C: GenericClient>(
    c: &C,
    name: &str,
    s: &RepositorySettings,
) -> R<Option<Repository>> {
    let found = row(
        c,
        INSERT_REPOSITORY,
        &[
            &name,
            &now_millis(),
            &s.tag_policy.mutability.as_str(),
            &s.tag_policy.exclusion_filters,
            &s.scan_on_push,
            &s.encryption_type,
            &s.kms_key,
        ],
        &format!("creating repository {name:?}"),
    )
    .await?;
    found.as_ref().map(repository).transpose()
}

async fn create_repository_tx<C: GenericClient>(
    c: &C,
    name: &str,
    s: &RepositorySettings,
) -> R<Repository> {
    insert_repository(c, name, s)
        .await?
        .ok_or_else(|| MetaError::RepositoryExists(name.to_string()).into())
}

async fn ensure_repository_tx<C: GenericClient>(c: &C, name: &str) -> R<Repository> {
    // An insert that finds the name taken waited for its owner to commit, so the
    // read that follows (a new statement, a new snapshot) sees the row — unless it was
    // deleted in between; then try again.
    for _ in 0..3 {
        if let Some(created) = insert_repository(c, name, &RepositorySettings::default()).await? {
            return Ok(created);
        }
        let found = row(
            c,
            REPOSITORY_BY_NAME,
            &[&name],
            &format!("reading repository {name:?}"),
        )
        .await?;
        if let Some(r) = found {
            return repository(&r);
        }
    }
    Err(MetaError::Backend(format!(
        "repository {name:?} kept being created and deleted concurrently; try again"
    ))
    .into())
}

/// Why `tag` may not move under `policy`, as the error message says it.
fn immutability_reason(policy: &TagPolicy, tag: &str) -> String {
    match (policy.mutability, policy.matching_filter(tag)) {
        (TagMutability::MutableWithExclusion, Some(f)) => format!(
            "the repository is MUTABLE_WITH_EXCLUSION and the tag matches the immutable filter {f:?}"
        ),
        (TagMutability::ImmutableWithExclusion, _) => format!(
            "the repository is IMMUTABLE_WITH_EXCLUSION and the tag matches none of the mutable filters {:?}",
            policy.exclusion_filters
        ),
        _ => "the repository is immutable".to_string(),
    }
}

/// The distinct digests of `list`, in their first order.
fn distinct(list: &[Digest]) -> Vec<&Digest> {
    let mut seen = HashSet::new();
    list.iter().filter(|d| seen.insert(*d)).collect()
}

async fn put_manifest_tx<C: GenericClient>(
    c: &C,
    repository: &str,
    m: &NewManifest,
    tag: Option<&str>,
) -> R<PutOutcome> {
    let digest = m.digest.to_string();
    let ctx = |what: &str| format!("{what} for manifest {digest} in repository {repository:?}");

    // The repository row, FOR SHARE: tag-policy changes and deletion wait for us.
    let repo_row = row(
        c,
        "SELECT id, tag_mutability, tag_exclusion_filters FROM repositories
         WHERE name = $1 FOR SHARE",
        &[&repository],
        &ctx("locking the repository"),
    )
    .await?
    .ok_or_else(|| MetaError::RepositoryNotFound(repository.to_string()))?;
    let repo: i64 = get(&repo_row, 0)?;

    // Every referenced blob must be linked; the links stay until we commit.
    let blobs: Vec<String> = distinct(&m.blobs).iter().map(|d| d.to_string()).collect();
    if !blobs.is_empty() {
        let linked = rows(
            c,
            "SELECT digest FROM repository_blobs
             WHERE repository_id = $1 AND digest = ANY($2) FOR KEY SHARE",
            &[&repo, &blobs],
            &ctx("checking blobs"),
        )
        .await?;
        let linked: HashSet<String> = linked.iter().map(|r| get(r, 0)).collect::<R<_>>()?;
        if let Some(missing) = distinct(&m.blobs)
            .into_iter()
            .find(|d| !linked.contains(&d.to_string()))
        {
            return Err(MetaError::MissingBlob {
                repository: repository.to_string(),
                digest: missing.clone(),
            }
            .into());
        }
    }
    // Every child manifest must exist; they stay until we commit.
    let children: Vec<String> = distinct(&m.children)
        .iter()
        .map(|d| d.to_string())
        .collect();
    if !children.is_empty() {
        let present = rows(
            c,
            "SELECT digest FROM manifests
             WHERE repository_id = $1 AND digest = ANY($2) FOR KEY SHARE",
            &[&repo, &children],
            &ctx("checking child manifests"),
        )
        .await?;
        let present: HashSet<String> = present.iter().map(|r| get(r, 0)).collect::<R<_>>()?;
        if let Some(missing) = distinct(&m.children)
            .into_iter()
            .find(|d| !present.contains(&d.to_string()))
        {
            return Err(MetaError::MissingManifest {
                repository: repository.to_string(),
                digest: missing.clone(),
            }
            .into());
        }
    }

    // The manifest: inserted, or found (and kept from deletion until we commit).
    let size = to_i64(m.body.len() as u64, "manifest size")?;
    let now = now_millis();
    let subject = m.subject.as_ref().map(|s| s.to_string());
    let body: &[u8] = m.body.as_ref();
    let mut created = None;
    for _ in 0..3 {
        let inserted = exec(
            c,
            "INSERT INTO manifests (repository_id, digest, media_type, body, size,
                 artifact_type, annotations, subject, pushed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (repository_id, digest) DO NOTHING",
            &[
                &repo,
                &digest,
                &m.media_type,
                &body,
                &size,
                &m.artifact_type,
                &m.annotations,
                &subject,
                &now,
            ],
            &ctx("storing the manifest"),
        )
        .await?;
        if inserted > 0 {
            created = Some(true);
            break;
        }
        let kept = row(
            c,
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR KEY SHARE",
            &[&repo, &digest],
            &ctx("locking the stored manifest"),
        )
        .await?;
        if kept.is_some() {
            created = Some(false);
            break;
        }
    }
    let Some(created) = created else {
        return Err(MetaError::Backend(ctx(
            "the manifest kept being deleted concurrently while storing it; try again",
        ))
        .into());
    };
    if created {
        exec(
            c,
            "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest)
             SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
            &[&repo, &digest, &blobs],
            &ctx("recording blob references"),
        )
        .await?;
        exec(
            c,
            "INSERT INTO manifest_children (repository_id, parent_digest, child_digest)
             SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
            &[&repo, &digest, &children],
            &ctx("recording child manifests"),
        )
        .await?;
    }

    let Some(tag) = tag else {
        return Ok(PutOutcome {
            created,
            previous_tag_target: None,
        });
    };
    let tag_ctx = ctx(&format!("setting tag {tag:?}"));
    for _ in 0..3 {
        // A new tag: exactly one of several racing inserts creates it.
        let inserted = exec(
            c,
            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (repository_id, name) DO NOTHING",
            &[&repo, &tag, &digest, &now],
            &tag_ctx,
        )
        .await?;
        if inserted > 0 {
            return Ok(PutOutcome {
                created,
                previous_tag_target: None,
            });
        }
        // An existing tag: lock it and decide on its current target.
        let current = row(
            c,
            "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2 FOR UPDATE",
            &[&repo, &tag],
            &tag_ctx,
        )
        .await?;
        let Some(current) = current else {
            continue; // deleted meanwhile: create it
        };
        let current: String = get(&current, 0)?;
        if current == digest {
            return Ok(PutOutcome {
                created,
                previous_tag_target: None,
            });
        }
        let policy = TagPolicy {
            mutability: mutability(repository, get(&repo_row, 1)?)?,
            exclusion_filters: get(&repo_row, 2)?,
        };
        if policy.is_immutable(tag) {
            return Err(MetaError::TagImmutable {
                repository: repository.to_string(),
                tag: tag.to_string(),
                current: parse_digest(&current)?,
                why: immutability_reason(&policy, tag),
            }
            .into());
        }
        exec(
            c,
            "UPDATE tags SET manifest_digest = $3, updated_at = $4
             WHERE repository_id = $1 AND name = $2",
            &[&repo, &tag, &digest, &now],
            &tag_ctx,
        )
        .await?;
        return Ok(PutOutcome {
            created,
            previous_tag_target: Some(parse_digest(&current)?),
        });
    }
    Err(MetaError::Backend(ctx(&format!(
        "tag {tag:?} kept being deleted concurrently while moving it; try again"
    )))
    .into())
}

/// Locks access-key id `id` for the rest of the transaction and checks no access key
/// has it ([`MetaError::AccessKeyExists`]).
pub(crate) async fn claim_access_key_id<C: GenericClient>(c: &C, id: &str) -> R<()> {
    lock_key_id(c, id).await?;
    let taken = one(
        c,
        "SELECT EXISTS (SELECT 1 FROM access_keys WHERE access_key_id = $1)",
        &[&id],
        "checking access keys",
    )
    .await?;
    if get::<bool>(&taken, 0)? {
        return Err(MetaError::AccessKeyExists(id.to_string()).into());
    }
    Ok(())
}

/// Inserts an access key row (callers check the id and quotas first).
pub(crate) async fn insert_access_key<C: GenericClient>(c: &C, key: &AccessKey) -> R<()> {
    exec(
        c,
        "INSERT INTO access_keys (access_key_id, secret_access_key, account_id,
                                  user_name, active, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &key.access_key_id,
            &key.secret_access_key,
            &key.account_id,
            &key.user_name,
            &key.active,
            &key.created_at,
        ],
        &format!("creating access key {}", key.access_key_id),
    )
    .await?;
    Ok(())
}

/// Takes the transaction-scoped advisory lock on access-key or session id `id`, so
/// that checking both tables and inserting is atomic against other transactions.
pub(crate) async fn lock_key_id<C: GenericClient>(c: &C, id: &str) -> R<()> {
    exec(
        c,
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&crate::schema::KEY_ID_LOCK, &crate::lock_key(id)],
        &format!("locking key id {id}"),
    )
    .await?;
    Ok(())
}

/// Repository rows of `rows`.
fn repositories(rows: &[Row]) -> R<Vec<Repository>> {
    rows.iter().map(repository).collect()
}

#[async_trait]
impl MetadataStore for PgStore {
    async fn create_repository(&self, name: &str) -> Result<Repository, MetaError> {
        let c = self.client().await?;
        Ok(create_repository_tx(&c, name, &RepositorySettings::default()).await?)
    }

    async fn ensure_repository(&self, name: &str) -> Result<Repository, MetaError> {
        if let Some(repo) = self.get_repository(name).await? {
            return Ok(repo);
        }
        let c = self.client().await?;
        Ok(ensure_repository_tx(&c, name).await?)
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
        let c = self.client().await?;
        Ok(create_repository_tx(&c, name, settings).await?)
    }

    async fn set_scan_on_push(
        &self,
        name: &str,
        scan_on_push: bool,
    ) -> Result<Repository, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            concat!(
                "UPDATE repositories SET scan_on_push = $2 WHERE name = $1 RETURNING ",
                repository_columns!()
            ),
            &[&name, &scan_on_push],
            &format!("setting scan on push of {name:?}"),
        )
        .await?;
        match found {
            Some(r) => Ok(repository(&r)?),
            None => Err(MetaError::RepositoryNotFound(name.to_string())),
        }
    }

    async fn set_tag_policy(
        &self,
        name: &str,
        policy: &TagPolicy,
    ) -> Result<Repository, MetaError> {
        policy.validate().map_err(MetaError::InvalidSetting)?;
        let c = self.client().await?;
        let found = row(
            &c,
            concat!(
                "UPDATE repositories SET tag_mutability = $2, tag_exclusion_filters = $3
                 WHERE name = $1 RETURNING ",
                repository_columns!()
            ),
            &[
                &name,
                &policy.mutability.as_str(),
                &policy.exclusion_filters,
            ],
            &format!("setting the tag policy of {name:?}"),
        )
        .await?;
        match found {
            Some(r) => Ok(repository(&r)?),
            None => Err(MetaError::RepositoryNotFound(name.to_string())),
        }
    }

    async fn get_repository(&self, name: &str) -> Result<Option<Repository>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            REPOSITORY_BY_NAME,
            &[&name],
            &format!("reading repository {name:?}"),
        )
        .await?;
        Ok(found.as_ref().map(repository).transpose()?)
    }

    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>, MetaError> {
        let c = self.client().await?;
        let limit = limit_param(limit);
        let found = match after {
            Some(after) => {
                rows(
                    &c,
                    REPOSITORIES_AFTER,
                    &[&after, &limit],
                    "listing repositories",
                )
                .await?
            }
            None => rows(&c, REPOSITORIES_FIRST, &[&limit], "listing repositories").await?,
        };
        Ok(repositories(&found)?)
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<(), MetaError> {
        let what = format!("deleting repository {name:?}");
        transaction!(self, &what, |tx| async {
            let id = require_repository(&tx, name, Lock::Update).await?;
            if !force {
                let count = one(
                    &tx,
                    "SELECT count(*) FROM manifests WHERE repository_id = $1",
                    &[&id],
                    &format!("counting manifests of repository {name:?}"),
                )
                .await?;
                let manifests: i64 = get(&count, 0)?;
                if manifests > 0 {
                    return Err(Failure::from(MetaError::RepositoryNotEmpty {
                        name: name.to_string(),
                        manifests: to_u64(manifests, "manifest count")?,
                    }));
                }
            }
            // Tags, manifests, edges, blob links, uploads and resource tags go by ON
            // DELETE CASCADE; the registry-wide `blobs` rows stay for garbage collection.
            exec(&tx, "DELETE FROM repositories WHERE id = $1", &[&id], &what).await?;
            Ok(())
        })
    }

    async fn set_repository_policy(
        &self,
        name: &str,
        policy: Option<&str>,
    ) -> Result<Repository, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            concat!(
                "UPDATE repositories SET policy = $2 WHERE name = $1 RETURNING ",
                repository_columns!()
            ),
            &[&name, &policy],
            &format!("setting the policy of {name:?}"),
        )
        .await?;
        match found {
            Some(r) => Ok(repository(&r)?),
            None => Err(MetaError::RepositoryNotFound(name.to_string())),
        }
    }

    async fn repository_tags(&self, name: &str) -> Result<Vec<(String, String)>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            "SELECT key, value FROM repository_tags
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
             ORDER BY key",
            &[&name],
            &format!("reading the tags of {name:?}"),
        )
        .await?;
        Ok(found
            .iter()
            .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
            .collect::<R<_>>()?)
    }

    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<(), MetaError> {
        // One row per key, the last value given winning (as applying them in order).
        let mut keys: Vec<&str> = Vec::with_capacity(tags.len());
        let mut values: Vec<&str> = Vec::with_capacity(tags.len());
        for (k, v) in tags {
            match keys.iter().position(|x| *x == k.as_str()) {
                Some(i) => values[i] = v,
                None => {
                    keys.push(k);
                    values.push(v);
                }
            }
        }
        let what = format!("tagging {name:?}");
        transaction!(self, &what, |tx| async {
            // Serializes taggers of this repository, so the limit holds.
            let repo = require_repository(&tx, name, Lock::NoKeyUpdate).await?;
            exec(
                &tx,
                "INSERT INTO repository_tags (repository_id, key, value)
                 SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
                 ON CONFLICT (repository_id, key) DO UPDATE SET value = excluded.value",
                &[&repo, &keys, &values],
                &what,
            )
            .await?;
            let count = one(
                &tx,
                "SELECT count(*) FROM repository_tags WHERE repository_id = $1",
                &[&repo],
                &format!("counting the tags of {name:?}"),
            )
            .await?;
            let count: i64 = get(&count, 0)?;
            if count > MAX_RESOURCE_TAGS as i64 {
                return Err(Failure::from(MetaError::InvalidSetting(format!(
                    "repository {name:?} would carry {count} tags; at most {MAX_RESOURCE_TAGS} are allowed"
                ))));
            }
            Ok(())
        })
    }

    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<(), MetaError> {
        let what = format!("untagging {name:?}");
        transaction!(self, &what, |tx| async {
            let repo = require_repository(&tx, name, Lock::KeyShare).await?;
            exec(
                &tx,
                "DELETE FROM repository_tags WHERE repository_id = $1 AND key = ANY($2)",
                &[&repo, &keys],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            "SELECT policy FROM registries WHERE account_id = $1",
            &[&account_id],
            &format!("reading the registry policy of account {account_id}"),
        )
        .await?;
        Ok(match found {
            Some(r) => get(&r, 0)?,
            None => None,
        })
    }

    async fn set_registry_policy(
        &self,
        account_id: &str,
        policy: Option<&str>,
    ) -> Result<(), MetaError> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO registries (account_id, policy) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            &[&account_id, &policy],
            &format!("setting the registry policy of account {account_id}"),
        )
        .await?;
        Ok(())
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetaError> {
        let c = self.client().await?;
        // Two statements: the read takes a new snapshot, so it sees the row of
        // whichever replica's insert committed first (ours waited for it).
        exec(
            &c,
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &candidate, &now_millis()],
            &format!("storing server secret {name:?}"),
        )
        .await?;
        let stored = one(
            &c,
            "SELECT value FROM server_secrets WHERE name = $1",
            &[&name],
            &format!("reading server secret {name:?}"),
        )
        .await?;
        Ok(get(&stored, 0)?)
    }

    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            IMAGES_AFTER,
            &[&repository, &after.unwrap_or(""), &limit_param(limit)],
            &format!("listing the images of {repository:?}"),
        )
        .await?;
        Ok(found.iter().map(image_record).collect::<R<_>>()?)
    }

    async fn get_image(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ImageRecord>, MetaError> {
        let c = self.client().await?;
        let found = match reference {
            Reference::Tag(tag) => {
                row(
                    &c,
                    IMAGE_BY_TAG,
                    &[&repository, tag],
                    &format!("reading image {tag:?} of {repository:?}"),
                )
                .await?
            }
            Reference::Digest(d) => {
                row(
                    &c,
                    IMAGE_BY_DIGEST,
                    &[&repository, &d.to_string()],
                    &format!("reading image {d} of {repository:?}"),
                )
                .await?
            }
        };
        Ok(found.as_ref().map(image_record).transpose()?)
    }

    async fn manifest_parents(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Digest>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            "SELECT parent_digest FROM manifest_children
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
               AND child_digest = $2
             ORDER BY parent_digest",
            &[&repository, &digest.to_string()],
            &format!("reading the indexes that list {digest}"),
        )
        .await?;
        Ok(found
            .iter()
            .map(|r| parse_digest(get(r, 0)?))
            .collect::<R<_>>()?)
    }

    async fn record_pulls(
        &self,
        repository: &str,
        pulls: &[(Digest, Millis)],
    ) -> Result<(), MetaError> {
        // The latest time per digest, in digest order (the order rows are locked in).
        let mut latest: std::collections::BTreeMap<String, Millis> = Default::default();
        for (d, t) in pulls {
            let e = latest.entry(d.to_string()).or_insert(*t);
            *e = (*e).max(*t);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let digests: Vec<&str> = latest.keys().map(String::as_str).collect();
        let times: Vec<Millis> = latest.values().copied().collect();
        let what = format!("recording pulls of {repository:?}");
        transaction!(self, &what, |tx| async {
            let Some(repo) = locked_repository(&tx, repository, Lock::KeyShare).await? else {
                return Ok(());
            };
            rows(
                &tx,
                "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2)
                 ORDER BY digest FOR NO KEY UPDATE",
                &[&repo, &digests],
                &what,
            )
            .await?;
            exec(
                &tx,
                "UPDATE manifests m SET last_pulled_at = p.t
                 FROM unnest($2::text[], $3::bigint[]) AS p(d, t)
                 WHERE m.repository_id = $1 AND m.digest = p.d
                   AND (m.last_pulled_at IS NULL OR m.last_pulled_at < p.t)",
                &[&repo, &digests, &times],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let digest = digest.to_string();
        let size = to_i64(size, "blob size")?;
        let what = format!("linking blob {digest} to repository {repository:?}");
        transaction!(self, &what, |tx| async {
            let repo = require_repository(&tx, repository, Lock::KeyShare).await?;
            let now = now_millis();
            exec(
                &tx,
                "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (digest) DO NOTHING",
                &[&digest, &size, &now],
                &what,
            )
            .await?;
            exec(
                &tx,
                "INSERT INTO repository_blobs (repository_id, digest, linked_at)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&repo, &digest, &now],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn mount_blob(
        &self,
        from: &str,
        to: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let digest = digest.to_string();
        let what = format!("mounting blob {digest} from {from:?} into {to:?}");
        transaction!(self, &what, |tx| async {
            let target = require_repository(&tx, to, Lock::KeyShare).await?;
            let Some(size) = row(&tx, REPOSITORY_BLOB, &[&from, &digest], &what).await? else {
                return Ok(None);
            };
            let size: i64 = get(&size, 0)?;
            exec(
                &tx,
                "INSERT INTO repository_blobs (repository_id, digest, linked_at)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&target, &digest, &now_millis()],
                &what,
            )
            .await?;
            Ok(Some(to_u64(size, "blob size")?))
        })
    }

    async fn repository_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            REPOSITORY_BLOB,
            &[&repository, &digest.to_string()],
            &format!("looking up blob {digest} in {repository:?}"),
        )
        .await?;
        Ok(match found {
            Some(r) => Some(to_u64(get(&r, 0)?, "blob size")?),
            None => None,
        })
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            "SELECT size FROM blobs WHERE digest = $1",
            &[&digest.to_string()],
            &format!("looking up blob {digest}"),
        )
        .await?;
        Ok(match found {
            Some(r) => Some(to_u64(get(&r, 0)?, "blob size")?),
            None => None,
        })
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError> {
        let c = self.client().await?;
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = rows(
            &c,
            "SELECT digest FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
            &[&after, &limit],
            "listing blobs",
        )
        .await?;
        found
            .iter()
            .map(|r| Ok(parse_digest(&get::<String>(r, 0)?)?))
            .collect()
    }

    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM repository_blobs
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
               AND digest = $2",
            &[&repository, &digest.to_string()],
            &format!("unlinking blob {digest} from {repository:?}"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn create_upload(&self, upload: &Upload) -> Result<(), MetaError> {
        let what = format!("recording upload {}", upload.id);
        transaction!(self, &what, |tx| async {
            let repo = require_repository(&tx, &upload.repository, Lock::KeyShare).await?;
            exec(
                &tx,
                "INSERT INTO uploads (id, repository_id, started_at, updated_at)
                 VALUES ($1, $2, $3, $4)",
                &[&upload.id, &repo, &upload.started_at, &upload.updated_at],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            "SELECT u.id, r.name, u.started_at, u.updated_at
             FROM uploads u JOIN repositories r ON r.id = u.repository_id
             WHERE u.id = $1",
            &[&id],
            &format!("looking up upload {id}"),
        )
        .await?;
        Ok(found.as_ref().map(upload).transpose()?)
    }

    async fn touch_upload(&self, id: &str, at: Millis) -> Result<(), MetaError> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE uploads SET updated_at = $2 WHERE id = $1",
            &[&id, &at],
            &format!("touching upload {id}"),
        )
        .await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM uploads WHERE id = $1",
            &[&id],
            &format!("deleting upload {id}"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<Upload>, MetaError> {
        let c = self.client().await?;
        let found = rows(&c, STALE_UPLOADS, &[&before], "listing stale uploads").await?;
        Ok(found.iter().map(upload).collect::<R<_>>()?)
    }

    async fn create_access_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        let what = format!("creating access key {}", key.access_key_id);
        transaction!(self, &what, |tx| async {
            // A key of an existing user counts towards its quota: hold the user's row,
            // as IAM's key creation does, so the two cannot together pass the quota.
            row(
                &tx,
                "SELECT 1 FROM iam_users WHERE account_id = $1 AND lower(user_name) = $2
                 FOR UPDATE",
                &[&key.account_id, &key.user_name.to_ascii_lowercase()],
                &format!(
                    "looking up user {} of account {}",
                    key.user_name, key.account_id
                ),
            )
            .await?;
            claim_access_key_id(&tx, &key.access_key_id).await?;
            insert_access_key(&tx, key).await
        })
    }

    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            &format!("{ACCESS_KEY_COLUMNS} WHERE access_key_id = $1"),
            &[&access_key_id],
            &format!("reading access key {access_key_id}"),
        )
        .await?;
        Ok(found.as_ref().map(access_key).transpose()?)
    }

    async fn list_access_keys(&self, account_id: &str) -> Result<Vec<AccessKey>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            &format!("{ACCESS_KEY_COLUMNS} WHERE account_id = $1 ORDER BY access_key_id"),
            &[&account_id],
            &format!("listing access keys of account {account_id}"),
        )
        .await?;
        Ok(found.iter().map(access_key).collect::<R<_>>()?)
    }

    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM access_keys WHERE access_key_id = $1",
            &[&access_key_id],
            &format!("deleting access key {access_key_id}"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &NewManifest,
        tag: Option<&str>,
    ) -> Result<PutOutcome, MetaError> {
        let what = format!("putting manifest {} into {repository:?}", manifest.digest);
        transaction!(self, &what, |tx| put_manifest_tx(
            &tx, repository, manifest, tag
        ))
    }

    async fn get_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let c = self.client().await?;
        let found = match reference {
            Reference::Tag(tag) => {
                row(
                    &c,
                    MANIFEST_BY_TAG,
                    &[&repository, tag],
                    &format!("reading manifest {tag:?} of {repository:?}"),
                )
                .await?
            }
            Reference::Digest(d) => {
                row(
                    &c,
                    MANIFEST_BY_DIGEST,
                    &[&repository, &d.to_string()],
                    &format!("reading manifest {d} of {repository:?}"),
                )
                .await?
            }
        };
        Ok(found.as_ref().map(manifest_record).transpose()?)
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError> {
        let digest = digest.to_string();
        let what = format!("deleting manifest {digest} of {repository:?}");
        transaction!(self, &what, |tx| async {
            let Some(repo) = locked_repository(&tx, repository, Lock::KeyShare).await? else {
                return Ok(false);
            };
            // The manifest first, then its tags: the order pushes lock them in.
            let locked = row(
                &tx,
                "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
                &[&repo, &digest],
                &what,
            )
            .await?;
            if locked.is_none() {
                return Ok(false);
            }
            // The foreign keys would cascade these too; explicit deletes keep the
            // protocol visible.
            for sql in [
                "DELETE FROM tags WHERE repository_id = $1 AND manifest_digest = $2",
                "DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2",
                "DELETE FROM manifest_children WHERE repository_id = $1 AND parent_digest = $2",
                "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
            ] {
                exec(&tx, sql, &[&repo, &digest], &what).await?;
            }
            Ok(true)
        })
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, MetaError> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "DELETE FROM tags
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
               AND name = $2",
            &[&repository, &tag],
            &format!("deleting tag {tag:?} of {repository:?}"),
        )
        .await?;
        Ok(n > 0)
    }

    async fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetaError> {
        let c = self.client().await?;
        let limit = limit_param(limit);
        let what = format!("listing tags of {repository:?}");
        let found = match after {
            Some(after) => rows(&c, TAGS_AFTER, &[&repository, &after, &limit], &what).await?,
            None => rows(&c, TAGS_FIRST, &[&repository, &limit], &what).await?,
        };
        Ok(found.iter().map(|r| get(r, 0)).collect::<R<_>>()?)
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            REFERRERS,
            &[&repository, &subject.to_string(), &artifact_type],
            &format!("listing referrers of {subject} in {repository:?}"),
        )
        .await?;
        Ok(found
            .iter()
            .map(|r| {
                Ok(Referrer {
                    digest: parse_digest(get(r, 0)?)?,
                    media_type: get(r, 1)?,
                    size: to_u64(get(r, 2)?, "manifest size")?,
                    artifact_type: get(r, 3)?,
                    annotations: get(r, 4)?,
                })
            })
            .collect::<R<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `sql` with `params`, one line per node.
    async fn plan<C: GenericClient>(
        c: &C,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> String {
        let lines = c
            .query(&format!("EXPLAIN {sql}"), params)
            .await
            .unwrap_or_else(|e| panic!("explaining {sql}: {e:?}"));
        lines
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every read path can be served by an index, in the order it asks for: with
    /// sequential scans and sorts priced out, no plan scans a table or sorts (a
    /// missing index, or a `COLLATE "C"` the query and the index disagree on, would).
    #[tokio::test]
    async fn read_queries_use_indexes() {
        let url = wharf_testenv::postgres::database().await;
        let store = PgStore::connect(&url).await.unwrap();
        let c = store.client().await.unwrap();
        c.batch_execute("SET enable_seqscan = off; SET enable_sort = off")
            .await
            .unwrap();
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let none: Option<&str> = None;
        let queries: Vec<(&str, &str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>)> = vec![
            ("manifest by tag", MANIFEST_BY_TAG, vec![&"r", &"t"]),
            ("manifest by digest", MANIFEST_BY_DIGEST, vec![&"r", &d]),
            ("referrers", REFERRERS, vec![&"r", &d, &none]),
            ("first tags", TAGS_FIRST, vec![&"r", &10i64]),
            ("tags after", TAGS_AFTER, vec![&"r", &"a", &10i64]),
            ("first repositories", REPOSITORIES_FIRST, vec![&10i64]),
            ("repositories after", REPOSITORIES_AFTER, vec![&"a", &10i64]),
            ("repository blob", REPOSITORY_BLOB, vec![&"r", &d]),
            ("stale uploads", STALE_UPLOADS, vec![&5i64]),
            ("images", IMAGES_AFTER, vec![&"r", &"", &10i64]),
            ("image by tag", IMAGE_BY_TAG, vec![&"r", &"t"]),
            (
                "users by name",
                "SELECT user_name FROM iam_users WHERE account_id = $1 ORDER BY lower(user_name)",
                vec![&"1"],
            ),
            (
                "user by name",
                "SELECT user_name FROM iam_users WHERE account_id = $1 AND lower(user_name) = $2",
                vec![&"1", &"alice"],
            ),
        ];
        for (name, sql, params) in queries {
            let plan = plan(&c, sql, &params).await;
            assert!(!plan.contains("Seq Scan"), "{name} scans a table:\n{plan}");
            assert!(
                !plan
                    .lines()
                    .any(|l| l.trim_start_matches([' ', '-', '>']).starts_with("Sort")),
                "{name} sorts:\n{plan}"
            );
        }
    }
}
