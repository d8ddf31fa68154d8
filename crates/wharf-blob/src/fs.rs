//! Filesystem backend of [`BlobStore`].
//!
//! Layout under the root directory:
//!
//! - `blobs/<alg>/<first 2 hex>/<hex>`: committed blobs. A file appears here only by an
//!   atomic rename of a fully written, verified and fsynced staging file.
//! - `uploads/<id>`: the bytes staged for upload `id`, appended in place.
//!
//! Appends stream in constant memory: the body is gathered into batches of about
//! [`BATCH`] bytes (no copying: a batch is a list of the body's own `Bytes`); each batch
//! goes to two workers, one hashing (sha256) and one writing with `writev`, which run in
//! parallel with each other and with the receipt of the next batches. A worker keeps its
//! blocking thread only while batches keep coming, and at most [`DEPTH`] batches wait for
//! it. Writeback to disk is started as batches are written, so the fsync at commit has
//! little left to do unless the client sends faster than the disk writes.
//!
//! The sha256 state of each upload stays in memory with a stamp of the staged file it
//! covers (identity, size, change time); when it is missing or out of step with the file
//! (restart, another process appended), it is rebuilt by reading the staged file.
//! Appends, commits and aborts of one upload are serialized by an in-process lock and by
//! an exclusive `flock` on the staged file, so several processes may share a root.
//!
//! # Encryption at rest
//!
//! A store opened with [`FsBlobStore::open_encrypted`] encrypts every new upload with
//! its own data key (`wharf_crypt` records of 64 KiB, AES-256-GCM). The staged file and
//! the blob hold only records; the envelope (the data key wrapped under the keyring's
//! current key) lives beside them as `uploads/<id>.envelope` and
//! `blobs/<alg>/<2 hex>/<hex>.envelope`, and the sealed partial segment of a staged
//! upload as `uploads/<id>.tail`. The batches of an append are encrypted on the writing
//! worker's thread while the hashing worker hashes the plaintext; reads decrypt on the
//! thread that reads. Blobs and uploads without an envelope, from before encryption was
//! enabled, are read and continued as plaintext. The files, the crash safety of appends
//! and commits, and resumption are described in the `encrypted` module. A store opened
//! with [`FsBlobStore::open`] knows nothing of envelopes: a root that holds encrypted
//! blobs must always be opened with its keyring.

