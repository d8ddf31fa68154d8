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
//! # Encryption at rest
//!
//! A store made with [`S3BlobStore::with_keyring`] encrypts every new upload on the
//! client side with [`wharf_crypt`] (the bucket's own server-side encryption is not
//! relied on: the bytes in the bucket never hold plaintext, whatever the server does):
//!
//! - `start_upload` makes the upload's [`Envelope`] (a random data key wrapped under the
//!   keyring's current key) and stores it as `_uploads/<id>/envelope` before the state
//!   object, which then has format 2 (`"encryption":{"plaintext":..,"hash":..}`).
//! - Appends feed the body through an [`Encryptor`] and hash the *plaintext*; the
//!   *ciphertext* records are cut into parts as above (parts need not align with
//!   records). The tail object holds the ciphertext after the last part followed by
//!   the provisional record ([`Encryptor::seal_pending`]), so no plaintext rests in the
//!   bucket between requests; the next append, on any replica, finds the provisional
//!   record at the end of the tail ([`staged_layout`] of the state's `size`) and
//!   [`Encryptor::resume`]s from it. In an encrypted upload's state, `size` and the
//!   tail's size count stored *ciphertext* bytes and `encryption.plaintext` the
//!   plaintext bytes (what `upload_size` reports). The hash state, whose pending
//!   partial block is plaintext, is stored only sealed under the data key
//!   ([`DataKey::seal_aux`], bound to the upload id and plaintext length).
//!   An encrypted append records its parts in the state only at its end, together
//!   with the new tail (the ciphertext at a part boundary is not a resumable point):
//!   a writer that dies mid-append loses that append's bytes, and the client resumes
//!   from the size recorded before it (the parts it sent are overwritten by number, or
//!   left out of the completed upload). A failing *body* still keeps every byte
//!   received.
//! - Commit checks the plaintext digest first, then writes [`Encryptor::finish`]'s
//!   final record as the last part (or, for an upload that never filled a part, the
//!   whole ciphertext as the `data` object), stores the envelope as
//!   `blobs/<alg>/<2 hex>/<hex>.envelope` (a conditional create), and only then copies
//!   the ciphertext to the blob's key: a visible blob always has its envelope. If the
//!   envelope exists but its blob does not (another commit of the same content between
//!   its two writes, or one that died there), the commit waits for that blob, and
//!   replaces an envelope left alone for longer than a lease.
//! - `stat` is [`plaintext_len`] of the object's size. `read` fetches the blob's
//!   metadata first, then its envelope (the reverse of the order they are written in),
//!   GETs only the records holding the range ([`ciphertext_range`]) and decrypts them
//!   as they stream ([`decrypt_stream`]: memory of about one record); a full read
//!   includes the last record and so checks the final flag (no truncation).
//! - **Migration:** a blob without an envelope was written before encryption was
//!   enabled and is read as plaintext; an unencrypted upload in progress when
//!   encryption is enabled is finished unencrypted. A store without a keyring refuses
//!   to continue an encrypted upload, but does not look for envelopes: every replica
//!   sharing a bucket must be given the keyring.
//! - [`BlobStore::download_url`] is always `None` for an encrypted store (a pre-signed
//!   URL would hand out ciphertext): the `redirect` option has no effect, and the store
//!   logs a warning saying so when made with it.
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
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
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
use state::{Encryption, Lease, Tail, UploadState, MAX_PARTS};
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wharf_blob::{BlobError, BlobStore, ByteStream};
use wharf_crypt::{
    ciphertext_len, ciphertext_range, decrypt_stream, plaintext_len, staged_layout, CryptError,
    DataKey, Decryptor, Encryptor, Envelope, Keyring,
};
use wharf_oci::{Algorithm, Digest, ResumableHasher, SavedHash};

/// Conditional rewrites of a blob's envelope tried before giving up while other
/// writers keep changing it.
const ENVELOPE_UPDATE_ATTEMPTS: usize = 16;

/// Times a commit writes its blob and envelope before giving up when another commit of
/// the same content keeps interleaving with it.
const PAIR_ATTEMPTS: u32 = 8;
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
    /// Master keys: new uploads are encrypted when set.
    keyring: Option<Arc<Keyring>>,
}

impl S3BlobStore {
    /// A store over the bucket `config` describes. Makes no request: a wrong bucket or
    /// wrong credentials show on first use.
    pub fn new(config: S3Config) -> Result<S3BlobStore, S3ConfigError> {
        S3BlobStore::build(config, None)
    }

