//! S3-compatible backend of [`BlobStore`]: blobs in a bucket, uploads staged in the
//! bucket itself so that any replica sharing the bucket can continue, commit or abort
//! an upload that another replica started.
//!
//! # Layout in the bucket
//!
//! Under the configured prefix (`<p>/` below, nothing when the prefix is empty):
//!
//! - `<p>/blobs/<alg>/<first 2 hex>/<hex>`: committed blobs. An object appears here only
//!   as a server-side copy of fully staged bytes whose digest was verified.
//! - `<p>/_uploads/<id>/state`: the upload's state (JSON, see below). The upload exists
//!   while this object does.
//! - `<p>/_uploads/<id>/data`: the key of the upload's S3 multipart upload, created once
//!   the first full part is sent, and the object it is completed into at commit.
//! - `<p>/_uploads/<id>/tail-<n>`: the bytes after the last full part (fewer than a
//!   part), rewritten under a new generation `n` by each append that changes them.
//!
//! # The state object
//!
//! `{"format":1,"seq":..,"writer":..,"size":..,"part_size":..,"multipart":"<id>",
//! "parts":["<etag>",..],"tail":{"generation":n,"size":..},"next_tail":..,
//! "hash":{"algorithm":"sha256","state":"<hex>","length":..,"pending":"<hex>"},
//! "staged":false,"lease":{"owner":..,"token":..,"op":"append"}}`: the multipart upload
//! id, the ETag of each full part (all `part_size` bytes), the tail, the SHA-256 state
//! of all staged bytes ([`wharf_oci::ResumableHasher`]), and the writer currently
//! working on the upload. `size` is always `parts × part_size + tail`.
//!
//! # Appends
//!
//! An append claims the upload (below), reads the tail back and streams the body on
//! top of it: bytes are hashed as they arrive and cut into parts of `part_size`; each
//! full part is sent with `UploadPart` while the next one is received (so an append
//! holds at most two parts in memory, whatever the upload's size). Before a part is
//! sent, the state is rewritten with the parts completed so far (and the hash state at
//! their end), so progress survives a crash. At the end, what is left (less than a
//! part) is written as the new tail and the final state releases the claim. If the
//! body fails, the same happens: every byte received stays staged, and the error is
//! returned.
//!
//! # Claims (leases) between replicas
//!
//! Every rewrite of the state object is a conditional write (`If-Match` on the ETag the
//! writer last saw; `If-None-Match: *` creates it), so two replicas never both believe
//! they extend the same state.
//! An append or a commit first writes a claim into the state; another replica that
//! finds a claim waits until it is released, or until the state object has stayed
//! unchanged for the configured lease time, after which the writer is taken to be dead
//! and the upload is taken over. The writer renews its claim at least every quarter of
//! the lease, and immediately before each part it sends; a part upload must be over
//! within half a lease of that renewal (or is abandoned), so it ends before anyone may
//! take over. (A process frozen in the middle of sending a part for longer than that is
//! beyond this; S3 then refuses the commit, as the part's ETag no longer matches the
//! one recorded.) Within one process, operations on an upload are also serialized by a
//! lock.
//!
//! # Commit
//!
//! The digest is checked against the hash state before anything becomes visible (for a
//! SHA-512 digest, which the SHA-256 state cannot answer, the staged object is read
//! back and hashed). The multipart upload is completed into `_uploads/<id>/data`, with
//! the tail as its last part (a small upload that never filled a part has only its tail
//! object and no multipart upload); its size is checked; it is copied server-side to
//! the blob's key, unless that blob is already present; then the upload's objects are
//! deleted, the state last.
//!
//! # Limits
//!
//! S3 allows 10,000 parts per upload, so a blob may have at most 9,999 full parts plus a
//! tail (about 78 GiB with 8 MiB parts); S3's `CopyObject` copies at most 5 GiB, which
//! bounds the size of a blob committed on AWS itself. Incomplete multipart uploads of a
//! writer that died before recording them are invisible and should be removed by a
//! bucket lifecycle rule (`AbortIncompleteMultipartUpload`).

mod config;
mod state;

pub use config::{
    S3Config, S3ConfigError, DEFAULT_LEASE, DEFAULT_PART_SIZE, DEFAULT_REGION, MAX_PART_SIZE,
    MIN_PART_SIZE,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use state::{Lease, Tail, UploadState, MAX_PARTS};
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wharf_blob::{BlobError, BlobStore, ByteStream};
use wharf_oci::{Algorithm, Digest, ResumableHasher};

/// Longest accepted upload id.
const MAX_ID_LEN: usize = 128;
/// Overall time limit of one request other than a blob download.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Time limit of establishing a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`BlobStore`] keeping blobs and staged uploads in an S3 bucket (see the crate
/// documentation for the layout and the protocol). Cloning is cheap; clones share the
/// connection pool and the in-process upload locks.
#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.root.as_ref())
            .finish()
    }
}

