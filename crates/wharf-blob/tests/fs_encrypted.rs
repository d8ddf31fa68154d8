//! [`FsBlobStore`] with encryption at rest: the shared suite, nothing in the clear on
//! disk, resumption across restarts and processes, tampering, plaintext blobs from
//! before encryption, the files it keeps.

use bytes::Bytes;
use futures::{stream, StreamExt};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wharf_blob::{testsuite, BlobError, BlobStore, ByteStream, FsBlobStore};
use wharf_crypt::{ciphertext_len, Keyring, RECORD_LEN, SEGMENT};
use wharf_oci::{Algorithm, Digest};

const KEY: &str = "default AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
const OTHER_KEY: &str = "default HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=\n";

fn keyring(text: &str) -> Arc<Keyring> {
    Arc::new(Keyring::parse(text, "test").unwrap())
}

fn open(root: &Path) -> FsBlobStore {
    FsBlobStore::open_encrypted(root, keyring(KEY)).unwrap()
}

fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

/// A body of `data` in chunks of the given sizes, cycling through them.
fn awkward(data: &[u8], sizes: &[usize]) -> ByteStream {
    let mut chunks = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + n).min(data.len());
        chunks.push(Ok(Bytes::copy_from_slice(&data[at..end])));
        at = end;
    }
    Box::pin(stream::iter(chunks))
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn read_range(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>, String> {
    let mut s = store
        .read(digest, range)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.map_err(|e| format!("stream: {e}"))?);
    }
    Ok(out)
}

async fn read_all(store: &dyn BlobStore, digest: &Digest) -> Vec<u8> {
    read_range(store, digest, None).await.unwrap()
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    root.join(format!(
        "blobs/{}/{}/{hex}",
        digest.algorithm().name(),
        &hex[..2]
    ))
}

fn envelope_of(blob: &Path) -> PathBuf {
    let mut name = blob.file_name().unwrap().to_os_string();
    name.push(".envelope");
    blob.with_file_name(name)
}