    /// A store over the bucket `config` describes that encrypts every new upload with
    /// a data key wrapped under `keyring`'s current key, and decrypts blobs that have an
    /// envelope (see the crate documentation, "Encryption at rest"). Download redirects
    /// are off whatever `config.redirect_downloads` says.
    pub fn with_keyring(
        config: S3Config,
        keyring: Arc<Keyring>,
    ) -> Result<S3BlobStore, S3ConfigError> {
        if config.redirect_downloads {
            tracing::warn!(
                bucket = %config.bucket,
                "S3 blob storage: redirect (pre-signed download URLs) has no effect with encryption at rest; blobs are served decrypted through Wharf"
            );
        }
        S3BlobStore::build(config, Some(keyring))
    }

    fn build(
        config: S3Config,
        keyring: Option<Arc<Keyring>>,
    ) -> Result<S3BlobStore, S3ConfigError> {
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
                keyring,
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

    /// Whether new uploads are encrypted (the store has a keyring).
    pub fn encrypts(&self) -> bool {
        self.inner.keyring.is_some()
    }

    /// The key of blob `digest`'s envelope inside the bucket (present for encrypted
    /// blobs).
    pub fn blob_envelope_key(&self, digest: &Digest) -> String {
        self.inner.blob_envelope_key(digest).to_string()
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

/// An encryption failure while doing `what` (which names the upload, blob or object).
fn crypt_fail(what: impl std::fmt::Display, e: CryptError) -> BlobError {
    BlobError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}: {e}"),
    ))
}

/// The context the hash state of upload `id` at `plaintext` bytes is sealed under.
fn hash_context(id: &str, plaintext: u64) -> String {
    format!("wharf-blob-s3 upload {id}: hash state at {plaintext} bytes")
}

/// The hash state of an encrypted upload, sealed for its state object.
fn seal_hash(key: &DataKey, id: &str, hasher: &ResumableHasher) -> Result<String, BlobError> {
    let json = serde_json::to_vec(&hasher.save())
        .map_err(|e| BlobError::Io(io::Error::other(format!("upload {id}: hash state: {e}"))))?;
    let sealed = key
        .seal_aux(&hash_context(id, hasher.len()), &json)
        .map_err(|e| crypt_fail(format_args!("upload {id}: sealing the hash state"), e))?;
    Ok(BASE64.encode(sealed))
}

/// Opens the sealed hash state of an encrypted upload.
fn open_hash(key: &DataKey, id: &str, enc: &Encryption) -> Result<ResumableHasher, BlobError> {
    let corrupt = |why: String| {
        BlobError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("upload {id}: sealed hash state: {why}"),
        ))
    };
    let sealed = BASE64
        .decode(&enc.hash)
        .map_err(|e| corrupt(e.to_string()))?;
    let json = key
        .open_aux(&hash_context(id, enc.plaintext), &sealed)
        .map_err(|e| crypt_fail(format_args!("upload {id}: opening the hash state"), e))?;
    let saved: SavedHash = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
    let hasher = ResumableHasher::restore(saved).map_err(|e| corrupt(e.to_string()))?;
    if hasher.len() != enc.plaintext {
        return Err(corrupt(format!(
            "covers {} bytes, not the {} staged",
            hasher.len(),
            enc.plaintext
        )));
    }
    Ok(hasher)
}

fn join_error(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(io::Error::other(format!("S3 blob store task failed: {e}")))
}

/// An encrypted upload's data key and its envelope as stored.
struct UploadKey {
    key: DataKey,
    envelope: Bytes,
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