struct Inner {
    /// Requests with an overall time limit.
    s3: AmazonS3,
    /// Blob downloads, which may take as long as the client reading them.
    reader: AmazonS3,
    bucket: String,
    /// The key prefix (empty path: the bucket's root).
    root: Path,
    part_size: u64,
    redirect: bool,
    lease: Duration,
    /// Names this store instance in the claims it writes.
    instance: String,
    /// Per-upload locks serializing this process's operations on an upload.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl S3BlobStore {
    /// A store over the bucket `config` describes. Makes no request: a wrong bucket or
    /// wrong credentials show on first use.
    pub fn new(config: S3Config) -> Result<S3BlobStore, S3ConfigError> {
        config.validate()?;
        // The S3 client's TLS uses the process-wide rustls provider, which Wharf takes
        // from `ring`; installing it is a no-op when it is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = build_client(&config, Some(REQUEST_TIMEOUT))?;
        let reader = build_client(&config, None)?;
        let root = if config.prefix.is_empty() {
            Path::default()
        } else {
            Path::parse(&config.prefix).map_err(|e| S3ConfigError::Invalid {
                setting: "prefix",
                reason: e.to_string(),
            })?
        };
        Ok(S3BlobStore {
            inner: Arc::new(Inner {
                s3,
                reader,
                bucket: config.bucket,
                root,
                part_size: config.part_size,
                redirect: config.redirect_downloads,
                lease: config.lease,
                instance: uuid::Uuid::new_v4().simple().to_string(),
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A store configured by the URL form (see [`S3Config::from_url`]).
    pub fn from_url(url: &str) -> Result<S3BlobStore, S3ConfigError> {
        S3BlobStore::new(S3Config::from_url(url)?)
    }

    /// The key of blob `digest` inside the bucket.
    pub fn blob_key(&self, digest: &Digest) -> String {
        self.inner.blob_key(digest).to_string()
    }

    /// The key prefix of upload `id`'s objects inside the bucket (ends with `/`).
    pub fn upload_prefix(&self, id: &str) -> String {
        format!("{}/", self.inner.upload_dir(id))
    }
}

fn build_client(config: &S3Config, timeout: Option<Duration>) -> Result<AmazonS3, S3ConfigError> {
    let client_error = |reason: String| S3ConfigError::Client {
        bucket: config.bucket.clone(),
        reason,
    };
    let options = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_connect_timeout(CONNECT_TIMEOUT);
    let options = match timeout {
        Some(t) => options.with_timeout(t),
        None => options.with_timeout_disabled(),
    };
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(&config.secret_access_key)
        .with_virtual_hosted_style_request(config.virtual_hosted_style)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token);
    }
    if let Some(endpoint) = &config.endpoint {
        let endpoint = if config.virtual_hosted_style {
            // The client wants the bucket's own endpoint in virtual-hosted style.
            let mut url = url::Url::parse(endpoint).map_err(|e| client_error(e.to_string()))?;
            let host = url
                .host_str()
                .ok_or_else(|| client_error(format!("endpoint {endpoint} has no host")))?;
            let bucket_host = format!("{}.{host}", config.bucket);
            url.set_host(Some(&bucket_host))
                .map_err(|e| client_error(format!("{bucket_host}: {e}")))?;
            url.as_str().trim_end_matches('/').to_string()
        } else {
            endpoint.clone()
        };
        builder = builder.with_endpoint(endpoint);
    }
    builder.build().map_err(|e| client_error(e.to_string()))
}

/// True when `id` is a well-formed upload id: 1 to 128 of `[A-Za-z0-9_-]`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn unknown(id: &str) -> BlobError {
    BlobError::UploadUnknown(id.to_string())
}

fn join_error(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(io::Error::other(format!("S3 blob store task failed: {e}")))
}

/// Where the staged bytes of an upload are at commit.
enum Source {
    /// Nothing was staged.
    Empty,
    /// This object holds all of them.
    Object(Path),
}

/// A state object as read, with the version to make a conditional write against.
struct Loaded {
    state: UploadState,
    version: UpdateVersion,
}

/// This process's claim on an upload: the state as last written with the claim in it.
struct Claim {
    state: UploadState,
    version: UpdateVersion,
    token: String,
    /// When the claim was last written: it stands until at least a lease later.
    written_at: Instant,
}

/// The in-process lock of one upload; the map entry goes when nobody holds or waits
/// for it.
struct UploadLock {
    guard: Option<OwnedMutexGuard<()>>,
    inner: Arc<Inner>,
    id: String,
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            let mutex = OwnedMutexGuard::mutex(&guard).clone();
            drop(guard);
            let mut locks = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Clones are only made under the map's lock: the map's and ours are the
            // only ones left when nobody else holds or waits for this lock.
            if Arc::strong_count(&mutex) == 2
                && locks.get(&self.id).is_some_and(|m| Arc::ptr_eq(m, &mutex))
            {
                locks.remove(&self.id);
            }
        }
    }
}

