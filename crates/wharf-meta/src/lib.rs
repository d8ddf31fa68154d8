//! Registry metadata: repositories, blob links, manifests and their references, tags,
//! upload sessions. The database is the source of truth (DESIGN.md §1); every edge is
//! a row (§2).
//!
//! [`MetadataStore`] is the seam between the registry and the database engine. Every
//! backend must pass [`testsuite::run_all`].

use async_trait::async_trait;
use bytes::Bytes;
use wharf_oci::Digest;

pub mod iam;
pub mod jobs;
pub mod namespace;
pub mod sqlite;
mod sqlite_iam;
mod sqlite_jobs;
pub mod testsuite;
pub mod testsuite_iam;
pub mod testsuite_jobs;

pub use iam::{
    CustomerPolicy, IamErrorKind, IamStore, IdentityPolicy, InlinePolicy, PrincipalRef, Role,
    Session, User,
};
pub use jobs::{Job, JobStore};
pub use namespace::{qualified_name, Namespaced};
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Errors of a metadata store. Messages name the thing concerned.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The repository does not exist.
    #[error("repository {0:?} does not exist")]
    RepositoryNotFound(String),
    /// A repository with this name exists already.
    #[error("repository {0:?} already exists")]
    RepositoryExists(String),
    /// The repository still holds images and `force` was not given.
    #[error("repository {name:?} still contains {manifests} image manifest(s); delete them first or force the deletion")]
    RepositoryNotEmpty {
        /// Repository name.
        name: String,
        /// Manifests it holds.
        manifests: u64,
    },
    /// The tag exists, points elsewhere, and the repository's tags are immutable.
    #[error("the image tag {tag:?} already exists in the {repository:?} repository and cannot be overwritten because {why}; it points to {current}, so push under a new tag")]
    TagImmutable {
        /// Repository name.
        repository: String,
        /// The tag.
        tag: String,
        /// What the tag points to now.
        current: Digest,
        /// Which setting makes it immutable.
        why: String,
    },
    /// An access key with this id exists already.
    #[error("access key {0} already exists")]
    AccessKeyExists(String),
    /// The repository settings given are not valid.
    #[error("{0}")]
    InvalidSetting(String),
    /// A manifest references a blob the repository does not hold.
    #[error("blob {digest} referenced by the manifest is not in repository {repository:?}; push the blob first")]
    MissingBlob {
        /// Repository name.
        repository: String,
        /// The missing blob.
        digest: Digest,
    },
    /// An index references a manifest the repository does not hold.
    #[error("manifest {digest} referenced by the index is not in repository {repository:?}; push it first")]
    MissingManifest {
        /// Repository name.
        repository: String,
        /// The missing manifest.
        digest: Digest,
    },
    /// The database failed.
    #[error("metadata database error: {0}")]
    Backend(String),
    /// An IAM rule: no such user/role/policy, name taken, still in use, quota.
    #[error("{message}")]
    Iam {
        /// Which rule.
        kind: iam::IamErrorKind,
        /// What happened, naming the entity and account.
        message: String,
    },
}

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Its name, e.g. `team/app`.
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
    /// Whether its tags may be moved.
    pub tag_policy: TagPolicy,
    /// ECR's `imageScanningConfiguration.scanOnPush`.
    pub scan_on_push: bool,
    /// ECR's `encryptionConfiguration`: `AES256` (default), `KMS` or `KMS_DSSE`.
    pub encryption_type: String,
    /// KMS key of the encryption configuration, if any.
    pub kms_key: Option<String>,
    /// The repository policy (IAM JSON policy text), if one is set.
    pub policy: Option<String>,
}

impl Repository {
    /// The master key its blobs are encrypted under: the `kmsKey` of a `KMS` (or
    /// `KMS_DSSE`) configuration; `None` means the registry's default key.
    pub fn encryption_key(&self) -> Option<&str> {
        match self.encryption_type.as_str() {
            "KMS" | "KMS_DSSE" => self.kms_key.as_deref(),
            _ => None,
        }
    }
}