    fn blob_envelope_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.root
            .clone()
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(format!("{hex}.envelope").as_str())
    }

    fn envelope_key(&self, id: &str) -> Path {
        self.upload_dir(id).join("envelope")
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
    async fn stage(
        self: &Arc<Self>,
        id: &str,
        claim: &mut Claim,
        key: Option<&UploadKey>,
    ) -> Result<Source, BlobError> {
        if claim.state.staged {
            return Ok(Source::Object(self.data_key(id)));
        }
        if let Some(key) = key {
            return self.stage_encrypted(id, claim, &key.key).await;
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

    /// [`Inner::stage`] of an encrypted upload: the provisional record at the end of
    /// the tail is replaced by the final record, and the result is the last part (or,
    /// without a multipart upload, the whole `data` object).
    async fn stage_encrypted(
        self: &Arc<Self>,
        id: &str,
        claim: &mut Claim,
        key: &DataKey,
    ) -> Result<Source, BlobError> {
        let (kept, encryptor) = self.resume_tail(id, &claim.state, key).await?;
        let last = encryptor
            .finish()
            .map_err(|e| crypt_fail(format_args!("upload {id}: final record"), e))?;
        let payload: PutPayload = [kept, Bytes::from(last)].into_iter().collect();
        let data = self.data_key(id);
        match claim.state.multipart.clone() {
            Some(multipart) => {
                let mut parts: Vec<PartId> = claim
                    .state
                    .parts
                    .iter()
                    .map(|etag| PartId {
                        content_id: etag.clone(),
                    })
                    .collect();
                let part = self
                    .clone()
                    .put_part(
                        id.to_string(),
                        multipart.clone(),
                        parts.len(),
                        payload,
                        claim.written_at,
                    )
                    .await?;
                parts.push(part);
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
            }
            None => {
                self.s3
                    .put(&data, payload)
                    .await
                    .map_err(|e| self.fail("PUT of staged upload", &data, e))?;
            }
        }
        claim.state.staged = true;
        claim.state.multipart = None;
        self.save(id, claim).await?;
        Ok(Source::Object(data))
    }

    /// Reads the tail of an encrypted upload: the ciphertext after the last part
    /// without the provisional record, and an encryptor resumed from that record.
    async fn resume_tail(
        &self,
        id: &str,
        state: &UploadState,
        key: &DataKey,
    ) -> Result<(Bytes, Encryptor), BlobError> {
        let resumed = |e| crypt_fail(format_args!("upload {id}: resuming encryption"), e);
        let Some(tail) = state.tail else {
            // Nothing staged (the state's check makes sure).
            return Ok((Bytes::new(), Encryptor::new(key).map_err(resumed)?));
        };
        let layout = staged_layout(state.size).map_err(resumed)?;
        let provisional = (layout.provisional.end - layout.provisional.start) as usize;
        let mut bytes = self.read_tail(id, tail).await?;
        // The state's check makes sure the tail holds the provisional record.
        let record = bytes.split_off(bytes.len().saturating_sub(provisional));
        let encryptor = Encryptor::resume(key, layout.segments_done, &record).map_err(|e| {
            crypt_fail(
                format_args!(
                    "upload {id}: provisional record in s3://{}/{}",
                    self.bucket,
                    self.tail_key(id, tail.generation)
                ),
                e,
            )
        })?;
        Ok((bytes, encryptor))
    }

    /// The data key and envelope of encrypted upload `id`.
    async fn upload_key(&self, id: &str) -> Result<UploadKey, BlobError> {
        let Some(keyring) = &self.keyring else {
            return Err(BlobError::Io(io::Error::other(format!(
                "upload {id} is encrypted, but this blob store has no keyring"
            ))));
        };
        let key = self.envelope_key(id);
        let (envelope, _) = self.get_bytes("GET of upload envelope", &key).await?;
        let what = format_args!("envelope s3://{}/{key} of upload {id}", self.bucket);
        let data_key = Envelope::from_bytes(&envelope)
            .and_then(|env| env.data_key(keyring))
            .map_err(|e| crypt_fail(what, e))?;
        Ok(UploadKey {
            key: data_key,
            envelope,
        })
    }

    /// The data key of blob `digest`, `None` when it has no envelope (it was stored
    /// unencrypted) or the store has no keyring.
    async fn blob_data_key(&self, digest: &Digest) -> Result<Option<DataKey>, BlobError> {
        let Some(keyring) = &self.keyring else {
            return Ok(None);
        };
        let key = self.blob_envelope_key(digest);
        let envelope = match self.s3.get(&key).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| self.fail("GET of blob envelope", &key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail("GET of blob envelope", &key, e)),
        };
        let what = format_args!("blob {digest}: envelope s3://{}/{key}", self.bucket);
        Envelope::from_bytes(&envelope)
            .and_then(|env| env.data_key(keyring))
            .map(Some)
            .map_err(|e| crypt_fail(what, e))
    }

    /// Rewrites blob `digest`'s envelope through `change` (which says whether it changed
    /// anything) with a conditional PUT, again from a fresh read when another writer
    /// got there first. `false` when the blob is stored unencrypted; `BlobUnknown` when
    /// it is absent.
    async fn update_envelope(
        &self,
        digest: &Digest,
        change: impl Fn(&mut Envelope) -> Result<bool, CryptError>,
    ) -> Result<bool, BlobError> {
        let key = self.blob_envelope_key(digest);
        let what = || format!("blob {digest}: envelope s3://{}/{key}", self.bucket);
        for _ in 0..ENVELOPE_UPDATE_ATTEMPTS {
            let (bytes, version) = match self.s3.get(&key).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    let bytes = r
                        .bytes()
                        .await
                        .map_err(|e| self.fail("GET of blob envelope", &key, e))?;
                    (bytes, version)
                }
                Err(object_store::Error::NotFound { .. }) => {
                    let blob = self.blob_key(digest);
                    return match self.head("HEAD of blob", &blob).await? {
                        Some(_) => Ok(false),
                        None => Err(BlobError::BlobUnknown(digest.clone())),
                    };
                }
                Err(e) => return Err(self.fail("GET of blob envelope", &key, e)),
            };
            let mut envelope = Envelope::from_bytes(&bytes).map_err(|e| crypt_fail(what(), e))?;
            if !change(&mut envelope).map_err(|e| crypt_fail(what(), e))? {
                return Ok(false);
            }
            let options = PutOptions {
                mode: PutMode::Update(version),
                ..PutOptions::default()
            };
            match self
                .s3
                .put_opts(&key, envelope.to_bytes().into(), options)
                .await
            {
                Ok(_) => return Ok(true),
                Err(object_store::Error::Precondition { .. }) => continue,
                Err(e) => return Err(self.fail("conditional PUT of blob envelope", &key, e)),
            }
        }
        Err(BlobError::Io(io::Error::other(format!(
            "{}: others kept changing it ({ENVELOPE_UPDATE_ATTEMPTS} attempts)",
            what()
        ))))
    }

    /// Whether blob `digest`'s envelope opens its last record (so that the two were
    /// written by the same commit). `false` when either is missing.
    async fn pair_consistent(&self, digest: &Digest) -> Result<bool, BlobError> {
        let key = self.blob_key(digest);
        let Some(size) = self.head("HEAD of blob", &key).await? else {
            return Ok(false);
        };
        let data_key = match self.blob_data_key(digest).await {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::debug!(%digest, error = %e, "blob envelope does not open");
                return Ok(false);
            }
        };
        let Ok(plain) = plaintext_len(size) else {
            return Ok(false);
        };
        let Ok(decryptor) = Decryptor::new(&data_key, plain.saturating_sub(1)..plain, plain) else {
            return Ok(false);
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(decryptor.ciphertext_range())),
            ..GetOptions::default()
        };
        let stream: ByteStream = match self.s3.get_opts(&key, options).await {
            Ok(r) => Box::pin(r.into_stream().map_err(io::Error::other)),
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.fail("GET of blob's last record", &key, e)),
        };
        let mut plaintext = decrypt_stream(decryptor, stream);
        while let Some(piece) = plaintext.next().await {
            if piece.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stores `envelope` as blob `digest`'s envelope, before its blob is copied.
    /// Returns `false` when the blob appeared meanwhile (committed by another upload:
    /// the staged copy is then discarded). An envelope already there that is not this
    /// one belongs to another commit between its two writes: the blob is waited for
    /// (renewing the claim), and the envelope is replaced once it has stood without
    /// its blob for longer than a lease (its commit died).
    async fn publish_envelope(
        &self,
        id: &str,
        claim: &mut Claim,
        digest: &Digest,
        envelope: &Bytes,
    ) -> Result<bool, BlobError> {
        let key = self.blob_envelope_key(digest);
        let blob = self.blob_key(digest);
        let create = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match self
                .s3
                .put_opts(&key, envelope.clone().into(), create())
                .await
            {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.fail("conditional PUT of blob envelope", &key, e)),
            }
            if self.head("HEAD of blob", &blob).await?.is_some() {
                return Ok(false);
            }
            let found = match self.s3.get(&key).await {
                Ok(r) => {
                    let modified = std::time::SystemTime::from(r.meta.last_modified);
                    let bytes = r
                        .bytes()
                        .await
                        .map_err(|e| self.fail("GET of blob envelope", &key, e))?;
                    Some((bytes, modified))
                }
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(self.fail("GET of blob envelope", &key, e)),
            };
            let Some((bytes, modified)) = found else {
                continue;
            };
            if bytes == *envelope {
                // Ours, from an earlier try of this commit.
                return Ok(true);
            }
            let age = modified.elapsed().unwrap_or_default();
            if age > self.lease || started.elapsed() > 2 * self.lease {
                tracing::warn!(
                    upload = id,
                    %digest,
                    "replacing the envelope s3://{}/{key}, which has stood without its blob for {age:?}",
                    self.bucket
                );
                self.s3
                    .put(&key, envelope.clone().into())
                    .await
                    .map_err(|e| self.fail("PUT of blob envelope", &key, e))?;
                return Ok(true);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            self.save(id, claim).await?;
        }
    }

    /// Digest of the staged bytes, read back from `source`.
    /// For an encrypted upload, `plain` gives the data key and the plaintext length,
    /// and the staged ciphertext is decrypted (and so verified) while it is hashed.
    async fn hash_source(
        &self,
        source: &Source,
        algorithm: Algorithm,
        plain: Option<(&DataKey, u64)>,
    ) -> Result<Digest, BlobError> {
        let mut hasher = algorithm.hasher();
        if let Source::Object(key) = source {
            let what = format!("S3 GET of staged upload s3://{}/{key}", self.bucket);
            let stream: ByteStream = Box::pin(
                self.reader
                    .get(key)
                    .await
                    .map_err(|e| self.fail("GET of staged upload", key, e))?
                    .into_stream()
                    .map_err(move |e| io::Error::other(format!("{what} failed: {e}"))),
            );
            let mut stream = match plain {
                Some((data_key, len)) => {
                    let decryptor = Decryptor::new(data_key, 0..len, len).map_err(|e| {
                        crypt_fail(format_args!("staged upload s3://{}/{key}", self.bucket), e)
                    })?;
                    decrypt_stream(decryptor, stream)
                }
                None => stream,
            };
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    BlobError::Io(io::Error::new(
                        e.kind(),
                        format!("staged upload s3://{}/{key}: {e}", self.bucket),
                    ))
                })?;
                hasher.update(&chunk);
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
    if !foreign && !current.state.staged && current.state.plaintext_size() != offset {
        return Err(BlobError::OffsetMismatch {
            id,
            offset,
            size: current.state.plaintext_size(),
        });
    }
    let mut claim = inner.claim(&id, "append").await?;
    if claim.state.staged {
        inner.release(&id, &mut claim).await?;
        return Err(BlobError::Io(io::Error::other(format!(
            "upload {id} is being committed (its bytes are already assembled); it takes no more data"
        ))));
    }
    if claim.state.plaintext_size() != offset {
        let size = claim.state.plaintext_size();
        inner.release(&id, &mut claim).await?;
        return Err(BlobError::OffsetMismatch { id, offset, size });
    }
    let (hasher, crypt) = match prepare_hash(&inner, &id, &claim.state).await {
        Ok(prepared) => prepared,
        Err(e) => {
            if let Err(release) = inner.release(&id, &mut claim).await {
                tracing::warn!(upload = %id, error = %e, %release, "could not release the upload");
            }
            return Err(e);
        }
    };
    Appender::new(inner, id, claim, hasher, crypt)
        .run(data)
        .await
}