impl Inner {
    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.root
            .clone()
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    fn uploads_dir(&self) -> Path {
        self.root.clone().join("_uploads")
    }

    fn upload_dir(&self, id: &str) -> Path {
        self.uploads_dir().join(id)
    }

    fn state_key(&self, id: &str) -> Path {
        self.upload_dir(id).join("state")
    }

    fn data_key(&self, id: &str) -> Path {
        self.upload_dir(id).join("data")
    }

    fn tail_key(&self, id: &str, generation: u64) -> Path {
        self.upload_dir(id)
            .join(format!("tail-{generation}").as_str())
    }

    /// Longest time one part upload may take, counted from the last write of the claim
    /// it is sent under (see the crate documentation).
    fn part_deadline(&self) -> Duration {
        self.lease / 2
    }

    /// An S3 failure of `op` on `key`, as a storage I/O error naming both.
    fn fail(&self, op: &str, key: &Path, e: object_store::Error) -> BlobError {
        let kind = match &e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        BlobError::Io(io::Error::new(
            kind,
            format!("S3 {op} of s3://{}/{key} failed: {e}", self.bucket),
        ))
    }

    async fn lock(self: &Arc<Self>, id: &str) -> UploadLock {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(id.to_string()).or_default().clone()
        };
        UploadLock {
            guard: Some(mutex.lock_owned().await),
            inner: self.clone(),
            id: id.to_string(),
        }
    }

    /// Reads the whole of a small object (state, tail).
    async fn get_bytes(&self, op: &str, key: &Path) -> Result<(Bytes, UpdateVersion), BlobError> {
        let result = self.s3.get(key).await.map_err(|e| self.fail(op, key, e))?;
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = result.bytes().await.map_err(|e| self.fail(op, key, e))?;
        Ok((bytes, version))
    }

    /// The state of upload `id`, or `None` when there is no such upload.
    async fn load(&self, id: &str) -> Result<Option<Loaded>, BlobError> {
        let key = self.state_key(id);
        let (bytes, version) = match self.get_bytes("GET of upload state", &key).await {
            Ok(r) => r,
            Err(BlobError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let corrupt = |why: String| {
            BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "upload state s3://{}/{key} is not valid: {why}",
                    self.bucket
                ),
            ))
        };
        let state: UploadState =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        state.check().map_err(corrupt)?;
        Ok(Some(Loaded { state, version }))
    }

    /// Writes `state` (made by the writer `state.writer`) over the version `previous`.
    /// Fails if anyone else wrote the state since, or if the upload is gone.
    async fn store(
        &self,
        id: &str,
        state: &UploadState,
        previous: &UpdateVersion,
    ) -> Result<UpdateVersion, BlobError> {
        let key = self.state_key(id);
        let body = serde_json::to_vec(state)
            .map_err(|e| BlobError::Io(io::Error::other(format!("upload state of {id}: {e}"))))?;
        let options = PutOptions {
            mode: PutMode::Update(previous.clone()),
            ..PutOptions::default()
        };
        match self.s3.put_opts(&key, body.into(), options).await {
            Ok(r) => Ok(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            }),
            Err(object_store::Error::Precondition { .. }) => {
                // Either someone else wrote it, or this very write landed and its
                // answer was lost (and the retry then failed): look.
                match self.load(id).await? {
                    Some(now) if now.state.seq == state.seq && now.state.writer == state.writer => {
                        Ok(now.version)
                    }
                    Some(now) => Err(BlobError::Io(io::Error::other(format!(
                        "upload {id}: another process took the upload over ({}) while this one was writing it",
                        now.state
                            .lease
                            .as_ref()
                            .map_or_else(|| "no claim now".to_string(), |l| format!("now claimed for {} by {}", l.op, l.owner))
                    )))),
                    None => Err(unknown(id)),
                }
            }
            Err(e) => Err(self.fail("conditional PUT of upload state", &key, e)),
        }
    }

    /// Claims upload `id` for `op`, waiting while another process holds a live claim.
    /// The caller holds the upload's in-process lock.
    async fn claim(&self, id: &str, op: &str) -> Result<Claim, BlobError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        // The version of the state a foreign claim was first seen in, and when.
        let mut watched: Option<(Option<String>, Instant)> = None;
        let mut pause = Duration::from_millis(20);
        // When our last claim write was sent (it may have landed without an answer).
        let mut sent_at = Instant::now();
        loop {
            let Some(Loaded { mut state, version }) = self.load(id).await? else {
                return Err(unknown(id));
            };
            if let Some(lease) = &state.lease {
                if lease.token == token {
                    // Our claim landed although its write reported a conflict.
                    return Ok(Claim {
                        state,
                        version,
                        token,
                        written_at: sent_at,
                    });
                }
                // A claim of this instance is left over from a release that failed:
                // nothing else in this process works on the upload while we hold its
                // lock. A claim of another instance stands until it goes stale.
                if lease.owner != self.instance {
                    let since = match &watched {
                        Some((etag, since)) if *etag == version.e_tag => *since,
                        _ => {
                            let now = Instant::now();
                            watched = Some((version.e_tag.clone(), now));
                            now
                        }
                    };
                    if since.elapsed() < self.lease {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                        continue;
                    }
                    tracing::warn!(
                        upload = id,
                        owner = %lease.owner,
                        op = %lease.op,
                        "taking over an upload whose writer has not renewed its claim for {:?}",
                        self.lease
                    );
                }
            }
            state.lease = Some(Lease {
                owner: self.instance.clone(),
                token: token.clone(),
                op: op.to_string(),
            });
            state.seq += 1;
            state.writer = token.clone();
            let key = self.state_key(id);
            let body = serde_json::to_vec(&state).map_err(|e| {
                BlobError::Io(io::Error::other(format!("upload state of {id}: {e}")))
            })?;
            let options = PutOptions {
                mode: PutMode::Update(version),
                ..PutOptions::default()
            };
            sent_at = Instant::now();
            match self.s3.put_opts(&key, body.into(), options).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.e_tag,
                        version: r.version,
                    };
                    return Ok(Claim {
                        state,
                        version,
                        token,
                        written_at: sent_at,
                    });
                }
                // Changed meanwhile (or gone): look again.
                Err(object_store::Error::Precondition { .. }) => continue,
                Err(e) => return Err(self.fail("conditional PUT of upload state", &key, e)),
            }
        }
    }

    /// Writes the claim's state (a renewal, progress, or with `lease` cleared, the
    /// release).
    async fn save(&self, id: &str, claim: &mut Claim) -> Result<(), BlobError> {
        claim.state.seq += 1;
        claim.state.writer = claim.token.clone();
        let sent_at = Instant::now();
        claim.version = self.store(id, &claim.state, &claim.version).await?;
        claim.written_at = sent_at;
        Ok(())
    }

    /// Releases the claim without other changes.
    async fn release(&self, id: &str, claim: &mut Claim) -> Result<(), BlobError> {
        claim.state.lease = None;
        self.save(id, claim).await
    }

    /// Sends one part, which must be over within half a lease of `claimed_at` (when
    /// the claim it is sent under was last written): by then no other process has
    /// taken the upload over.
    async fn put_part(
        self: Arc<Self>,
        id: String,
        multipart: String,
        index: usize,
        payload: PutPayload,
        claimed_at: Instant,
    ) -> Result<PartId, BlobError> {
        let key = self.data_key(&id);
        let op = format!("UploadPart {} (multipart upload {multipart})", index + 1);
        let deadline = claimed_at + self.part_deadline();
        let late = Instant::now() >= deadline;
        let sent = async {
            if late {
                // Not even started in time (a stalled process): sending now could
                // land after a takeover.
                return None;
            }
            tokio::time::timeout_at(deadline, self.s3.put_part(&key, &multipart, index, payload))
                .await
                .ok()
        };
        match sent.await {
            Some(Ok(part)) => Ok(part),
            Some(Err(e)) => Err(self.fail(&op, &key, e)),
            None => Err(BlobError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "S3 {op} of s3://{}/{key} did not finish within {:?}",
                    self.bucket,
                    self.part_deadline()
                ),
            ))),
        }
    }

    /// Reads tail `tail` of upload `id`.
    async fn read_tail(&self, id: &str, tail: Tail) -> Result<Bytes, BlobError> {
        let key = self.tail_key(id, tail.generation);
        let (bytes, _) = self.get_bytes("GET of upload tail", &key).await?;
        if bytes.len() as u64 != tail.size {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "upload tail s3://{}/{key} has {} bytes; the upload state says {}",
                    self.bucket,
                    bytes.len(),
                    tail.size
                ),
            )));
        }
        Ok(bytes)
    }

    /// Deletes `key`; absent objects are fine.
    async fn delete_key(&self, key: &Path) -> Result<(), BlobError> {
        match self.s3.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("DELETE", key, e)),
        }
    }

    /// Removes everything of upload `id`: its multipart upload (if `state` names one
    /// that is not completed), its objects, and its state object last.
    async fn discard(&self, id: &str, state: Option<&UploadState>) -> Result<(), BlobError> {
        let data = self.data_key(id);
        if let Some(multipart) = state
            .filter(|s| !s.staged)
            .and_then(|s| s.multipart.as_ref())
        {
            if let Err(e) = self.s3.abort_multipart(&data, multipart).await {
                // Already gone, or not removable now: an incomplete multipart upload is
                // invisible, and a bucket lifecycle rule removes what is left.
                tracing::warn!(upload = id, %multipart, error = %e, "could not abort the S3 multipart upload");
            }
        }
        let dir = self.upload_dir(id);
        let state_key = self.state_key(id);
        let keys: Vec<Path> = self
            .s3
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.fail("LIST of upload objects", &dir, e))?;
        for key in keys.iter().filter(|k| **k != state_key) {
            self.delete_key(key).await?;
        }
        self.delete_key(&state_key).await
    }

    /// Size of object `key`, `None` if absent.
    async fn head(&self, op: &str, key: &Path) -> Result<Option<u64>, BlobError> {
        match self.s3.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(op, key, e)),
        }
    }

    /// Puts the staged bytes of the claimed upload into one object: completes the
    /// multipart upload (the tail as its last part) into the data object, and records
    /// that in the state.
    async fn stage(self: &Arc<Self>, id: &str, claim: &mut Claim) -> Result<Source, BlobError> {
        if claim.state.staged {
            return Ok(Source::Object(self.data_key(id)));
        }
        let Some(multipart) = claim.state.multipart.clone() else {
            return Ok(match claim.state.tail {
                Some(tail) => Source::Object(self.tail_key(id, tail.generation)),
                None => Source::Empty,
            });
        };
        let mut parts: Vec<PartId> = claim
            .state
            .parts
            .iter()
            .map(|etag| PartId {
                content_id: etag.clone(),
            })
            .collect();
        if let Some(tail) = claim.state.tail {
            let bytes = self.read_tail(id, tail).await?;
            let index = parts.len();
            let part = self
                .clone()
                .put_part(
                    id.to_string(),
                    multipart.clone(),
                    index,
                    bytes.into(),
                    claim.written_at,
                )
                .await?;
            parts.push(part);
        }
        // With no part at all, the client sends one empty part.
        let data = self.data_key(id);
        self.s3
            .complete_multipart(&data, &multipart, parts)
            .await
            .map_err(|e| {
                self.fail(
                    &format!("CompleteMultipartUpload (multipart upload {multipart})"),
                    &data,
                    e,
                )
            })?;
        claim.state.staged = true;
        claim.state.multipart = None;
        self.save(id, claim).await?;
        Ok(Source::Object(data))
    }

    /// Digest of the staged bytes, read back from `source`.
    async fn hash_source(
        &self,
        source: &Source,
        algorithm: Algorithm,
    ) -> Result<Digest, BlobError> {
        let mut hasher = algorithm.hasher();
        if let Source::Object(key) = source {
            let mut stream = self
                .reader
                .get(key)
                .await
                .map_err(|e| self.fail("GET of staged upload", key, e))?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk.map_err(|e| self.fail("GET of staged upload", key, e))?);
            }
        }
        Ok(hasher.finish())
    }
}