use crate::{BlobError, BlobStore, ByteStream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinError;
use wharf_crypt::Keyring;
use wharf_oci::{Algorithm, Digest, Hasher};

mod encrypted;

/// Body bytes gathered before a batch is handed to the hashing and writing threads.
const BATCH: usize = 1 << 20;
/// Chunk size of blob reads.
const READ_CHUNK: usize = 1 << 20;
/// Buffer size when re-reading a staged file to rebuild a hash.
const REHASH_BUF: usize = 1 << 20;
/// Longest accepted upload id.
const MAX_ID_LEN: usize = 128;

/// What a staged file looked like when a hash state was taken of it. Any append by
/// anyone changes the size, and a file replaced by an abort and a new start under the
/// same id has another inode, size or change time (on filesystems with coarse
/// timestamps, a replacement by one of the same size that reuses the inode number
/// within one timestamp tick would go unnoticed; since Linux 6.13 ext4, xfs, btrfs and
/// tmpfs give a fresh change time once the previous one has been observed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

/// In-memory sha256 state of one staged upload, valid while the staging file still
/// matches `stamp` (and, for an encrypted upload, its tail file `tail`): for a
/// plaintext upload the hash of its first `stamp.size` bytes, for an encrypted one the
/// hash of its staged plaintext.
struct HashState {
    stamp: Stamp,
    tail: Option<Stamp>,
    hasher: Hasher,
}

/// Per-upload lock guarding the upload's hash state (if known).
type Slot = Arc<tokio::sync::Mutex<Option<HashState>>>;

/// A [`BlobStore`] keeping blobs and staged uploads in a local directory, optionally
/// encrypted at rest ([`FsBlobStore::open_encrypted`]).
pub struct FsBlobStore {
    root: PathBuf,
    uploads: Arc<Mutex<HashMap<String, Slot>>>,
    keyring: Option<Arc<Keyring>>,
}

impl FsBlobStore {
    /// Opens (creating it if needed) a blob store rooted at `root`, without encryption.
    /// A root that holds encrypted blobs must be opened with
    /// [`FsBlobStore::open_encrypted`].
    pub fn open(root: &Path) -> io::Result<FsBlobStore> {
        fs::create_dir_all(root.join("uploads"))?;
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = root.join("blobs").join(alg.name());
            fs::create_dir_all(&dir)?;
            // Every shard exists up front, so a commit only has to fsync the shard it
            // renames into.
            for shard in 0..=255u8 {
                match fs::create_dir(dir.join(format!("{shard:02x}"))) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
            sync_dir(&dir)?;
        }
        sync_dir(&root.join("blobs"))?;
        sync_dir(root)?;
        Ok(FsBlobStore {
            root: root.to_path_buf(),
            uploads: Arc::new(Mutex::new(HashMap::new())),
            keyring: None,
        })
    }

    /// Opens (creating it if needed) a blob store rooted at `root` that encrypts every
    /// new upload at rest: a random data key per upload, wrapped under `keyring`'s
    /// current key in an envelope stored beside the staging file and then beside the
    /// blob (see the module documentation). Blobs and uploads without an envelope,
    /// written before encryption was enabled, stay readable as plaintext.
    pub fn open_encrypted(root: &Path, keyring: Arc<Keyring>) -> io::Result<FsBlobStore> {
        let mut store = FsBlobStore::open(root)?;
        store.keyring = Some(keyring);
        Ok(store)
    }

    fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// The lock and hash state of upload `id`, created empty if not yet known.
    fn slot(&self, id: &str) -> Slot {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Forgets upload `id` once its staging file is gone.
    fn forget(&self, id: &str, slot: &Slot) {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(id);
        }
    }
}

impl FsBlobStore {
    /// [`BlobStore::read`] of a store with a keyring: encrypted blobs are decrypted,
    /// blobs without envelope read as they are.
    async fn read_encrypted(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
        keyring: Arc<Keyring>,
    ) -> Result<ByteStream, BlobError> {
        let (path, owned) = (self.blob_path(digest), digest.clone());
        let opened =
            tokio::task::spawn_blocking(move || encrypted::open_blob(&path, &owned, &keyring))
                .await
                .map_err(join_error)??;
        let Some(blob) = opened else {
            return Err(BlobError::BlobUnknown(digest.clone()));
        };
        let Some(key) = blob.key else {
            let size = blob.len;
            let (start, end) = match range {
                None => (0, size),
                Some(r) if r.start < r.end && r.end <= size => (r.start, r.end),
                Some(r) => {
                    return Err(BlobError::RangeNotSatisfiable {
                        start: r.start,
                        end: r.end,
                        size,
                    })
                }
            };
            return Ok(read_stream(blob.file, start, end));
        };
        let dec = encrypted::decryptor(&key, digest, blob.len, range)?;
        Ok(encrypted::read_stream(blob.file, dec, digest.clone()))
    }
}

/// True when `id` is a well-formed upload id: 1 to 128 of `[A-Za-z0-9_-]`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn join_error(e: JoinError) -> io::Error {
    io::Error::other(format!("blob store worker failed: {e}"))
}