/// The hash state of the staged plaintext, and for an encrypted upload its data key.
async fn prepare_hash(
    inner: &Inner,
    id: &str,
    state: &UploadState,
) -> Result<(ResumableHasher, Option<UploadKey>), BlobError> {
    match (&state.hash, &state.encryption) {
        (_, Some(enc)) => {
            let key = inner.upload_key(id).await?;
            let hasher = open_hash(&key.key, id, enc)?;
            Ok((hasher, Some(key)))
        }
        (Some(hash), None) => Ok((hash.clone(), None)),
        // The state's check refuses this.
        (None, None) => Err(BlobError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("upload {id}: the state has no hash state"),
        ))),
    }
}

/// A part being sent.
struct InFlight {
    handle: JoinHandle<Result<PartId, BlobError>>,
    /// The hash state at the part's end.
    hash_after: ResumableHasher,
}

/// One append in progress. `claim.state` is the progress last written (or about to
/// be): the parts completed and the hash at their end (for an encrypted upload, the
/// state as it was before the append until its end, see the crate documentation);
/// `buf` holds the bytes after the parts completed or in flight.
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
    /// For an encrypted upload: its data key, and the encryptor once the tail is read.
    crypt: Option<UploadKey>,
    encryptor: Option<Encryptor>,
    /// Parts of an encrypted upload sent by this append, recorded at its end.
    new_parts: Vec<String>,
}