/// The body of [`S3BlobStore::append_upload`], run as its own task so that it
/// completes (stores what it received and releases its claim) even if the caller
/// stops waiting.
async fn append_task(
    inner: Arc<Inner>,
    id: String,
    offset: u64,
    data: ByteStream,
) -> Result<u64, BlobError> {
    let _lock = inner.lock(&id).await;
    // A wrong offset is refused without writing anything, unless another process is
    // working on the upload (its size is about to change: wait for it).
    let Some(current) = inner.load(&id).await? else {
        return Err(unknown(&id));
    };
    let foreign = current
        .state
        .lease
        .as_ref()
        .is_some_and(|l| l.owner != inner.instance);
    if !foreign && !current.state.staged && current.state.size != offset {
        return Err(BlobError::OffsetMismatch {
            id,
            offset,
            size: current.state.size,
        });
    }
    let mut claim = inner.claim(&id, "append").await?;
    if claim.state.staged {
        inner.release(&id, &mut claim).await?;
        return Err(BlobError::Io(io::Error::other(format!(
            "upload {id} is being committed (its bytes are already assembled); it takes no more data"
        ))));
    }
    if claim.state.size != offset {
        let size = claim.state.size;
        inner.release(&id, &mut claim).await?;
        return Err(BlobError::OffsetMismatch { id, offset, size });
    }
    Appender::new(inner, id, claim).run(data).await
}