/// Settings fixed when a repository is created (ECR's CreateRepository inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    /// Tag mutability.
    pub tag_policy: TagPolicy,
    /// Scan images on push.
    pub scan_on_push: bool,
    /// `AES256`, `KMS` or `KMS_DSSE`.
    pub encryption_type: String,
    /// KMS key id/ARN for the KMS types.
    pub kms_key: Option<String>,
}

impl Default for RepositorySettings {
    fn default() -> Self {
        RepositorySettings {
            tag_policy: TagPolicy::default(),
            scan_on_push: false,
            encryption_type: "AES256".to_string(),
            kms_key: None,
        }
    }
}

/// ECR's `imageTagMutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagMutability {
    /// Tags may move (the default).
    #[default]
    Mutable,
    /// No tag may move.
    Immutable,
    /// No tag may move, except tags matching an exclusion filter.
    ImmutableWithExclusion,
    /// Tags may move, except tags matching an exclusion filter.
    MutableWithExclusion,
}

impl TagMutability {
    /// ECR's name for the setting.
    pub fn as_str(self) -> &'static str {
        match self {
            TagMutability::Mutable => "MUTABLE",
            TagMutability::Immutable => "IMMUTABLE",
            TagMutability::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
            TagMutability::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
        }
    }

    /// Parses ECR's name.
    pub fn parse(s: &str) -> Option<TagMutability> {
        Some(match s {
            "MUTABLE" => TagMutability::Mutable,
            "IMMUTABLE" => TagMutability::Immutable,
            "IMMUTABLE_WITH_EXCLUSION" => TagMutability::ImmutableWithExclusion,
            "MUTABLE_WITH_EXCLUSION" => TagMutability::MutableWithExclusion,
            _ => return None,
        })
    }
}

/// Tag mutability with its exclusion filters (wildcards where `*` matches any run of
/// characters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagPolicy {
    /// The setting.
    pub mutability: TagMutability,
    /// Exclusion filters; used only by the `*_WITH_EXCLUSION` settings.
    pub exclusion_filters: Vec<String>,
}

impl TagPolicy {
    /// Checks the filters as ECR does: 1–5 filters of `[0-9a-zA-Z._*-]{1,128}` with the
    /// `*_WITH_EXCLUSION` settings, none otherwise.
    pub fn validate(&self) -> Result<(), String> {
        let with_exclusion = matches!(
            self.mutability,
            TagMutability::ImmutableWithExclusion | TagMutability::MutableWithExclusion
        );
        if with_exclusion && self.exclusion_filters.is_empty() {
            return Err(format!(
                "imageTagMutabilityExclusionFilters are required when imageTagMutability is {}",
                self.mutability.as_str()
            ));
        }
        if !with_exclusion && !self.exclusion_filters.is_empty() {
            return Err(format!(
                "imageTagMutabilityExclusionFilters are only allowed with IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, not {}",
                self.mutability.as_str()
            ));
        }
        if self.exclusion_filters.len() > 5 {
            return Err(format!(
                "at most 5 imageTagMutabilityExclusionFilters are allowed ({} given)",
                self.exclusion_filters.len()
            ));
        }
        for f in &self.exclusion_filters {
            let ok = !f.is_empty()
                && f.len() <= 128
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
            if !ok {
                return Err(format!(
                    "exclusion filter {f:?} must be 1-128 characters of letters, digits, '.', '_', '-' and '*'"
                ));
            }
        }
        Ok(())
    }

    /// The exclusion filter `tag` matches, if any.
    pub fn matching_filter(&self, tag: &str) -> Option<&str> {
        self.exclusion_filters
            .iter()
            .find(|f| wildcard_match(f.as_bytes(), tag.as_bytes()))
            .map(String::as_str)
    }