impl Appender {
    fn new(
        inner: Arc<Inner>,
        id: String,
        claim: Claim,
        hasher: ResumableHasher,
        crypt: Option<UploadKey>,
    ) -> Appender {
        let renew_at = claim.written_at + inner.lease / 4;
        Appender {
            part_size: claim.state.part_size as usize,
            old_tail: claim.state.tail,
            hasher,
            crypt,
            encryptor: None,
            new_parts: Vec::new(),
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
            if let Some(crypt) = &self.crypt {
                let (kept, encryptor) = self
                    .inner
                    .resume_tail(&self.id, &self.claim.state, &crypt.key)
                    .await?;
                self.encryptor = Some(encryptor);
                self.buf_len = kept.len();
                if !kept.is_empty() {
                    self.buf.push(kept);
                }
            } else if let Some(tail) = self.old_tail {
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

    /// Adds body bytes (encrypted first, for an encrypted upload), sending each part as
    /// it fills.
    async fn take(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        let Some(encryptor) = &mut self.encryptor else {
            return self.push(chunk, true).await;
        };
        if chunk.is_empty() {
            return Ok(());
        }
        self.hasher.update(&chunk);
        let records = encryptor
            .update(&chunk)
            .map_err(|e| crypt_fail(format_args!("upload {}: encryption", self.id), e))?;
        self.buf_unchanged = false;
        for record in records {
            self.push(record, false).await?;
        }
        Ok(())
    }

    /// Adds bytes to store (hashing them when `hash`), sending each part as it fills.
    async fn push(&mut self, mut chunk: Bytes, hash: bool) -> Result<(), BlobError> {
        while !chunk.is_empty() {
            let room = self.part_size - self.buf_len;
            let piece = if chunk.len() > room {
                chunk.split_to(room)
            } else {
                std::mem::take(&mut chunk)
            };
            if hash {
                self.hasher.update(&piece);
            }
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
            if self.crypt.is_some() {
                self.new_parts.push(part.content_id);
                return Ok(());
            }
            let st = &mut self.claim.state;
            st.parts.push(part.content_id);
            st.size = st.parts.len() as u64 * st.part_size;
            st.tail = None;
            st.hash = Some(f.hash_after);
        }
        Ok(())
    }

    /// Sends the full part in `buf` (after the previous one is done).
    async fn send_part(&mut self) -> Result<(), BlobError> {
        self.settle().await?;
        let index = self.claim.state.parts.len() + self.new_parts.len();
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
        if self.crypt.is_some() {
            return self.finish_encrypted().await;
        }
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
        st.hash = Some(self.hasher.clone());
        st.lease = None;
        self.save().await?;
        self.drop_old_tail().await;
        Ok(self.claim.state.size)
    }

    /// [`Appender::finish`] of an encrypted upload: the new tail is the ciphertext after
    /// the last part followed by the provisional record; the parts this append sent,
    /// the tail and the sealed hash state are recorded together.
    async fn finish_encrypted(&mut self) -> Result<u64, BlobError> {
        if !self.buf_unchanged {
            let (Some(crypt), Some(encryptor)) = (&self.crypt, &mut self.encryptor) else {
                return Err(BlobError::Io(io::Error::other(format!(
                    "upload {}: encrypted append without an encryptor",
                    self.id
                ))));
            };
            let provisional = encryptor.seal_pending().map_err(|e| {
                crypt_fail(format_args!("upload {}: provisional record", self.id), e)
            })?;
            let hash = seal_hash(&crypt.key, &self.id, &self.hasher)?;
            let size = (self.buf_len + provisional.len()) as u64;
            let mut pieces = std::mem::take(&mut self.buf);
            pieces.push(Bytes::from(provisional));
            self.buf_len = 0;
            let payload: PutPayload = pieces.into_iter().collect();
            let generation = self.claim.state.next_tail;
            let key = self.inner.tail_key(&self.id, generation);
            self.inner
                .s3
                .put(&key, payload)
                .await
                .map_err(|e| self.inner.fail("PUT of upload tail", &key, e))?;
            let st = &mut self.claim.state;
            st.parts.append(&mut self.new_parts);
            st.next_tail = generation + 1;
            st.tail = Some(Tail { generation, size });
            st.size = st.parts.len() as u64 * st.part_size + size;
            st.encryption = Some(Encryption {
                plaintext: self.hasher.len(),
                hash,
            });
        }
        self.claim.state.lease = None;
        self.save().await?;
        self.drop_old_tail().await;
        Ok(self.claim.state.plaintext_size())
    }

    /// After a storage failure: records what was durably stored and releases the claim,
    /// as far as possible. The bytes received but not yet stored are lost; the client
    /// resumes from the size the state records.
    async fn give_up(&mut self) {
        if let Err(e) = self.settle().await {
            tracing::debug!(upload = %self.id, error = %e, "part in flight failed too");
        }
        // Parts of an encrypted append are recorded only with its tail.
        self.new_parts.clear();
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
    let (hash, key) = prepare_hash(inner, id, &claim.state).await?;
    let size = claim.state.plaintext_size();
    let hashed = if hash.algorithm() == digest.algorithm() {
        let computed = hash.finish().map_err(|e| {
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
    let source = inner.stage(id, claim, key.as_ref()).await?;
    if let Source::Object(object) = &source {
        let expected = match &key {
            Some(_) => ciphertext_len(size)
                .map_err(|e| crypt_fail(format_args!("upload {id}: {size} bytes"), e))?,
            None => size,
        };
        let staged = inner.head("HEAD of staged upload", object).await?;
        if staged != Some(expected) {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "staged upload s3://{}/{object} has {staged:?} bytes; the upload state says {expected}",
                    inner.bucket
                ),
            )));
        }
    }
    if !hashed {
        let plain = key.as_ref().map(|k| (&k.key, size));
        let computed = inner
            .hash_source(&source, digest.algorithm(), plain)
            .await?;
        if computed != digest {
            inner.discard(id, Some(&claim.state)).await?;
            return Err(BlobError::DigestMismatch {
                expected: digest,
                computed,
            });
        }
    }
    let dest = inner.blob_key(&digest);
    // Blobs are immutable and content-addressed: one already there is this one. An
    // encrypted blob's envelope is stored before the blob.
    let mut publish = inner.head("HEAD of blob", &dest).await?.is_none();
    if let (true, Some(key)) = (publish, &key) {
        publish = inner
            .publish_envelope(id, claim, &digest, &key.envelope)
            .await?;
    }
    if let (false, Some(key)) = (publish, &key) {
        // Already stored: the keys this upload was wrapped for may now open it too.
        if let Some(keyring) = &inner.keyring {
            let ours = Envelope::from_bytes(&key.envelope)
                .map_err(|e| crypt_fail(format_args!("upload {id}: envelope"), e))?;
            let ids: Vec<String> = ours.key_ids().into_iter().map(str::to_string).collect();
            inner
                .update_envelope(&digest, |env| {
                    let mut changed = false;
                    for key_id in &ids {
                        changed |= env.add_wrap(keyring, key_id)?;
                    }
                    Ok(changed)
                })
                .await?;
        }
    }
    let attempts = if publish { PAIR_ATTEMPTS } else { 0 };
    for attempt in 1..=attempts {
        match &source {
            Source::Empty => {
                inner
                    .s3
                    .put(&dest, PutPayload::default())
                    .await
                    .map_err(|e| inner.fail("PUT of empty blob", &dest, e))?;
            }
            Source::Object(object) => {
                inner
                    .s3
                    .copy(object, &dest)
                    .await
                    .map_err(|e| inner.fail(&format!("CopyObject from {object}"), &dest, e))?;
            }
        }
        let Some(key) = &key else {
            break;
        };
        // Another commit of the same content may have written its envelope or its
        // blob between ours (a conditional create that is not atomic on some
        // servers, or a replaced envelope): whoever wrote last sees the pair
        // mismatched here and writes its own pair again.
        if inner.pair_consistent(&digest).await? {
            break;
        }
        if attempt >= PAIR_ATTEMPTS {
            return Err(BlobError::Io(io::Error::other(format!(
                "upload {id}: blob {digest}: its envelope and its bytes kept coming from different commits ({PAIR_ATTEMPTS} attempts)"
            ))));
        }
        tracing::warn!(upload = id, %digest, attempt, "blob and envelope written by different commits; writing this commit's pair again");
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]);
        tokio::time::sleep(Duration::from_millis((20 + jitter) * u64::from(attempt))).await;
        let env_key = inner.blob_envelope_key(&digest);
        inner
            .s3
            .put(&env_key, key.envelope.clone().into())
            .await
            .map_err(|e| inner.fail("PUT of blob envelope", &env_key, e))?;
    }
    inner.discard(id, Some(&claim.state)).await?;
    Ok(size)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn start_upload(&self, id: &str) -> Result<(), BlobError> {
        self.start_upload_for_key(id, None).await
    }

    async fn grant_key(&self, digest: &Digest, key: Option<&str>) -> Result<bool, BlobError> {
        let Some(keyring) = self.inner.keyring.clone() else {
            return Ok(false);
        };
        let key = key.unwrap_or(keyring.current_id()).to_string();
        self.inner
            .update_envelope(digest, |env| env.add_wrap(&keyring, &key))
            .await
    }

    async fn rotate_keys(&self, digest: &Digest) -> Result<bool, BlobError> {
        let Some(keyring) = self.inner.keyring.clone() else {
            return Ok(false);
        };
        self.inner
            .update_envelope(digest, |env| env.rotate(&keyring))
            .await
    }

    async fn start_upload_for_key(&self, id: &str, key: Option<&str>) -> Result<(), BlobError> {
        if !valid_id(id) {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upload id {id:?} is not 1 to {MAX_ID_LEN} characters of A-Za-z0-9_-"),
            )));
        }
        let exists = || {
            BlobError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("upload {id} already exists"),
            ))
        };
        let create = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let state = match &self.inner.keyring {
            None => UploadState::new(self.inner.part_size),
            Some(keyring) => {
                // The envelope first: a state that says "encrypted" always has one.
                let envelope = Envelope::new(keyring, &[key.unwrap_or(keyring.current_id())])
                    .map_err(|e| crypt_fail(format_args!("upload {id}: new envelope"), e))?;
                let data_key = envelope
                    .data_key(keyring)
                    .map_err(|e| crypt_fail(format_args!("upload {id}: new envelope"), e))?;
                let hash = seal_hash(&data_key, id, &ResumableHasher::new(Algorithm::Sha256))?;
                let key = self.inner.envelope_key(id);
                match self
                    .inner
                    .s3
                    .put_opts(&key, envelope.to_bytes().into(), create())
                    .await
                {
                    Ok(_) => {}
                    Err(object_store::Error::AlreadyExists { .. }) => return Err(exists()),
                    Err(e) => return Err(self.inner.fail("PUT of new upload envelope", &key, e)),
                }
                UploadState::new_encrypted(self.inner.part_size, hash)
            }
        };
        let key = self.inner.state_key(id);
        let body = serde_json::to_vec(&state)
            .map_err(|e| BlobError::Io(io::Error::other(format!("upload state of {id}: {e}"))))?;
        match self.inner.s3.put_opts(&key, body.into(), create()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(exists()),
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
            Some(loaded) => Ok(loaded.state.plaintext_size()),
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
        let inner = &self.inner;
        let key = inner.blob_key(digest);
        let Some(size) = inner.head("HEAD of blob", &key).await? else {
            return Ok(None);
        };
        if inner.keyring.is_none() {
            return Ok(Some(size));
        }
        // The envelope after the blob: it is written before it.
        let envelope = inner.blob_envelope_key(digest);
        if inner
            .head("HEAD of blob envelope", &envelope)
            .await?
            .is_none()
        {
            return Ok(Some(size));
        }
        let plain = plaintext_len(size).map_err(|e| {
            crypt_fail(
                format_args!("blob {digest}: s3://{}/{key}", inner.bucket),
                e,
            )
        })?;
        Ok(Some(plain))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BlobError> {
        let inner = &self.inner;
        let key = inner.blob_key(digest);
        let what = format!("blob {digest}: s3://{}/{key}", inner.bucket);
        let get = |options: GetOptions| async {
            match inner.reader.get_opts(&key, options).await {
                Ok(r) => Ok(r),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(BlobError::BlobUnknown(digest.clone()))
                }
                Err(e) => Err(inner.fail("GET of blob", &key, e)),
            }
        };
        let stream_of =
            |result: object_store::GetResult| -> ByteStream {
                let what = format!("S3 GET of s3://{}/{key}", inner.bucket);
                Box::pin(result.into_stream().map_err(move |e| {
                    io::Error::other(format!("{what} failed while streaming: {e}"))
                }))
            };
        let decrypted = |stream: ByteStream| -> ByteStream {
            let what = what.clone();
            Box::pin(stream.map_err(move |e| io::Error::new(e.kind(), format!("{what}: {e}"))))
        };
        // The blob is looked at before its envelope, which is written before it: an
        // envelope missing after the blob was seen means an unencrypted blob.
        let Some(r) = range else {
            let result = get(GetOptions::default()).await?;
            let size = result.meta.size;
            let Some(data_key) = inner.blob_data_key(digest).await? else {
                return Ok(stream_of(result));
            };
            let plain = plaintext_len(size).map_err(|e| crypt_fail(&what, e))?;
            let decryptor =
                Decryptor::new(&data_key, 0..plain, plain).map_err(|e| crypt_fail(&what, e))?;
            return Ok(decrypted(decrypt_stream(decryptor, stream_of(result))));
        };
        let size = inner
            .head("HEAD of blob", &key)
            .await?
            .ok_or_else(|| BlobError::BlobUnknown(digest.clone()))?;
        let data_key = inner.blob_data_key(digest).await?;
        let plain = match &data_key {
            Some(_) => plaintext_len(size).map_err(|e| crypt_fail(&what, e))?,
            None => size,
        };
        if !(r.start < r.end && r.end <= plain) {
            return Err(BlobError::RangeNotSatisfiable {
                start: r.start,
                end: r.end,
                size: plain,
            });
        }
        let Some(data_key) = data_key else {
            let options = GetOptions {
                range: Some(GetRange::Bounded(r)),
                ..GetOptions::default()
            };
            return Ok(stream_of(get(options).await?));
        };
        let fetch = ciphertext_range(r.clone(), plain).map_err(|e| crypt_fail(&what, e))?;
        let decryptor = Decryptor::new(&data_key, r, plain).map_err(|e| crypt_fail(&what, e))?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(fetch)),
            ..GetOptions::default()
        };
        let result = get(options).await?;
        Ok(decrypted(decrypt_stream(decryptor, stream_of(result))))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        // The blob first: a visible blob always has its envelope.
        self.inner.delete_key(&self.inner.blob_key(digest)).await?;
        self.inner
            .delete_key(&self.inner.blob_envelope_key(digest))
            .await
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
        // An encrypted store's objects are ciphertext: no URL to them is handed out.
        if !self.inner.redirect || self.inner.keyring.is_some() {
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