/// A part being sent.
struct InFlight {
    handle: JoinHandle<Result<PartId, BlobError>>,
    /// The hash state at the part's end.
    hash_after: ResumableHasher,
}

/// One append in progress. `claim.state` is the progress last written (or about to
/// be): the parts completed and the hash at their end; `buf` holds the bytes after
/// the parts completed or in flight.
struct Appender {
    inner: Arc<Inner>,
    id: String,
    claim: Claim,
    part_size: usize,
    /// The tail the append started from (its object is deleted once replaced).
    old_tail: Option<Tail>,
    buf: Vec<Bytes>,
    buf_len: usize,
    /// `buf` holds exactly the old tail (nothing received yet, no part cut).
    buf_unchanged: bool,
    /// Hash of everything staged and received.
    hasher: ResumableHasher,
    in_flight: Option<InFlight>,
    renew_at: Instant,
}

impl Appender {
    fn new(inner: Arc<Inner>, id: String, claim: Claim) -> Appender {
        let renew_at = claim.written_at + inner.lease / 4;
        Appender {
            part_size: claim.state.part_size as usize,
            old_tail: claim.state.tail,
            hasher: claim.state.hash.clone(),
            inner,
            id,
            claim,
            buf: Vec::new(),
            buf_len: 0,
            buf_unchanged: true,
            in_flight: None,
            renew_at,
        }
    }