fn file_id(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes an exclusive `flock` on `file`, waiting for other holders.
fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock takes no pointers; the descriptor is valid because `file` is
        // borrowed for the whole call. The lock belongs to `file`'s open file
        // description and is released when `file` is closed.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without
/// waiting. Best effort: the fsync at commit reports any real failure.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range takes no pointers; the descriptor is valid because `file`
    // is borrowed for the whole call; SYNC_FILE_RANGE_WRITE only schedules writeback.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Opens staged upload `path` (for appending if `append`), locks it exclusively and
/// checks that it is still the file at `path` (not committed or aborted meanwhile).
fn open_staged(path: &Path, id: &str, append: bool) -> Result<(File, Metadata), BlobError> {
    let unknown = || BlobError::UploadUnknown(id.to_string());
    // Retried only if the upload was aborted and started anew while we waited.
    for _ in 0..8 {
        let file = match OpenOptions::new().read(true).append(append).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        lock_exclusive(&file)?;
        let meta = file.metadata()?;
        match fs::symlink_metadata(path) {
            Ok(m) if file_id(&m) == file_id(&meta) => return Ok((file, meta)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(unknown())
}

/// Feeds bytes `from..to` of `file` to `hasher`.
fn hash_range(file: &File, hasher: &mut Hasher, from: u64, to: u64) -> io::Result<()> {
    let mut buf = vec![0u8; REHASH_BUF];
    let mut pos = from;
    while pos < to {
        let want = usize::try_from(to - pos).map_or(buf.len(), |n| n.min(buf.len()));
        let n = match file.read_at(&mut buf[..want], pos) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// The sha256 state of a locked staged `file` (with metadata `meta`): `state` if it is
/// still in step with the file, else rebuilt by reading the whole file.
fn hash_state(file: &File, meta: &Metadata, state: Option<HashState>) -> io::Result<HashState> {
    let stamp = Stamp::of(meta);
    if let Some(s) = state {
        if s.stamp == stamp {
            return Ok(s);
        }
    }
    if stamp.size > 0 {
        tracing::debug!(size = stamp.size, "rehashing staged upload");
    }
    let mut hasher = Algorithm::Sha256.hasher();
    hash_range(file, &mut hasher, 0, stamp.size)?;
    Ok(HashState {
        stamp,
        tail: None,
        hasher,
    })
}

/// Writes all of `bufs` to `file` with vectored writes.
fn write_all_bufs(file: &mut File, bufs: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let take = rest.len().min(1024);
        match file.write_vectored(&rest[..take]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Body chunks handed to the hashing and the writing worker together.
type Batch = Arc<Vec<Bytes>>;

/// Runs `step` over the batches given to [`Worker::submit`], in order, on a blocking
/// thread, threading a state `S` (a hasher, a file) through. The thread exists only
/// while batches keep coming (plus [`LINGER`]): a slow client does not hold a thread,
/// and a fast one does not pay a thread wake-up per batch. At most [`DEPTH`] batches
/// wait for a worker, which bounds the memory of an upload.
struct Worker<S: Send + 'static> {
    shared: Arc<WorkerShared<S>>,
    permits: Arc<Semaphore>,
    step: fn(&mut S, &[Bytes]) -> io::Result<()>,
}

struct WorkerShared<S> {
    inner: Mutex<WorkerInner<S>>,
    wake: Condvar,
}

struct WorkerInner<S> {
    queue: VecDeque<(Batch, OwnedSemaphorePermit)>,
    /// `None` only while a step runs, or for good after a step panicked.
    state: Option<S>,
    running: bool,
    error: Option<io::Error>,
}

impl<S> WorkerShared<S> {
    fn lock(&self) -> MutexGuard<'_, WorkerInner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Batches waiting for one worker, at most.
const DEPTH: u32 = 4;
/// How long an idle worker thread waits for the next batch before it ends.
const LINGER: Duration = Duration::from_millis(5);

impl<S: Send + 'static> Worker<S> {
    fn new(state: S, step: fn(&mut S, &[Bytes]) -> io::Result<()>) -> Self {
        let inner = WorkerInner {
            queue: VecDeque::new(),
            state: Some(state),
            running: false,
            error: None,
        };
        Worker {
            shared: Arc::new(WorkerShared {
                inner: Mutex::new(inner),
                wake: Condvar::new(),
            }),
            permits: Arc::new(Semaphore::new(DEPTH as usize)),
            step,
        }
    }

    /// Queues `batch`, waiting while [`DEPTH`] batches are queued. Fails with the error
    /// of an earlier step, after which nothing more is processed.
    async fn submit(&self, batch: Batch) -> io::Result<()> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("blob store worker closed"))?;
        let mut inner = self.shared.lock();
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        inner.queue.push_back((batch, permit));
        if inner.running {
            drop(inner);
            self.shared.wake.notify_one();
        } else {
            inner.running = true;
            drop(inner);
            let (shared, step) = (self.shared.clone(), self.step);
            tokio::task::spawn_blocking(move || work(&shared, step));
        }
        Ok(())
    }

    /// Waits until every queued batch is processed; returns the state (`None` if it was
    /// lost to a panic) and the first error.
    async fn finish(self) -> (Option<S>, io::Result<()>) {
        // Permits come back only after a step's state is put back (or the queue dropped).
        let _all = self.permits.acquire_many(DEPTH).await;
        let mut inner = self.shared.lock();
        let error = inner.error.take();
        match (inner.state.take(), error) {
            (state, Some(e)) => (state, Err(e)),
            (None, None) => (None, Err(io::Error::other("blob store worker failed"))),
            (state, None) => (state, Ok(())),
        }
    }
}

/// The body of a worker thread.
fn work<S>(shared: &WorkerShared<S>, step: fn(&mut S, &[Bytes]) -> io::Result<()>) {
    /// Leaves the worker restartable and its queue empty if a step panics.
    struct OnUnwind<'a, S>(&'a WorkerShared<S>, bool);
    impl<S> Drop for OnUnwind<'_, S> {
        fn drop(&mut self) {
            if !self.1 {
                let mut inner = self.0.lock();
                inner.running = false;
                inner.queue.clear();
                inner
                    .error
                    .get_or_insert_with(|| io::Error::other("blob store worker panicked"));
            }
        }
    }
    let mut on_unwind = OnUnwind(shared, false);
    let mut inner = shared.lock();
    loop {
        if let Some((batch, permit)) = inner.queue.pop_front() {
            let Some(mut state) = inner.state.take() else {
                inner.queue.clear();
                inner
                    .error
                    .get_or_insert_with(|| io::Error::other("blob store worker lost its state"));
                continue;
            };
            drop(inner);
            let result = step(&mut state, &batch);
            drop(batch);
            inner = shared.lock();
            inner.state = Some(state);
            if let Err(e) = result {
                inner.error.get_or_insert(e);
                inner.queue.clear();
            }
            drop(permit);
        } else {
            inner = match shared.wake.wait_timeout(inner, LINGER) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if inner.queue.is_empty() {
                inner.running = false;
                on_unwind.1 = true;
                return;
            }
        }
    }
}

/// The writing side of an append.
struct Writer {
    file: File,
    /// Size of the file.
    pos: u64,
    /// The file after the last write.
    stamp: Stamp,
}

/// Appends a batch and starts its writeback at once: when the client is slower than
/// the disk (the usual case) the fsync at commit then finds little left to write.
fn write_step(w: &mut Writer, batch: &[Bytes]) -> io::Result<()> {
    write_all_bufs(&mut w.file, batch)?;
    let len = batch.iter().map(|b| b.len() as u64).sum::<u64>();
    start_writeback(&w.file, w.pos, len);
    w.pos += len;
    w.stamp = Stamp::of(&w.file.metadata()?);
    Ok(())
}

fn hash_step(h: &mut Hasher, batch: &[Bytes]) -> io::Result<()> {
    for b in batch {
        h.update(b);
    }
    Ok(())
}

/// What an append found under the upload's lock.
enum Opened {
    /// A plaintext upload.
    Plain(File, HashState),
    /// An encrypted upload, its writer and the hash state of its staged plaintext.
    Encrypted(Box<encrypted::EncWriter>, Stamp, Option<Stamp>, Hasher),
}

/// The body of [`FsBlobStore::append_upload`], run as its own task so that it completes
/// (and leaves lock and hash state consistent) even if the caller stops waiting.
async fn append_task(
    dir: PathBuf,
    id: String,
    offset: u64,
    data: ByteStream,
    slot: Slot,
    keyring: Option<Arc<Keyring>>,
) -> Result<u64, BlobError> {
    let guard = slot.lock_owned().await;
    let (opened, guard) = {
        let (id, dir) = (id.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard = guard;
            let (file, meta) = open_staged(&dir.join(&id), &id, true)?;
            let staged = match &keyring {
                Some(keyring) => encrypted::load(&dir, &id, &file, keyring)?,
                None => None,
            };
            let Some(st) = staged else {
                let size = meta.len();
                if size != offset {
                    return Err(BlobError::OffsetMismatch { id, offset, size });
                }
                let state = hash_state(&file, &meta, guard.take())?;
                return Ok((Opened::Plain(file, state), guard));
            };
            if st.plain_len != offset {
                let size = st.plain_len;
                return Err(BlobError::OffsetMismatch { id, offset, size });
            }
            let state = encrypted::sha256_state(&file, &st, &id, guard.take())?;
            let writer = encrypted::EncWriter::resume(file, &st, &id)?;
            let opened = Opened::Encrypted(Box::new(writer), state.stamp, state.tail, state.hasher);
            Ok((opened, guard))
        })
        .await
        .map_err(join_error)??
    };
    match opened {
        Opened::Plain(file, state) => append_plain(file, state, data, guard).await,
        Opened::Encrypted(writer, stamp, tail, hasher) => {
            append_encrypted(dir, *writer, stamp, tail, hasher, data, guard).await
        }
    }
}

/// The outcome of [`pump`]: bytes staged, and the body's and the workers' errors.
struct Pumped {
    staged: u64,
    body_error: Option<io::Error>,
    io_error: Option<io::Error>,
}

/// Streams `data` in batches to the writing and hashing workers.
async fn pump<W: Send + 'static>(
    mut data: ByteStream,
    writer: &Worker<W>,
    hashing: &Worker<Hasher>,
    mut staged: u64,
) -> Pumped {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut body_error = None;
    let mut io_error = None;
    loop {
        let end = match data.next().await {
            Some(Ok(b)) => {
                if !b.is_empty() {
                    batch_len += b.len();
                    batch.push(b);
                }
                false
            }
            Some(Err(e)) => {
                body_error = Some(e);
                true
            }
            None => true,
        };
        if batch_len >= BATCH || (end && batch_len > 0) {
            let full = Arc::new(std::mem::take(&mut batch));
            if let Err(e) = writer.submit(full.clone()).await {
                io_error = Some(e);
                break;
            }
            if let Err(e) = hashing.submit(full).await {
                io_error = Some(e);
                break;
            }
            staged += batch_len as u64;
            batch_len = 0;
        }
        if end {
            break;
        }
    }
    Pumped {
        staged,
        body_error,
        io_error,
    }
}

/// Appends to a plaintext upload.
async fn append_plain(
    file: File,
    state: HashState,
    data: ByteStream,
    mut guard: tokio::sync::OwnedMutexGuard<Option<HashState>>,
) -> Result<u64, BlobError> {
    let HashState { stamp, hasher, .. } = state;
    let writer = Worker::new(
        Writer {
            file,
            pos: stamp.size,
            stamp,
        },
        write_step,
    );
    let hashing = Worker::new(hasher, hash_step);
    let Pumped {
        staged,
        body_error,
        io_error,
    } = pump(data, &writer, &hashing, stamp.size).await;
    let (written, write_result) = writer.finish().await;
    let (hasher, hash_result) = hashing.finish().await;
    let result = write_result.and(hash_result);
    if let Some(e) = io_error.or(result.err()) {
        // The file may hold part of a batch: leave the hash to be rebuilt from it.
        *guard = None;
        return Err(BlobError::Io(e));
    }
    *guard = match (written, hasher) {
        (Some(w), Some(hasher)) if w.stamp.size == staged && w.pos == staged => Some(HashState {
            stamp: w.stamp,
            tail: None,
            hasher,
        }),
        _ => None,
    };
    match body_error {
        Some(e) => Err(BlobError::Body(e)),
        None => Ok(staged),
    }
}

/// Appends to an encrypted upload: records are encrypted and written on the writer's
/// thread while the plaintext is hashed on another; at the end the pending plaintext is
/// sealed and published as the upload's new tail. If writing fails, nothing of this
/// append is published (the upload stays as it was before it).
async fn append_encrypted(
    dir: PathBuf,
    writer: encrypted::EncWriter,
    stamp: Stamp,
    tail: Option<Stamp>,
    hasher: Hasher,
    data: ByteStream,
    mut guard: tokio::sync::OwnedMutexGuard<Option<HashState>>,
) -> Result<u64, BlobError> {
    let start = writer.plain_len();
    let writer = Worker::new(writer, encrypted::encrypt_step);
    let hashing = Worker::new(hasher, hash_step);
    let Pumped {
        staged,
        body_error,
        io_error,
    } = pump(data, &writer, &hashing, start).await;
    let (written, write_result) = writer.finish().await;
    let (hasher, hash_result) = hashing.finish().await;
    let result = write_result.and(hash_result);
    if let Some(e) = io_error.or(result.err()) {
        *guard = None;
        return Err(BlobError::Io(e));
    }
    let (Some(mut w), Some(hasher)) = (written, hasher) else {
        *guard = None;
        return Err(BlobError::Io(io::Error::other(
            "blob store worker lost its state",
        )));
    };
    if w.plain_len() != staged {
        *guard = None;
        return Err(BlobError::Io(io::Error::other(format!(
            "encrypted {} of {staged} bytes received",
            w.plain_len()
        ))));
    }
    if staged == start {
        *guard = Some(HashState {
            stamp,
            tail,
            hasher,
        });
    } else {
        let published = tokio::task::spawn_blocking(move || encrypted::publish(&dir, &mut w))
            .await
            .map_err(join_error)?;
        match published {
            Ok((stamp, tail)) => {
                *guard = Some(HashState {
                    stamp,
                    tail: Some(tail),
                    hasher,
                })
            }
            Err(e) => {
                *guard = None;
                return Err(BlobError::Io(e));
            }
        }
    }
    match body_error {
        Some(e) => Err(BlobError::Body(e)),
        None => Ok(staged),
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn start_upload(&self, id: &str) -> Result<(), BlobError> {
        self.start_upload_for_key(id, None).await
    }

    async fn start_upload_for_key(&self, id: &str, key: Option<&str>) -> Result<(), BlobError> {
        if !valid_id(id) {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upload id {id:?} is not 1 to {MAX_ID_LEN} characters of A-Za-z0-9_-"),
            )));
        }
        if let Some(keyring) = self.keyring.clone() {
            let (dir, id_owned) = (self.uploads_dir(), id.to_string());
            let key = key.map(str::to_string);
            let state = tokio::task::spawn_blocking(move || {
                encrypted::start(&dir, &id_owned, &keyring, key.as_deref())
            })
            .await
            .map_err(join_error)??;
            *self.slot(id).lock().await = Some(state);
            return Ok(());
        }
        let path = self.upload_path(id);
        let state = tokio::task::spawn_blocking(move || -> io::Result<HashState> {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            Ok(HashState {
                stamp: Stamp::of(&file.metadata()?),
                tail: None,
                hasher: Algorithm::Sha256.hasher(),
            })
        })
        .await
        .map_err(join_error)??;
        *self.slot(id).lock().await = Some(state);
        Ok(())
    }

    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<u64, BlobError> {
        if !valid_id(id) {
            return Err(BlobError::UploadUnknown(id.to_string()));
        }
        let slot = self.slot(id);
        let task = append_task(
            self.uploads_dir(),
            id.to_string(),
            offset,
            data,
            slot.clone(),
            self.keyring.clone(),
        );
        let result = tokio::spawn(task).await.map_err(join_error)?;
        if let Err(BlobError::UploadUnknown(_)) = result {
            self.forget(id, &slot);
        }
        result
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        if !valid_id(id) {
            return Err(BlobError::UploadUnknown(id.to_string()));
        }
        if self.keyring.is_some() {
            let (dir, id) = (self.uploads_dir(), id.to_string());
            return tokio::task::spawn_blocking(move || {
                let len = match fs::metadata(dir.join(&id)) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(BlobError::UploadUnknown(id))
                    }
                    Err(e) => return Err(e.into()),
                };
                // A staging file without envelope is a plaintext upload.
                Ok(encrypted::upload_size(&dir, &id)?.unwrap_or(len))
            })
            .await
            .map_err(join_error)?;
        }
        match tokio::fs::metadata(self.upload_path(id)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::UploadUnknown(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<u64, BlobError> {
        if !valid_id(id) {
            return Err(BlobError::UploadUnknown(id.to_string()));
        }
        let slot = self.slot(id);
        let mut guard = slot.clone().lock_owned().await;
        let path = self.upload_path(id);
        let dest = self.blob_path(digest);
        let (id_owned, expected) = (id.to_string(), digest.clone());
        let (dir, keyring) = (self.uploads_dir(), self.keyring.clone());
        let result = tokio::task::spawn_blocking(move || -> Result<u64, BlobError> {
            let (file, meta) = open_staged(&path, &id_owned, keyring.is_some())?;
            if let Some(keyring) = &keyring {
                if let Some(st) = encrypted::load(&dir, &id_owned, &file, keyring)? {
                    let state = guard.take();
                    return encrypted::commit(
                        &dir,
                        &id_owned,
                        file,
                        st,
                        state,
                        (expected, &dest),
                        keyring,
                    );
                }
            }
            let size = meta.len();
            let computed = match expected.algorithm() {
                Algorithm::Sha256 => hash_state(&file, &meta, guard.take())?.hasher.finish(),
                alg => {
                    let mut hasher = alg.hasher();
                    hash_range(&file, &mut hasher, 0, size)?;
                    hasher.finish()
                }
            };
            *guard = None;
            if computed != expected {
                fs::remove_file(&path)?;
                return Err(BlobError::DigestMismatch { expected, computed });
            }
            match fs::symlink_metadata(&dest) {
                Ok(_) => {
                    // Already stored: blobs are immutable and content-addressed.
                    fs::remove_file(&path)?;
                    return Ok(size);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            file.sync_data()?;
            let shard = dest
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            if let Err(e) = fs::rename(&path, &dest) {
                if e.kind() != io::ErrorKind::NotFound || shard.exists() {
                    return Err(e.into());
                }
                // The shard directory went missing: recreate it durably and retry.
                fs::create_dir_all(shard)?;
                if let Some(alg_dir) = shard.parent() {
                    sync_dir(alg_dir)?;
                }
                fs::rename(&path, &dest)?;
            }
            sync_dir(shard)?;
            Ok(size)
        })
        .await
        .map_err(join_error)?;
        if !matches!(result, Err(BlobError::Io(_))) {
            self.forget(id, &slot);
        }
        result
    }

    async fn abort_upload(&self, id: &str) -> Result<(), BlobError> {
        if !valid_id(id) {
            // Such an id can never have been started, so it is unknown.
            return Ok(());
        }
        let slot = self.slot(id);
        let guard = slot.clone().lock_owned().await;
        let path = self.upload_path(id);
        let id_owned = id.to_string();
        let (dir, encrypt) = (self.uploads_dir(), self.keyring.is_some());
        let result = tokio::task::spawn_blocking(move || -> Result<(), BlobError> {
            let _guard = guard;
            // Locking first lets an append in flight in another process finish.
            let _file = match open_staged(&path, &id_owned, false) {
                Ok((file, _)) => file,
                Err(BlobError::UploadUnknown(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if encrypt {
                let _envelope = encrypted::lock_envelope(&dir, &id_owned)?;
                return Ok(encrypted::remove_upload(&dir, &id_owned)?);
            }
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        })
        .await
        .map_err(join_error)?;
        if result.is_ok() {
            self.forget(id, &slot);
        }
        result
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        if self.keyring.is_some() {
            let (path, digest) = (self.blob_path(digest), digest.clone());
            return tokio::task::spawn_blocking(move || encrypted::stat(&path, &digest))
                .await
                .map_err(join_error)?
                .map_err(BlobError::Io);
        }
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, BlobError> {
        if let Some(keyring) = self.keyring.clone() {
            return self.read_encrypted(digest, range, keyring).await;
        }
        let file = match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::BlobUnknown(digest.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let (start, end) = match range {
            None => (0, size),
            Some(r) if r.start < r.end && r.end <= size => (r.start, r.end),
            Some(r) => {
                return Err(BlobError::RangeNotSatisfiable {
                    start: r.start,
                    end: r.end,
                    size,
                })
            }
        };
        let file = file.into_std().await;
        Ok(read_stream(file, start, end))
    }

    async fn grant_key(&self, digest: &Digest, key: Option<&str>) -> Result<bool, BlobError> {
        let Some(keyring) = self.keyring.clone() else {
            return Ok(false);
        };
        let key = key.unwrap_or(keyring.current_id()).to_string();
        let (path, digest) = (self.blob_path(digest), digest.clone());
        tokio::task::spawn_blocking(move || {
            encrypted::update_envelope(&path, &digest, |env| env.add_wrap(&keyring, &key))
        })
        .await
        .map_err(join_error)?
    }

    async fn rotate_keys(&self, digest: &Digest) -> Result<bool, BlobError> {
        let Some(keyring) = self.keyring.clone() else {
            return Ok(false);
        };
        let (path, digest) = (self.blob_path(digest), digest.clone());
        tokio::task::spawn_blocking(move || {
            encrypted::update_envelope(&path, &digest, |env| env.rotate(&keyring))
        })
        .await
        .map_err(join_error)?
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        if self.keyring.is_some() {
            let path = self.blob_path(digest);
            return tokio::task::spawn_blocking(move || encrypted::delete(&path))
                .await
                .map_err(join_error)?
                .map_err(BlobError::Io);
        }
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list_uploads(&self) -> Result<Vec<String>, BlobError> {
        let dir = self.root.join("uploads");
        let ids = tokio::task::spawn_blocking(move || -> io::Result<Vec<String>> {
            let mut ids = Vec::new();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str() {
                    if valid_id(name) && entry.file_type()?.is_file() {
                        ids.push(name.to_string());
                    }
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await
        .map_err(join_error)??;
        Ok(ids)
    }
}

/// Streams `start..end` of `file`, read by one blocking task that runs ahead of the
/// consumer by a few chunks (one task per read, not one per chunk).
fn read_stream(mut file: std::fs::File, start: u64, end: u64) -> ByteStream {
    use std::io::{Read, Seek};
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if start > 0 {
            if let Err(e) = file.seek(io::SeekFrom::Start(start)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
        let mut left = end - start;
        while left > 0 {
            let n = left.min(READ_CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            let item = file.read_exact(&mut buf).map(|_| Bytes::from(buf));
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
            left -= n as u64;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests {
    use super::{valid_id, Worker};
    use bytes::Bytes;
    use std::io;
    use std::sync::Arc;

    fn batch(i: u8) -> super::Batch {
        Arc::new(vec![Bytes::from(vec![i])])
    }

    /// Records the batches it sees; fails on batch 3 and panics on batch 200.
    fn step(seen: &mut Vec<u8>, batch: &[Bytes]) -> io::Result<()> {
        match batch[0][0] {
            3 => Err(io::Error::other("boom")),
            200 => panic!("step panics (on purpose)"),
            v => {
                seen.push(v);
                Ok(())
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn worker_runs_in_order_and_stops_at_first_error() {
        let w = Worker::new(Vec::new(), step);
        let failed_at = async {
            for i in 0..100u8 {
                if let Err(e) = w.submit(batch(i)).await {
                    assert_eq!(e.to_string(), "boom");
                    return Some(i);
                }
                if i == 1 {
                    // Let the thread go idle and end, so it is started anew.
                    tokio::time::sleep(super::LINGER * 4).await;
                }
            }
            None
        }
        .await;
        // Batch 3 failed; at most DEPTH more were queued (and dropped) before a
        // submit saw the error.
        let failed_at = failed_at.expect("the error reached submit");
        assert!(
            (4..=4 + super::DEPTH as u8).contains(&failed_at),
            "{failed_at}"
        );
        let (state, result) = w.finish().await;
        assert!(result.is_ok(), "the error was already reported");
        assert_eq!(state.expect("state"), vec![0, 1, 2]);

        let w = Worker::new(Vec::new(), step);
        for i in 0..10u8 {
            if i != 3 {
                w.submit(batch(i)).await.expect("submit");
            }
        }
        let (state, result) = w.finish().await;
        assert!(result.is_ok());
        assert_eq!(state.expect("state"), vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn worker_survives_a_panicking_step() {
        let w = Worker::new(Vec::new(), step);
        w.submit(batch(1)).await.expect("submit");
        w.submit(batch(200)).await.expect("submit");
        let (state, result) = w.finish().await;
        assert!(state.is_none(), "the state is lost with the panic");
        assert!(result.is_err());
    }

    #[test]
    fn upload_ids() {
        assert!(valid_id("aZ09_-"));
        assert!(valid_id(&"a".repeat(128)));
        for bad in ["", "..", "../x", "a/b", "a.b", "a b", "ä", &"a".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?} accepted");
        }
    }
}