    /// True when an existing `tag` may not be moved to another manifest.
    pub fn is_immutable(&self, tag: &str) -> bool {
        match self.mutability {
            TagMutability::Mutable => false,
            TagMutability::Immutable => true,
            TagMutability::ImmutableWithExclusion => self.matching_filter(tag).is_none(),
            TagMutability::MutableWithExclusion => self.matching_filter(tag).is_some(),
        }
    }
}

/// `*` matches any run of bytes; everything else matches itself.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// An access key: the credentials that sign API requests for an IAM user.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// Public id (`AKIA...`).
    pub access_key_id: String,
    /// The secret; SigV4 verification needs it. Never logged ([`std::fmt::Debug`]
    /// redacts it).
    pub secret_access_key: String,
    /// 12-digit account the user belongs to.
    pub account_id: String,
    /// IAM user name.
    pub user_name: String,
    /// Inactive keys are refused.
    pub active: bool,
    /// When it was created.
    pub created_at: Millis,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("user_name", &self.user_name)
            .field("active", &self.active)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Opaque id (also the blob store's staging id).
    pub id: String,
    /// Repository the upload belongs to.
    pub repository: String,
    /// When it was started.
    pub started_at: Millis,
    /// Last time a chunk arrived.
    pub updated_at: Millis,
}

/// How a manifest is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(String),
    /// By digest.
    Digest(Digest),
}

/// A manifest to store, with the edges it makes.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Digest of `body`.
    pub digest: Digest,
    /// Media type it is served with.
    pub media_type: String,
    /// The exact bytes pushed.
    pub body: Bytes,
    /// Artifact type as the referrers API reports it.
    pub artifact_type: Option<String>,
    /// Top-level annotations as a JSON object string.
    pub annotations: Option<String>,
    /// The manifest's `subject`, if any (need not exist).
    pub subject: Option<Digest>,
    /// Blobs (config, layers) that must be linked to the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index) that must exist in the repository.
    pub children: Vec<Digest>,
}

impl NewManifest {
    /// The manifest `body` (hashing to `digest`) as parsed by [`wharf_oci::manifest::parse`],
    /// with the edges it makes.
    pub fn from_parsed(
        digest: Digest,
        body: Bytes,
        parsed: &wharf_oci::manifest::ParsedManifest,
    ) -> NewManifest {
        NewManifest {
            digest,
            media_type: parsed.media_type.clone(),
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed
                .annotations
                .as_ref()
                .map(|a| serde_json::Value::Object(a.clone()).to_string()),
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            blobs: parsed.required_blobs().map(|d| d.digest.clone()).collect(),
            children: parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
            body,
        }
    }
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Its digest.
    pub digest: Digest,
    /// Media type it is served with.
    pub media_type: String,
    /// The exact bytes pushed.
    pub body: Bytes,
    /// Artifact type (see [`NewManifest::artifact_type`]).
    pub artifact_type: Option<String>,
    /// Annotations JSON object string.
    pub annotations: Option<String>,
    /// Subject digest, if any.
    pub subject: Option<Digest>,
    /// When it was first pushed to this repository.
    pub pushed_at: Millis,
}

/// What a manifest put changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The manifest was new to the repository.
    pub created: bool,
    /// The tag pointed elsewhere before (its old target).
    pub previous_tag_target: Option<Digest>,
}

/// Most resource tags a repository may carry (ECR's limit).
pub const MAX_RESOURCE_TAGS: usize = 50;

/// An image as ECR's DescribeImages reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Manifest digest.
    pub digest: Digest,
    /// Manifest media type.
    pub media_type: String,
    /// Artifact type, if any.
    pub artifact_type: Option<String>,
    /// Size in bytes: the blobs (config and layers) the manifest references; for an
    /// index, the largest of its children.
    pub size: u64,
    /// Tags pointing at it, sorted.
    pub tags: Vec<String>,
    /// When it was pushed.
    pub pushed_at: Millis,
    /// When it was last pulled, if recorded.
    pub last_pulled_at: Option<Millis>,
    /// Its subject, if any.
    pub subject: Option<Digest>,
}