    async fn run(mut self, mut data: ByteStream) -> Result<u64, BlobError> {
        let mut body_error = None;
        let streamed = async {
            if let Some(tail) = self.old_tail {
                let bytes = self.inner.read_tail(&self.id, tail).await?;
                self.buf_len = bytes.len();
                self.buf.push(bytes);
            }
            loop {
                match tokio::time::timeout_at(self.renew_at, data.next()).await {
                    Err(_) => self.save().await?,
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        body_error = Some(e);
                        break;
                    }
                    Ok(Some(Ok(chunk))) => {
                        self.take(chunk).await?;
                        // A body that is always ready never lets the timeout fire.
                        if Instant::now() >= self.renew_at {
                            self.save().await?;
                        }
                    }
                }
            }
            Ok::<(), BlobError>(())
        }
        .await;
        let result = match streamed {
            Ok(()) => self.finish().await,
            Err(e) => Err(e),
        };
        match (result, body_error) {
            (Ok(size), None) => Ok(size),
            (Ok(_), Some(e)) => Err(BlobError::Body(e)),
            (Err(e), _) => {
                self.give_up().await;
                Err(e)
            }
        }
    }

    /// Adds body bytes, sending each part as it fills.
    async fn take(&mut self, mut chunk: Bytes) -> Result<(), BlobError> {
        while !chunk.is_empty() {
            let room = self.part_size - self.buf_len;
            let piece = if chunk.len() > room {
                chunk.split_to(room)
            } else {
                std::mem::take(&mut chunk)
            };
            self.hasher.update(&piece);
            self.buf_len += piece.len();
            self.buf.push(piece);
            self.buf_unchanged = false;
            if self.buf_len == self.part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Writes the claim's state: progress, and a renewal of the claim.
    async fn save(&mut self) -> Result<(), BlobError> {
        self.inner.save(&self.id, &mut self.claim).await?;
        self.renew_at = self.claim.written_at + self.inner.lease / 4;
        Ok(())
    }

    /// Waits for the part in flight, if any, and records it.
    async fn settle(&mut self) -> Result<(), BlobError> {
        if let Some(f) = self.in_flight.take() {
            let part = f.handle.await.map_err(join_error)??;
            let st = &mut self.claim.state;
            st.parts.push(part.content_id);
            st.size = st.parts.len() as u64 * st.part_size;
            st.tail = None;
            st.hash = f.hash_after;
        }
        Ok(())
    }

    /// Sends the full part in `buf` (after the previous one is done).
    async fn send_part(&mut self) -> Result<(), BlobError> {
        self.settle().await?;
        let index = self.claim.state.parts.len();
        // The last part number stays free for the tail at commit.
        if index + 1 >= MAX_PARTS {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "upload {}: more than {} parts of {} bytes (S3 allows {MAX_PARTS} parts; a larger part size allows larger blobs)",
                    self.id,
                    MAX_PARTS - 1,
                    self.part_size
                ),
            )));
        }
        let multipart = match &self.claim.state.multipart {
            Some(m) => m.clone(),
            None => {
                let key = self.inner.data_key(&self.id);
                let m = self
                    .inner
                    .s3
                    .create_multipart(&key)
                    .await
                    .map_err(|e| self.inner.fail("CreateMultipartUpload", &key, e))?;
                self.claim.state.multipart = Some(m.clone());
                m
            }
        };
        // Renewed right before the part goes: it is sent within a lease period of ours.
        self.save().await?;
        let payload: PutPayload = std::mem::take(&mut self.buf).into_iter().collect();
        self.buf_len = 0;
        let handle = tokio::spawn(self.inner.clone().put_part(
            self.id.clone(),
            multipart,
            index,
            payload,
            self.claim.written_at,
        ));
        self.in_flight = Some(InFlight {
            handle,
            hash_after: self.hasher.clone(),
        });
        Ok(())
    }

    /// Stores the rest as the tail and writes the final state, releasing the claim.
    async fn finish(&mut self) -> Result<u64, BlobError> {
        self.settle().await?;
        // After `settle`, the recorded tail is the old one if no part was cut, else none.
        let mut tail = self.claim.state.tail;
        if !self.buf_unchanged {
            tail = None;
            if self.buf_len > 0 {
                let generation = self.claim.state.next_tail;
                let key = self.inner.tail_key(&self.id, generation);
                let payload: PutPayload = std::mem::take(&mut self.buf).into_iter().collect();
                self.inner
                    .s3
                    .put(&key, payload)
                    .await
                    .map_err(|e| self.inner.fail("PUT of upload tail", &key, e))?;
                self.claim.state.next_tail = generation + 1;
                tail = Some(Tail {
                    generation,
                    size: self.buf_len as u64,
                });
            }
        }
        let st = &mut self.claim.state;
        st.tail = tail;
        st.size = st.parts.len() as u64 * st.part_size + tail.map_or(0, |t| t.size);
        st.hash = self.hasher.clone();
        st.lease = None;
        self.save().await?;
        self.drop_old_tail().await;
        Ok(self.claim.state.size)
    }

    /// After a storage failure: records what was durably stored and releases the claim,
    /// as far as possible. The bytes received but not yet stored are lost; the client
    /// resumes from the size the state records.
    async fn give_up(&mut self) {
        if let Err(e) = self.settle().await {
            tracing::debug!(upload = %self.id, error = %e, "part in flight failed too");
        }
        self.claim.state.lease = None;
        if let Err(e) = self.save().await {
            tracing::warn!(upload = %self.id, error = %e, "could not release the upload after a failed append");
            return;
        }
        self.drop_old_tail().await;
    }

    /// Deletes the tail object the append started from once the state no longer names
    /// it. A failure only leaves an object that commit or abort removes.
    async fn drop_old_tail(&self) {
        if let Some(old) = self.old_tail {
            if self.claim.state.tail != Some(old) {
                let key = self.inner.tail_key(&self.id, old.generation);
                if let Err(e) = self.inner.delete_key(&key).await {
                    tracing::debug!(upload = %self.id, error = %e, "replaced tail not deleted");
                }
            }
        }
    }
}

