//! Registry metadata: repositories, blob links, manifests and their references, tags,
//! upload sessions. The database is the source of truth (DESIGN.md §1); every edge is
//! a row (§2).
//!
//! [`MetadataStore`] is the seam between the registry and the database engine. Every
//! backend must pass [`testsuite::run_all`].

use async_trait::async_trait;
use bytes::Bytes;
use wharf_oci::Digest;

pub mod sqlite;
pub mod testsuite;

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
}

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Its name, e.g. `team/app`.
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
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

    /// Stores a manifest (if new) and points `tag` at it, checking in the same
    /// transaction that every blob and child it references is in the repository.
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