/// A manifest that names another as its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// Digest of the referring manifest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its annotations JSON object string.
    pub annotations: Option<String>,
}

/// The registry's metadata database. All methods are transactional: on error nothing
/// changed. Lists are sorted by name/tag (byte order) and paginated with an exclusive
/// `after` cursor.
///
/// Conventions every backend follows (the test suite pins them): calls that create
/// something in a missing repository fail with [`MetaError::RepositoryNotFound`];
/// reads, lists and deletes there answer `None`, empty or `false`. Unlinking a blob
/// or deleting a manifest that is still referenced is allowed; the edge rows stay for
/// the garbage collector to read. Blob records outlive every link.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Creates a repository.
    async fn create_repository(&self, name: &str) -> Result<Repository, MetaError>;
    /// Returns the repository, creating it if missing (create-on-push).
    async fn ensure_repository(&self, name: &str) -> Result<Repository, MetaError>;
    /// Creates a repository with the given settings.
    async fn create_repository_with(
        &self,
        name: &str,
        settings: &RepositorySettings,
    ) -> Result<Repository, MetaError>;
    /// Sets whether images are scanned on push.
    async fn set_scan_on_push(
        &self,
        name: &str,
        scan_on_push: bool,
    ) -> Result<Repository, MetaError>;
    /// Sets a repository's tag mutability (validated with [`TagPolicy::validate`]).
    async fn set_tag_policy(&self, name: &str, policy: &TagPolicy)
        -> Result<Repository, MetaError>;
    /// Looks a repository up.
    async fn get_repository(&self, name: &str) -> Result<Option<Repository>, MetaError>;
    /// Up to `limit` repositories with names after `after`.
    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>, MetaError>;
    /// Deletes a repository; with `force` also its manifests, tags and links,
    /// otherwise fails with [`MetaError::RepositoryNotEmpty`] if it holds manifests.
    async fn delete_repository(&self, name: &str, force: bool) -> Result<(), MetaError>;
    /// Sets (`Some`) or removes (`None`) repository `name`'s policy (IAM JSON text,
    /// validated by the caller).
    async fn set_repository_policy(
        &self,
        name: &str,
        policy: Option<&str>,
    ) -> Result<Repository, MetaError>;
    /// Resource tags of repository `name`, sorted by key (empty if it does not exist).
    async fn repository_tags(&self, name: &str) -> Result<Vec<(String, String)>, MetaError>;
    /// Adds or overwrites resource tags of repository `name`; more than
    /// [`MAX_RESOURCE_TAGS`] in all fails with [`MetaError::InvalidSetting`].
    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<(), MetaError>;
    /// Removes the resource tags with these keys from repository `name`.
    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<(), MetaError>;
    /// The registry policy of an account, if set.
    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>, MetaError>;
    /// Sets (`Some`) or removes (`None`) an account's registry policy.
    async fn set_registry_policy(
        &self,
        account_id: &str,
        policy: Option<&str>,
    ) -> Result<(), MetaError>;
    /// The server-wide secret named `name`: stored as `candidate` by the first caller,
    /// and the stored value returned to every caller after (so replicas agree).
    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetaError>;
    /// Up to `limit` images (manifests) of `repository` with digests after `after`,
    /// sorted by digest.
    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>, MetaError>;
    /// One image of `repository`, by tag or digest.
    async fn get_image(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ImageRecord>, MetaError>;
    /// Digests of the indexes in `repository` that list `digest` as a child.
    async fn manifest_parents(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Digest>, MetaError>;
    /// Records when images were last pulled (later times win; missing images are
    /// skipped).
    async fn record_pulls(
        &self,
        repository: &str,
        pulls: &[(Digest, Millis)],
    ) -> Result<(), MetaError>;

    /// Records that verified blob `digest` of `size` bytes exists and links it to
    /// `repository` (after an upload).
    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError>;
    /// Links a blob `from` one repository into `to` (cross-repository mount). Returns
    /// the size if `from` holds the blob, `None` (and changes nothing) otherwise.
    async fn mount_blob(
        &self,
        from: &str,
        to: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError>;
    /// Size of `digest` if `repository` may read it (it is linked), else `None`.
    async fn repository_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError>;
    /// Size of `digest` if the registry holds it in any repository, else `None`.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError>;
    /// Every blob the registry records, in digest order (byte order of the digest
    /// string), after `after` when given, at most `limit`: for maintenance that visits
    /// every blob (re-wrapping encryption keys, garbage collection).
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError>;
    /// Removes `repository`'s link to `digest`. Returns whether a link existed.
    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError>;

    /// Records a new upload session.
    async fn create_upload(&self, upload: &Upload) -> Result<(), MetaError>;
    /// Looks an upload session up.
    async fn get_upload(&self, id: &str) -> Result<Option<Upload>, MetaError>;
    /// Marks activity on an upload session.
    async fn touch_upload(&self, id: &str, at: Millis) -> Result<(), MetaError>;
    /// Forgets an upload session. Returns whether it existed.
    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError>;
    /// Upload sessions with no activity since `before`.
    async fn stale_uploads(&self, before: Millis) -> Result<Vec<Upload>, MetaError>;

    /// Stores a new access key.
    async fn create_access_key(&self, key: &AccessKey) -> Result<(), MetaError>;
    /// Looks an access key up by id.
    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, MetaError>;
    /// The access keys of an account, sorted by id.
    async fn list_access_keys(&self, account_id: &str) -> Result<Vec<AccessKey>, MetaError>;
    /// Deletes an access key. Returns whether it existed.
    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, MetaError>;

    /// Stores a manifest (if new) and points `tag` at it, checking in the same
    /// transaction that every blob and child it references is in the repository and
    /// that the repository's tag policy lets the tag move ([`MetaError::TagImmutable`]).
    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &NewManifest,
        tag: Option<&str>,
    ) -> Result<PutOutcome, MetaError>;
    /// Fetches a manifest by tag or digest.
    async fn get_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, MetaError>;
    /// Deletes a manifest, the tags pointing at it and its edges. Returns whether it existed.
    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError>;
    /// Removes a tag (not the manifest). Returns whether it existed.
    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, MetaError>;
    /// Up to `limit` tags of `repository` after `after`, sorted.
    async fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetaError>;
    /// Manifests in `repository` whose subject is `subject`, optionally only those of
    /// `artifact_type`, sorted by digest.
    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_policies() {
        assert!(wildcard_match(b"latest*", b"latest-dev"));
        assert!(wildcard_match(b"*-dev", b"1.0-dev"));
        assert!(wildcard_match(b"a*b*c", b"a-x-b-y-c"));
        assert!(!wildcard_match(b"a*b*c", b"a-x-b-y"));
        assert!(wildcard_match(b"exact", b"exact"));
        assert!(!wildcard_match(b"exact", b"exactly"));
        let p = TagPolicy {
            mutability: TagMutability::ImmutableWithExclusion,
            exclusion_filters: vec!["latest".into(), "dev-*".into()],
        };
        assert!(p.validate().is_ok());
        assert!(!p.is_immutable("latest"));
        assert!(!p.is_immutable("dev-123"));
        assert!(p.is_immutable("1.0"));
        let p = TagPolicy {
            mutability: TagMutability::MutableWithExclusion,
            exclusion_filters: vec!["v*".into()],
        };
        assert!(p.is_immutable("v1") && !p.is_immutable("latest"));
        assert!(TagPolicy {
            mutability: TagMutability::Immutable,
            exclusion_filters: vec!["x".into()]
        }
        .validate()
        .is_err());
        assert!(TagPolicy {
            mutability: TagMutability::MutableWithExclusion,
            exclusion_filters: vec![]
        }
        .validate()
        .is_err());
        assert!(TagPolicy {
            mutability: TagMutability::MutableWithExclusion,
            exclusion_filters: vec!["a b".into()]
        }
        .validate()
        .is_err());
    }
}