/// The body of [`S3BlobStore::commit_upload`], run as its own task.
async fn commit_task(inner: Arc<Inner>, id: String, digest: Digest) -> Result<u64, BlobError> {
    let _lock = inner.lock(&id).await;
    let mut claim = inner.claim(&id, "commit").await?;
    let result = commit_claimed(&inner, &id, digest, &mut claim).await;
    if let Err(BlobError::Io(e)) = &result {
        // The upload stays (it can be committed again or aborted): release it.
        if let Err(release) = inner.release(&id, &mut claim).await {
            tracing::warn!(upload = %id, error = %e, %release, "could not release the upload after a failed commit");
        }
    }
    result
}

/// Verifies and publishes the claimed upload, then removes it.
async fn commit_claimed(
    inner: &Arc<Inner>,
    id: &str,
    digest: Digest,
    claim: &mut Claim,
) -> Result<u64, BlobError> {
    let size = claim.state.size;
    let hashed = if claim.state.hash.algorithm() == digest.algorithm() {
        let computed = claim.state.hash.clone().finish().map_err(|e| {
            BlobError::Io(io::Error::other(format!(
                "upload {id}: digest of the hash state: {e}"
            )))
        })?;
        if computed != digest {
            inner.discard(id, Some(&claim.state)).await?;
            return Err(BlobError::DigestMismatch {
                expected: digest,
                computed,
            });
        }
        true
    } else {
        false
    };
    let source = inner.stage(id, claim).await?;
    if let Source::Object(key) = &source {
        let staged = inner.head("HEAD of staged upload", key).await?;
        if staged != Some(size) {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "staged upload s3://{}/{key} has {staged:?} bytes; the upload state says {size}",
                    inner.bucket
                ),
            )));
        }
    }
    if !hashed {
        let computed = inner.hash_source(&source, digest.algorithm()).await?;
        if computed != digest {
            inner.discard(id, Some(&claim.state)).await?;
            return Err(BlobError::DigestMismatch {
                expected: digest,
                computed,
            });
        }
    }
    let dest = inner.blob_key(&digest);
    // Blobs are immutable and content-addressed: one already there is this one.
    if inner.head("HEAD of blob", &dest).await?.is_none() {
        match &source {
            Source::Empty => {
                inner
                    .s3
                    .put(&dest, PutPayload::default())
                    .await
                    .map_err(|e| inner.fail("PUT of empty blob", &dest, e))?;
            }
            Source::Object(key) => {
                inner
                    .s3
                    .copy(key, &dest)
                    .await
                    .map_err(|e| inner.fail(&format!("CopyObject from {key}"), &dest, e))?;
            }
        }
    }
    inner.discard(id, Some(&claim.state)).await?;
    Ok(size)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn start_upload(&self, id: &str) -> Result<(), BlobError> {
        if !valid_id(id) {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upload id {id:?} is not 1 to {MAX_ID_LEN} characters of A-Za-z0-9_-"),
            )));
        }
        let key = self.inner.state_key(id);
        let state = UploadState::new(self.inner.part_size);
        let body = serde_json::to_vec(&state)
            .map_err(|e| BlobError::Io(io::Error::other(format!("upload state of {id}: {e}"))))?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.inner.s3.put_opts(&key, body.into(), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(BlobError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("upload {id} already exists"),
            ))),
            Err(e) => Err(self.inner.fail("PUT of new upload state", &key, e)),
        }
    }

    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<u64, BlobError> {
        if !valid_id(id) {
            return Err(unknown(id));
        }
        let task = append_task(self.inner.clone(), id.to_string(), offset, data);
        tokio::spawn(task).await.map_err(join_error)?
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        if !valid_id(id) {
            return Err(unknown(id));
        }
        match self.inner.load(id).await? {
            Some(loaded) => Ok(loaded.state.size),
            None => Err(unknown(id)),
        }
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<u64, BlobError> {
        if !valid_id(id) {
            return Err(unknown(id));
        }
        let task = commit_task(self.inner.clone(), id.to_string(), digest.clone());
        tokio::spawn(task).await.map_err(join_error)?
    }

    async fn abort_upload(&self, id: &str) -> Result<(), BlobError> {
        if !valid_id(id) {
            // Such an id can never have been started, so it is unknown.
            return Ok(());
        }
        let inner = self.inner.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let _lock = inner.lock(&id).await;
            // Another process's writer is not waited for: it finds the upload gone at
            // its next write.
            let state = inner.load(&id).await?.map(|l| l.state);
            inner.discard(&id, state.as_ref()).await
        })
        .await
        .map_err(join_error)?
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        self.inner
            .head("HEAD of blob", &self.inner.blob_key(digest))
            .await
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BlobError> {
        let inner = &self.inner;
        let key = inner.blob_key(digest);
        let mut options = GetOptions::default();
        if let Some(r) = &range {
            let size = inner
                .head("HEAD of blob", &key)
                .await?
                .ok_or_else(|| BlobError::BlobUnknown(digest.clone()))?;
            if !(r.start < r.end && r.end <= size) {
                return Err(BlobError::RangeNotSatisfiable {
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
            options.range = Some(GetRange::Bounded(r.clone()));
        }
        let result = match inner.reader.get_opts(&key, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::BlobUnknown(digest.clone()))
            }
            Err(e) => return Err(inner.fail("GET of blob", &key, e)),
        };
        let what = format!("S3 GET of s3://{}/{key}", inner.bucket);
        let stream = result
            .into_stream()
            .map_err(move |e| io::Error::other(format!("{what} failed while streaming: {e}")));
        Ok(Box::pin(stream))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        self.inner.delete_key(&self.inner.blob_key(digest)).await
    }

    async fn list_uploads(&self) -> Result<Vec<String>, BlobError> {
        let dir = self.inner.uploads_dir();
        let keys: Vec<Path> = self
            .inner
            .s3
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.inner.fail("LIST of uploads", &dir, e))?;
        let mut ids: Vec<String> = keys
            .iter()
            .filter_map(|key| key.prefix_match(&dir)?.next())
            .map(|part| part.as_ref().to_string())
            .filter(|id| valid_id(id))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn download_url(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        if !self.inner.redirect {
            return Ok(None);
        }
        let key = self.inner.blob_key(digest);
        let url = self
            .inner
            .reader
            .signed_url(Method::GET, &key, expires_in)
            .await
            .map_err(|e| self.inner.fail("pre-signing of a GET", &key, e))?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_id;

    #[test]
    fn upload_ids() {
        assert!(valid_id("aZ09_-"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a.b"));
        assert!(!valid_id(&"a".repeat(129)));
    }
}