/// Every committed blob has its envelope beside it (and no envelope is alone).
fn assert_envelopes(root: &Path) {
    let files = files_under(&root.join("blobs"));
    let set: HashSet<&PathBuf> = files.iter().collect();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if let Some(data) = name.strip_suffix(".envelope") {
            assert!(
                set.contains(&f.with_file_name(data)),
                "{} has no blob",
                f.display()
            );
        } else {
            assert!(
                set.contains(&envelope_of(f)),
                "blob {} has no envelope",
                f.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    testsuite::run_all(&store).await;
    assert_envelopes(dir.path());
    let store = open(dir.path());
    testsuite::run_all(&store).await;
    assert_envelopes(dir.path());
}

#[tokio::test(flavor = "current_thread")]
async fn shared_suite_single_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    testsuite::run_all(&open(dir.path())).await;
    assert_envelopes(dir.path());
}

/// 61 bytes repeated: every 32-byte window of the plaintext is one of 61.
const PATTERN: &[u8; 61] = b"PLAINTEXT-MUST-NOT-BE-ON-DISK:0123456789abcdefghijklmnopqrstu";

fn pattern(len: usize) -> Vec<u8> {
    PATTERN.iter().copied().cycle().take(len).collect()
}

/// Fails if any file under `root` contains 32 consecutive bytes of the pattern.
fn assert_no_plaintext(root: &Path, when: &str) {
    let doubled = pattern(PATTERN.len() + 32);
    let windows: HashSet<&[u8]> = (0..PATTERN.len()).map(|i| &doubled[i..i + 32]).collect();
    let mut scanned = 0;
    for f in files_under(root) {
        let bytes = std::fs::read(&f).unwrap();
        scanned += bytes.len();
        if let Some(at) = bytes.windows(32).position(|w| windows.contains(w)) {
            panic!("{when}: plaintext in {} at offset {at}", f.display());
        }
    }
    assert!(scanned > 0, "{when}: nothing on disk to scan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let len = 3 * SEGMENT + 12_345 + 4 * 1024 * 1024;
    let data = pattern(len);
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("pat").await.unwrap();
    // Appends ending inside a segment, exactly on a segment boundary, one byte after,
    // with chunks of 1, 7, 65535, 65537 and 100003 bytes.
    let cuts = [
        1,
        SEGMENT - 5,
        SEGMENT,
        2 * SEGMENT + 1,
        2 * SEGMENT + 2,
        3 * SEGMENT + 12_345,
        len,
    ];
    let mut at = 0;
    for (i, &cut) in cuts.iter().enumerate() {
        let sizes: &[usize] = match i % 3 {
            0 => &[1, 7, 65_535],
            1 => &[65_537, 3],
            _ => &[100_003, 1, 7],
        };
        let size = store
            .append_upload("pat", at as u64, awkward(&data[at..cut], sizes))
            .await
            .unwrap();
        assert_eq!(size, cut as u64);
        assert_eq!(store.upload_size("pat").await.unwrap(), cut as u64);
        assert_no_plaintext(dir.path(), &format!("staged {cut} bytes"));
        at = cut;
    }
    // Another upload of the same content, left staged, and a body that fails midway.
    store.start_upload("pat2").await.unwrap();
    let mut chunks: Vec<io::Result<Bytes>> = data[..200_000]
        .chunks(999)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(io::Error::other("client went away")));
    assert!(matches!(
        store
            .append_upload("pat2", 0, Box::pin(stream::iter(chunks)))
            .await,
        Err(BlobError::Body(_))
    ));
    assert_eq!(store.upload_size("pat2").await.unwrap(), 200_000);
    assert_no_plaintext(dir.path(), "failed body");

    assert_eq!(
        store.commit_upload("pat", &digest).await.unwrap(),
        len as u64
    );
    assert_no_plaintext(dir.path(), "committed");
    assert!(read_all(&store, &digest).await == data);
    let blob = blob_path(dir.path(), &digest);
    assert_eq!(
        std::fs::metadata(&blob).unwrap().len(),
        ciphertext_len(len as u64).unwrap()
    );
    store.abort_upload("pat2").await.unwrap();
    assert_no_plaintext(dir.path(), "end");
    assert_envelopes(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(1, 100_000);
    let digest = Algorithm::Sha256.digest(&data);
    let up = dir.path().join("uploads");
    store.start_upload("lay").await.unwrap();
    assert!(up.join("lay").is_file() && up.join("lay.envelope").is_file());
    assert_eq!(std::fs::metadata(up.join("lay")).unwrap().len(), 0);
    assert!(!up.join("lay.tail").exists());
    store
        .append_upload("lay", 0, body(&data, 4096))
        .await
        .unwrap();
    // One complete record in the staging file, the rest in the tail.
    assert_eq!(
        std::fs::metadata(up.join("lay")).unwrap().len(),
        RECORD_LEN as u64
    );
    assert_eq!(
        std::fs::metadata(up.join("lay.tail")).unwrap().len(),
        (12 + 28 + data.len() - SEGMENT) as u64
    );
    assert_eq!(store.list_uploads().await.unwrap(), vec!["lay"]);
    store.commit_upload("lay", &digest).await.unwrap();
    let names: Vec<_> = std::fs::read_dir(&up).unwrap().collect();
    assert!(names.is_empty(), "uploads/ left: {names:?}");
    let blob = blob_path(dir.path(), &digest);
    assert_eq!(
        std::fs::metadata(&blob).unwrap().len(),
        ciphertext_len(data.len() as u64).unwrap()
    );
    assert!(envelope_of(&blob).is_file());
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    store.delete(&digest).await.unwrap();
    assert!(!blob.exists() && !envelope_of(&blob).exists());
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

/// A new store on the same root continues an upload of the old one, whose hash state
/// is rebuilt by decrypting the staged records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_upload() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2, 3_000_000);
    let digest = Algorithm::Sha256.digest(&data);
    let split = 1_234_567;
    {
        let old = open(dir.path());
        for id in ["up1", "up2", "up3"] {
            old.start_upload(id).await.unwrap();
        }
        old.append_upload("up1", 0, awkward(&data[..split], &[65_537, 13]))
            .await
            .unwrap();
        old.append_upload("up2", 0, body(&data, 65536))
            .await
            .unwrap();
        old.append_upload("up3", 0, body(&data, 100_000))
            .await
            .unwrap();
    }
    let new = open(dir.path());
    assert_eq!(new.list_uploads().await.unwrap(), vec!["up1", "up2", "up3"]);
    assert_eq!(new.upload_size("up1").await.unwrap(), split as u64);
    let size = new
        .append_upload("up1", split as u64, body(&data[split..], 65536))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(new.commit_upload("up1", &digest).await.unwrap(), size);
    assert!(read_all(&new, &digest).await == data);

    // Committed straight after the restart with a wrong digest: the computed one is
    // still right.
    let wrong = Algorithm::Sha256.digest(b"nope");
    match new.commit_upload("up2", &wrong).await {
        Err(BlobError::DigestMismatch { computed, .. }) => assert_eq!(computed, digest),
        other => panic!("{other:?}"),
    }
    // And as sha512, which is always computed from the staged records.
    let d512 = Algorithm::Sha512.digest(&data);
    assert_eq!(
        new.commit_upload("up3", &d512).await.unwrap(),
        data.len() as u64
    );
    assert!(read_all(&new, &d512).await == data);
    assert_envelopes(dir.path());
}

/// Two stores (two processes) appending to the same upload in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_share_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    let data = content(3, 2_500_000);
    let digest = Algorithm::Sha256.digest(&data);
    a.start_upload("shared").await.unwrap();
    a.append_upload("shared", 0, body(&data[..1_000_000], 4096))
        .await
        .unwrap();
    b.append_upload("shared", 1_000_000, body(&data[1_000_000..2_000_000], 4095))
        .await
        .unwrap();
    match a
        .append_upload("shared", 1_000_000, body(&data[2_000_000..], 4096))
        .await
    {
        Err(BlobError::OffsetMismatch { size, .. }) => assert_eq!(size, 2_000_000),
        other => panic!("{other:?}"),
    }
    a.append_upload("shared", 2_000_000, body(&data[2_000_000..], 4096))
        .await
        .unwrap();
    assert_eq!(
        a.commit_upload("shared", &digest).await.unwrap(),
        data.len() as u64
    );
    assert!(matches!(
        b.append_upload("shared", 2_500_000, body(b"x", 1)).await,
        Err(BlobError::UploadUnknown(_))
    ));
    assert!(read_all(&b, &digest).await == data);

    // Aborted by one store and restarted under the same id by the other: the first
    // store's stale hash state (and the old envelope) must not be reused.
    a.start_upload("reused").await.unwrap();
    a.append_upload("reused", 0, body(b"old content", 4))
        .await
        .unwrap();
    b.abort_upload("reused").await.unwrap();
    b.start_upload("reused").await.unwrap();
    b.append_upload("reused", 0, body(b"new content, longer", 4))
        .await
        .unwrap();
    let want = Algorithm::Sha256.digest(b"new content, longer");
    assert_eq!(a.commit_upload("reused", &want).await.unwrap(), 19);
    assert!(read_all(&a, &want).await == b"new content, longer");
}

/// An append that died after writing records but before publishing its tail (a crash)
/// leaves the upload as it was before that append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_append_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(9, 500_000);
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("crash").await.unwrap();
    store
        .append_upload("crash", 0, body(&data[..200_000], 7777))
        .await
        .unwrap();
    // What a dying append leaves: whole and partial records after the published ones.
    let staged = dir.path().join("uploads/crash");
    let before = std::fs::read(&staged).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&staged)
        .unwrap();
    io::Write::write_all(&mut f, &vec![0xAB; 2 * RECORD_LEN + 100]).unwrap();
    drop(f);
    let fresh = open(dir.path());
    assert_eq!(fresh.upload_size("crash").await.unwrap(), 200_000);
    fresh
        .append_upload("crash", 200_000, body(&data[200_000..], 10_000))
        .await
        .unwrap();
    assert_eq!(
        fresh.commit_upload("crash", &digest).await.unwrap(),
        500_000
    );
    assert!(read_all(&fresh, &digest).await == data);
    assert!(before.len().is_multiple_of(RECORD_LEN));

    // A staging file that lost records the tail refers to is refused, not misread.
    store.start_upload("lost").await.unwrap();
    store
        .append_upload("lost", 0, body(&data, 100_000))
        .await
        .unwrap();
    let staged = dir.path().join("uploads/lost");
    let len = std::fs::metadata(&staged).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_len(len - RECORD_LEN as u64)
        .unwrap();
    let fresh = open(dir.path());
    match fresh.append_upload("lost", 500_000, body(b"x", 1)).await {
        Err(BlobError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("upload lost"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    fresh.abort_upload("lost").await.unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_blob_fails_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(4, 5 * SEGMENT + 1000);
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("t").await.unwrap();
    store
        .append_upload("t", 0, body(&data, 65536))
        .await
        .unwrap();
    store.commit_upload("t", &digest).await.unwrap();
    let blob = blob_path(dir.path(), &digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[2 * RECORD_LEN + 500] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();

    let err = read_range(&store, &digest, None).await.unwrap_err();
    assert!(err.contains("record 2"), "{err}");
    assert!(err.contains(&digest.to_string()), "{err}");
    let seg = SEGMENT as u64;
    let err = read_range(&store, &digest, Some(2 * seg + 10..2 * seg + 20))
        .await
        .unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    // Records that were not touched still read.
    for r in [0..2 * seg, 3 * seg..data.len() as u64, 100..seg + 100] {
        let got = read_range(&store, &digest, Some(r.clone())).await.unwrap();
        assert!(got == data[r.start as usize..r.end as usize], "{r:?}");
    }

    // A truncated blob: the full read notices the missing final record.
    std::fs::write(&blob, &bytes[..2 * RECORD_LEN]).unwrap();
    let err = read_range(&store, &digest, None).await.unwrap_err();
    assert!(err.contains("truncated"), "{err}");

    // An altered envelope: the key does not unwrap.
    let env = envelope_of(&blob);
    let mut e = std::fs::read(&env).unwrap();
    let last = e.len() - 1;
    e[last] ^= 0x80;
    std::fs::write(&env, &e).unwrap();
    match store.read(&digest, None).await {
        Err(BlobError::Io(e)) => assert!(e.to_string().contains("envelope"), "{e}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("read with an altered envelope succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_keyring_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(5, 10_000);
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("k").await.unwrap();
    store.append_upload("k", 0, body(&data, 999)).await.unwrap();
    store.commit_upload("k", &digest).await.unwrap();
    store.start_upload("k2").await.unwrap();
    store
        .append_upload("k2", 0, body(&data, 999))
        .await
        .unwrap();

    let other = FsBlobStore::open_encrypted(dir.path(), keyring(OTHER_KEY)).unwrap();
    match other.read(&digest, None).await {
        Err(BlobError::Io(e)) => {
            let msg = e.to_string();
            assert!(msg.contains(&digest.to_string()), "{msg}");
            assert!(msg.contains("wrapped only under key versions"), "{msg}");
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("read under another keyring succeeded"),
    }
    match other.append_upload("k2", 10_000, body(b"x", 1)).await {
        Err(BlobError::Io(e)) => assert!(e.to_string().contains("upload k2"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// Blobs and uploads from before encryption was enabled stay usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_from_before_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(6, 300_000);
    let digest = Algorithm::Sha256.digest(&data);
    let later = content(7, 200_000);
    let later_digest = Algorithm::Sha256.digest(&later);
    {
        let plain = FsBlobStore::open(dir.path()).unwrap();
        plain.start_upload("old").await.unwrap();
        plain
            .append_upload("old", 0, body(&data, 4096))
            .await
            .unwrap();
        plain.commit_upload("old", &digest).await.unwrap();
        plain.start_upload("inflight").await.unwrap();
        plain
            .append_upload("inflight", 0, body(&later[..50_000], 4096))
            .await
            .unwrap();
    }
    let blob = blob_path(dir.path(), &digest);
    assert_eq!(std::fs::read(&blob).unwrap(), data);
    let store = open(dir.path());
    assert_eq!(store.stat(&digest).await.unwrap(), Some(300_000));
    assert!(read_all(&store, &digest).await == data);
    let got = read_range(&store, &digest, Some(1000..250_000))
        .await
        .unwrap();
    assert!(got == data[1000..250_000]);
    assert!(matches!(
        store.read(&digest, Some(0..300_001)).await,
        Err(BlobError::RangeNotSatisfiable { size: 300_000, .. })
    ));

    // An upload in flight when encryption was enabled is finished as it began.
    assert_eq!(store.upload_size("inflight").await.unwrap(), 50_000);
    store
        .append_upload("inflight", 50_000, body(&later[50_000..], 4096))
        .await
        .unwrap();
    store
        .commit_upload("inflight", &later_digest)
        .await
        .unwrap();
    assert!(read_all(&store, &later_digest).await == later);

    // A new upload of the content of a plaintext blob: the blob is kept as it is.
    store.start_upload("again").await.unwrap();
    store
        .append_upload("again", 0, body(&data, 7))
        .await
        .unwrap();
    store.commit_upload("again", &digest).await.unwrap();
    assert_eq!(std::fs::read(&blob).unwrap(), data);
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

/// A start of an id whose envelope was left behind (a crash between placing the
/// envelope and creating the staging file) replaces the orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_envelope_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let up = dir.path().join("uploads");
    std::fs::write(up.join("orph.envelope"), b"left over").unwrap();
    std::fs::write(up.join("orph.tail"), b"left over").unwrap();
    store.start_upload("orph").await.unwrap();
    let data = content(8, 70_000);
    let digest = Algorithm::Sha256.digest(&data);
    store
        .append_upload("orph", 0, body(&data, 5000))
        .await
        .unwrap();
    store.commit_upload("orph", &digest).await.unwrap();
    assert!(read_all(&store, &digest).await == data);
    assert!(matches!(
        store.start_upload("orph").await.map(|_| ()),
        Ok(())
    ));
    assert!(matches!(
        store.start_upload("orph").await,
        Err(BlobError::Io(ref e)) if e.kind() == io::ErrorKind::AlreadyExists
    ));
}

// ----------------------------------------------------------------------------------
// Measurements (ignored by default)
// ----------------------------------------------------------------------------------

fn gib_body(len: usize, chunk: usize) -> ByteStream {
    let block = Bytes::from(content(6, 1 << 20));
    let chunks = stream::iter(0..len / chunk).map(move |i| {
        let at = (i * chunk) % block.len();
        Ok(block.slice(at..at + chunk))
    });
    Box::pin(chunks)
}

async fn digest_of(len: usize, chunk: usize) -> Digest {
    let mut hasher = Algorithm::Sha256.hasher();
    let mut s = gib_body(len, chunk);
    while let Some(c) = s.next().await {
        hasher.update(&c.unwrap());
    }
    hasher.finish()
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().map(|t| t.parse::<f64>().unwrap_or(0.0)).sum()
    });
    ticks / 100.0
}

/// `BENCH_DIR=/somewhere/on/disk cargo test --release -p wharf-blob --test fs_encrypted
/// -- --ignored --nocapture bench`: a 1 GiB upload in one append (1 MiB chunks) and
/// full reads of it, plaintext and encrypted, alternating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_1gib() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or(".".into())).unwrap();
    let len = 1 << 30;
    let chunk = 1 << 20;
    let digest = digest_of(len, chunk).await;
    let rounds: usize = std::env::var("BENCH_ROUNDS").map_or(2, |r| r.parse().unwrap());
    for round in 0..rounds {
        for encrypted in [false, true] {
            let root = dir.path().join(if encrypted { "enc" } else { "plain" });
            let store = if encrypted {
                open(&root)
            } else {
                FsBlobStore::open(&root).unwrap()
            };
            let (t0, c0) = (Instant::now(), cpu_seconds());
            store.start_upload("bench").await.unwrap();
            store
                .append_upload("bench", 0, gib_body(len, chunk))
                .await
                .unwrap();
            let append = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            store.commit_upload("bench", &digest).await.unwrap();
            let commit = t1.elapsed().as_secs_f64();
            let upload_cpu = cpu_seconds() - c0;
            let mut reads = Vec::new();
            for _ in 0..3 {
                let (t, c) = (Instant::now(), cpu_seconds());
                let mut s = store.read(&digest, None).await.unwrap();
                let mut n = 0;
                while let Some(c) = s.next().await {
                    n += c.unwrap().len();
                }
                assert_eq!(n, len);
                reads.push((t.elapsed().as_secs_f64(), cpu_seconds() - c));
            }
            println!(
                "round {round} {}: upload append {append:.3} s + commit {commit:.3} s = {:.3} s \
                 ({upload_cpu:.2} s CPU); reads {}",
                if encrypted { "encrypted" } else { "plaintext" },
                append + commit,
                reads
                    .iter()
                    .map(|(t, c)| format!(
                        "{t:.3} s ({c:.2} s CPU, {:.2} GB/s)",
                        len as f64 / t / 1e9
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // A consumer at network speed (`BENCH_PULL_MBPS`, default 1250 = 10 Gbit/s).
            let rate: f64 = std::env::var("BENCH_PULL_MBPS")
                .map_or(1250e6, |r| r.parse::<f64>().unwrap() * 1e6);
            let t = Instant::now();
            let mut s = store.read(&digest, None).await.unwrap();
            let (mut n, mut paced) = (0usize, 0usize);
            while let Some(c) = s.next().await {
                n += c.unwrap().len();
                if n - paced >= 8 << 20 {
                    paced = n;
                    let due = std::time::Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(t + due)).await;
                }
            }
            assert_eq!(n, len);
            println!(
                "round {round} {}: read by a consumer at {:.0} MB/s: {:.3} s (the consumer alone: {:.3} s)",
                if encrypted { "encrypted" } else { "plaintext" },
                rate / 1e6,
                t.elapsed().as_secs_f64(),
                len as f64 / rate
            );
            store.delete(&digest).await.unwrap();
        }
    }
}

/// Per-read overhead on small blobs (opening the envelope, unwrapping the data key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_small_reads() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or(".".into())).unwrap();
    let data = content(10, 4096);
    let digest = Algorithm::Sha256.digest(&data);
    for encrypted in [false, true, false, true] {
        let root = dir.path().join(if encrypted { "enc" } else { "plain" });
        let store = if encrypted {
            open(&root)
        } else {
            FsBlobStore::open(&root).unwrap()
        };
        if store.stat(&digest).await.unwrap().is_none() {
            store.start_upload("s").await.unwrap();
            store
                .append_upload("s", 0, body(&data, 4096))
                .await
                .unwrap();
            store.commit_upload("s", &digest).await.unwrap();
        }
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            let mut s = store.read(&digest, None).await.unwrap();
            while let Some(c) = s.next().await {
                c.unwrap();
            }
        }
        let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
        println!(
            "{}: {per:.1} µs per read of a 4 KiB blob",
            if encrypted { "encrypted" } else { "plaintext" }
        );
    }
}
