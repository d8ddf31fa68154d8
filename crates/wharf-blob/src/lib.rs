//! Blob storage: content-addressed, immutable bytes.
//!
//! [`BlobStore`] is the seam between the registry and where bytes live. Uploads are
//! staged under an id, streamed in constant memory, and become a blob only when
//! [`BlobStore::commit_upload`] has verified the digest (DESIGN.md §3). Every backend
//! must pass [`testsuite::run_all`].

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use wharf_oci::Digest;

pub mod fs;
pub mod testsuite;

pub use fs::FsBlobStore;

/// A stream of bytes, in or out of a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Errors of a blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No upload with this id is staged.
    #[error("upload {0} is not known to the blob store")]
    UploadUnknown(String),
    /// An append did not start where the staged upload ends.
    #[error("upload {id}: chunk starts at offset {offset} but {size} bytes are staged")]
    OffsetMismatch {
        /// Upload id.
        id: String,
        /// Where the chunk claimed to start.
        offset: u64,
        /// Bytes staged so far.
        size: u64,
    },
    /// The staged content does not hash to the expected digest.
    #[error("content hashes to {computed}, not to {expected}")]
    DigestMismatch {
        /// Expected digest.
        expected: Digest,
        /// Digest of what was staged.
        computed: Digest,
    },
    /// No blob with this digest.
    #[error("blob {0} is not in the blob store")]
    BlobUnknown(Digest),
    /// Requested range lies outside the blob.
    #[error("range {start}-{end} is outside the blob of {size} bytes")]
    RangeNotSatisfiable {
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Blob size.
        size: u64,
    },
    /// The request body stream failed (client went away, limit hit, ...).
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    /// Storage I/O failure.
    #[error("blob storage I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Where blob bytes live. Implementations must be safe for concurrent use and for use
/// by several processes sharing the same storage.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates an empty staging area for upload `id` (an opaque, URL-safe string).
    async fn start_upload(&self, id: &str) -> Result<(), BlobError>;

    /// [`BlobStore::start_upload`] for a blob of a repository whose blobs are encrypted
    /// under master key `key` (ECR's `KMS` encryption with a `kmsKey`): an encrypting
    /// store wraps the upload's data key under that key instead of its default one, and
    /// fails if it does not hold the key. `None` is the default key. Stores that do not
    /// encrypt ignore the key.
    async fn start_upload_for_key(&self, id: &str, key: Option<&str>) -> Result<(), BlobError> {
        let _ = key;
        self.start_upload(id).await
    }

    /// Lets master key `key` (`None`: the default key) open blob `digest` too, because
    /// a repository encrypted under that key now links it (a mount, or a push of
    /// content already stored). Returns whether the blob's envelope changed; `false`
    /// for stores that do not encrypt and for blobs stored unencrypted.
    async fn grant_key(&self, digest: &Digest, key: Option<&str>) -> Result<bool, BlobError> {
        let _ = (digest, key);
        Ok(false)
    }

    /// After a master key rotation: re-wraps blob `digest`'s data key under the current
    /// version of every key that wraps it, so that older versions can be retired.
    /// Returns whether the envelope changed. The blob's bytes are not rewritten.
    async fn rotate_keys(&self, digest: &Digest) -> Result<bool, BlobError> {
        let _ = digest;
        Ok(false)
    }

    /// Streams `data` onto the end of upload `id`, which must currently hold exactly
    /// `offset` bytes. Returns the staged size afterwards. If the body stream fails,
    /// the bytes received before the failure stay staged (the client can ask for the
    /// size and resume), and the error is returned.
    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<u64, BlobError>;

    /// Number of bytes staged for upload `id`.
    async fn upload_size(&self, id: &str) -> Result<u64, BlobError>;

    /// Verifies that the staged bytes hash to `digest` and makes them blob `digest`
    /// (durably: after this returns, a crash does not lose the blob). The staging area
    /// is gone afterwards whether or not the digest matched. Returns the blob's size.
    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<u64, BlobError>;

    /// Discards upload `id`. Unknown ids are not an error.
    async fn abort_upload(&self, id: &str) -> Result<(), BlobError>;

    /// Size of blob `digest`, or `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;

    /// Streams blob `digest`, or the byte `range` of it (end exclusive).
    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BlobError>;

    /// Removes blob `digest`. Only the garbage collector calls this (DESIGN.md §4).
    /// Absent blobs are not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), BlobError>;

    /// Ids of staged uploads, for cleaning up staging areas no session refers to.
    async fn list_uploads(&self) -> Result<Vec<String>, BlobError>;

    /// A URL a client may fetch blob `digest` from directly, valid for about
    /// `expires_in`, when the backend and its configuration allow it (`None` otherwise,
    /// and by default). The URL is made without checking that the blob is present.
    async fn download_url(
        &self,
        digest: &Digest,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        let _ = (digest, expires_in);
        Ok(None)
    }
}
