//! The shared test suite of [`BlobStore`] (DESIGN.md §5): every backend must pass
//! [`run_all`].
//!
//! The suite uses only the trait. Upload ids and blob contents are unique to each run,
//! so it can run against a store that already holds data (a shared bucket, say); it
//! removes the blobs and uploads it created. It panics on the first violated assertion.

use crate::{BlobError, BlobStore, ByteStream};
use bytes::Bytes;
use futures::{stream, StreamExt};
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use wharf_oci::{Algorithm, Digest};

/// Runs every check of the suite against `store`.
pub async fn run_all(store: &dyn BlobStore) {
    let run = Run::new();
    empty_blob(store, &run).await;
    multi_chunk_upload(store, &run).await;
    unknown_upload(store, &run).await;
    offset_mismatch(store, &run).await;
    concurrent_appends_to_one_upload(store, &run).await;
    wrong_digest(store, &run).await;
    already_present(store, &run).await;
    sha512(store, &run).await;
    range_reads(store, &run).await;
    missing_blob(store, &run).await;
    delete(store, &run).await;
    abort(store, &run).await;
    list_uploads(store, &run).await;
    failing_body(store, &run).await;
    concurrent_uploads_of_same_content(store, &run).await;
    assert_eq!(
        run.own_uploads(store).await,
        Vec::<String>::new(),
        "the suite left uploads staged"
    );
}

/// Ids and contents unique to one run of the suite.
struct Run {
    nonce: u64,
    next: AtomicU64,
}

impl Run {
    fn new() -> Run {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let nonce = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ RUNS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Run {
            nonce,
            next: AtomicU64::new(0),
        }
    }

    fn prefix(&self) -> String {
        format!("suite-{:016x}-", self.nonce)
    }

    /// A fresh upload id.
    fn id(&self) -> String {
        format!(
            "{}{}",
            self.prefix(),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `len` pseudo-random bytes, distinct for each `label` and each run.
    fn content(&self, label: &str, len: usize) -> Vec<u8> {
        let mut x = self.nonce ^ 0x2545_f491_4f6c_dd1d;
        for b in label.bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// This run's staged uploads.
    async fn own_uploads(&self, store: &dyn BlobStore) -> Vec<String> {
        let prefix = self.prefix();
        let mut ids: Vec<String> = store
            .list_uploads()
            .await
            .expect("list_uploads")
            .into_iter()
            .filter(|id| id.starts_with(&prefix))
            .collect();
        ids.sort();
        ids
    }
}

fn sha256(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest(data)
}

/// A body yielding `data` in chunks of `chunk` bytes.
fn chunked(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

/// A body yielding `chunks` and then failing.
fn failing(chunks: &[&[u8]]) -> ByteStream {
    let mut items: Vec<io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    items.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    Box::pin(stream::iter(items))
}

/// Reads blob `digest` (or `range` of it) completely.
async fn read_all(store: &dyn BlobStore, digest: &Digest, range: Option<Range<u64>>) -> Vec<u8> {
    let what = format!("read {digest} {range:?}");
    let mut s = match store.read(digest, range).await {
        Ok(s) => s,
        Err(e) => panic!("{what}: {e:?}"),
    };
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => panic!("{what}: stream failed: {e:?}"),
        }
    }
    out
}

/// The error of a read that must fail.
async fn read_err(store: &dyn BlobStore, digest: &Digest, range: Option<Range<u64>>) -> BlobError {
    match store.read(digest, range.clone()).await {
        Ok(_) => panic!("read {digest} {range:?} succeeded, expected an error"),
        Err(e) => e,
    }
}

/// Starts upload `id`, appends `data` in `chunk`-byte chunks and commits it as `digest`.
async fn upload(store: &dyn BlobStore, id: &str, data: &[u8], chunk: usize, digest: &Digest) {
    store.start_upload(id).await.expect("start_upload");
    let size = store
        .append_upload(id, 0, chunked(data, chunk))
        .await
        .expect("append_upload");
    assert_eq!(
        size,
        data.len() as u64,
        "append_upload returns the staged size"
    );
    let committed = store
        .commit_upload(id, digest)
        .await
        .expect("commit_upload");
    assert_eq!(
        committed,
        data.len() as u64,
        "commit_upload returns the blob size"
    );
}

fn assert_upload_unknown(r: Result<impl std::fmt::Debug, BlobError>, id: &str, what: &str) {
    match r {
        Err(BlobError::UploadUnknown(got)) => assert_eq!(got, id, "{what}: id in error"),
        other => panic!("{what}: expected UploadUnknown({id}), got {other:?}"),
    }
}

async fn assert_gone(store: &dyn BlobStore, run: &Run, id: &str, what: &str) {
    assert_upload_unknown(store.upload_size(id).await, id, what);
    assert!(
        !run.own_uploads(store).await.iter().any(|u| u == id),
        "{what}: upload {id} still listed"
    );
}

async fn empty_blob(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let digest = sha256(b"");
    store.start_upload(&id).await.expect("start_upload");
    assert_eq!(store.upload_size(&id).await.expect("upload_size"), 0);
    let empty: ByteStream = Box::pin(stream::empty());
    assert_eq!(store.append_upload(&id, 0, empty).await.expect("append"), 0);
    assert_eq!(store.commit_upload(&id, &digest).await.expect("commit"), 0);
    assert_gone(store, run, &id, "empty blob: after commit").await;
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(0));
    assert_eq!(read_all(store, &digest, None).await, b"");
    match read_err(store, &digest, Some(0..1)).await {
        BlobError::RangeNotSatisfiable { start, end, size } => {
            assert_eq!((start, end, size), (0, 1, 0))
        }
        e => panic!("range of an empty blob: {e:?}"),
    }
    // Not deleted: the empty blob may be shared with other users of the store.
}

async fn multi_chunk_upload(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let data = run.content("multi", 3 * 1024 * 1024 + 12_345);
    let digest = sha256(&data);
    let split = 1024 * 1024 + 7;
    store.start_upload(&id).await.expect("start_upload");
    assert!(
        run.own_uploads(store).await.contains(&id),
        "started upload listed"
    );

    // First request: uneven chunks, including an empty one.
    let first: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::copy_from_slice(&data[..10])),
        Ok(Bytes::new()),
        Ok(Bytes::copy_from_slice(&data[10..70_000])),
        Ok(Bytes::copy_from_slice(&data[70_000..split])),
    ];
    let size = store
        .append_upload(&id, 0, Box::pin(stream::iter(first)))
        .await
        .expect("first append");
    assert_eq!(size, split as u64);
    assert_eq!(
        store.upload_size(&id).await.expect("upload_size"),
        split as u64
    );

    // An empty append changes nothing.
    let size = store
        .append_upload(&id, split as u64, Box::pin(stream::empty()))
        .await
        .expect("empty append");
    assert_eq!(size, split as u64);

    // Second request: the rest, in 64 KiB chunks.
    let size = store
        .append_upload(&id, split as u64, chunked(&data[split..], 64 * 1024))
        .await
        .expect("second append");
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        None,
        "visible before commit"
    );

    assert_eq!(
        store.commit_upload(&id, &digest).await.expect("commit"),
        data.len() as u64
    );
    assert_gone(store, run, &id, "multi-chunk: after commit").await;
    assert_upload_unknown(
        store.commit_upload(&id, &digest).await,
        &id,
        "second commit",
    );
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        Some(data.len() as u64)
    );
    assert!(
        read_all(store, &digest, None).await == data,
        "read back differs"
    );
    store.delete(&digest).await.expect("delete");
}

async fn unknown_upload(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let digest = sha256(b"x");
    assert_upload_unknown(store.upload_size(&id).await, &id, "size of unknown upload");
    assert_upload_unknown(
        store.append_upload(&id, 0, chunked(b"abc", 1)).await,
        &id,
        "append to unknown upload",
    );
    assert_upload_unknown(
        store.commit_upload(&id, &digest).await,
        &id,
        "commit of unknown upload",
    );
    store
        .abort_upload(&id)
        .await
        .expect("abort of unknown upload");
    assert!(!run.own_uploads(store).await.contains(&id));
}

async fn offset_mismatch(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let data = run.content("offset", 100);
    store.start_upload(&id).await.expect("start_upload");
    store
        .append_upload(&id, 0, chunked(&data[..40], 16))
        .await
        .expect("append");
    for bad in [0u64, 39, 41, 1000] {
        match store
            .append_upload(&id, bad, chunked(&data[40..], 16))
            .await
        {
            Err(BlobError::OffsetMismatch {
                id: got,
                offset,
                size,
            }) => {
                assert_eq!(got, id);
                assert_eq!((offset, size), (bad, 40), "offset mismatch fields");
            }
            other => panic!("append at {bad} over 40 staged bytes: {other:?}"),
        }
        assert_eq!(
            store.upload_size(&id).await.expect("size"),
            40,
            "mismatch staged bytes"
        );
    }
    let size = store
        .append_upload(&id, 40, chunked(&data[40..], 16))
        .await
        .expect("append at the right offset");
    assert_eq!(size, 100);
    let digest = sha256(&data);
    assert_eq!(
        store.commit_upload(&id, &digest).await.expect("commit"),
        100
    );
    assert!(read_all(store, &digest, None).await == data);
    store.delete(&digest).await.expect("delete");
}

async fn concurrent_appends_to_one_upload(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let a = run.content("race-a", 700_000);
    let b = run.content("race-b", 900_000);
    store.start_upload(&id).await.expect("start_upload");
    let (ra, rb) = futures::join!(
        store.append_upload(&id, 0, chunked(&a, 8192)),
        store.append_upload(&id, 0, chunked(&b, 8192)),
    );
    let winner = match (ra, rb) {
        (
            Ok(n),
            Err(BlobError::OffsetMismatch {
                offset: 0, size, ..
            }),
        ) => {
            assert_eq!((n, size), (a.len() as u64, a.len() as u64));
            &a
        }
        (
            Err(BlobError::OffsetMismatch {
                offset: 0, size, ..
            }),
            Ok(n),
        ) => {
            assert_eq!((n, size), (b.len() as u64, b.len() as u64));
            &b
        }
        other => panic!("two appends at offset 0: exactly one must win, got {other:?}"),
    };
    assert_eq!(
        store.upload_size(&id).await.expect("size"),
        winner.len() as u64
    );
    let digest = sha256(winner);
    store
        .commit_upload(&id, &digest)
        .await
        .expect("commit winner");
    assert!(read_all(store, &digest, None).await == *winner);
    store.delete(&digest).await.expect("delete");
}

async fn wrong_digest(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let data = run.content("wrong", 300_000);
    let actual = sha256(&data);
    let claimed = sha256(&run.content("claimed", 10));
    store.start_upload(&id).await.expect("start_upload");
    store
        .append_upload(&id, 0, chunked(&data, 100_000))
        .await
        .expect("append");
    match store.commit_upload(&id, &claimed).await {
        Err(BlobError::DigestMismatch { expected, computed }) => {
            assert_eq!(expected, claimed, "expected digest in error");
            assert_eq!(computed, actual, "computed digest in error");
        }
        other => panic!("commit with a wrong digest: {other:?}"),
    }
    assert_gone(store, run, &id, "wrong digest: after failed commit").await;
    assert_eq!(
        store.stat(&claimed).await.expect("stat"),
        None,
        "claimed blob"
    );
    assert_eq!(
        store.stat(&actual).await.expect("stat"),
        None,
        "actual blob"
    );
    assert!(matches!(
        read_err(store, &actual, None).await,
        BlobError::BlobUnknown(_)
    ));
}

async fn already_present(store: &dyn BlobStore, run: &Run) {
    let data = run.content("present", 200_000);
    let digest = sha256(&data);
    upload(store, &run.id(), &data, 50_000, &digest).await;
    let id = run.id();
    upload(store, &id, &data, 33_333, &digest).await;
    assert_gone(store, run, &id, "second commit of present blob").await;
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(200_000));
    assert!(read_all(store, &digest, None).await == data);
    store.delete(&digest).await.expect("delete");
}

async fn sha512(store: &dyn BlobStore, run: &Run) {
    let data = run.content("sha512", 500_000);
    let digest = Algorithm::Sha512.digest(&data);
    upload(store, &run.id(), &data, 65_536, &digest).await;
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(500_000));
    assert_eq!(store.stat(&sha256(&data)).await.expect("stat"), None);
    assert!(read_all(store, &digest, None).await == data);
    assert!(read_all(store, &digest, Some(1000..1010)).await == data[1000..1010]);

    let id = run.id();
    let claimed = Algorithm::Sha512.digest(b"something else");
    store.start_upload(&id).await.expect("start_upload");
    store
        .append_upload(&id, 0, chunked(&data, 65_536))
        .await
        .expect("append");
    match store.commit_upload(&id, &claimed).await {
        Err(BlobError::DigestMismatch { expected, computed }) => {
            assert_eq!(expected, claimed);
            assert_eq!(computed, digest, "computed with the expected algorithm");
        }
        other => panic!("commit with a wrong sha512: {other:?}"),
    }
    assert_gone(store, run, &id, "wrong sha512").await;
    store.delete(&digest).await.expect("delete");
}

async fn range_reads(store: &dyn BlobStore, run: &Run) {
    let data = run.content("ranges", 700_001);
    let digest = sha256(&data);
    let size = data.len() as u64;
    upload(store, &run.id(), &data, 100_000, &digest).await;
    let ok: [Range<u64>; 6] = [
        0..1,
        1000..2000,
        100..600_000,
        size - 1..size,
        0..size,
        262_143..262_145,
    ];
    for r in ok {
        let want = &data[r.start as usize..r.end as usize];
        let got = read_all(store, &digest, Some(r.clone())).await;
        assert!(
            got == want,
            "range {r:?}: {} bytes, wrong content",
            got.len()
        );
    }
    let reversed = Range { start: 10, end: 5 };
    let bad: [Range<u64>; 4] = [size..size + 1, 0..size + 1, size + 10..size + 20, reversed];
    for r in bad {
        match read_err(store, &digest, Some(r.clone())).await {
            BlobError::RangeNotSatisfiable {
                start,
                end,
                size: got,
            } => assert_eq!((start, end, got), (r.start, r.end, size), "range {r:?}"),
            e => panic!("range {r:?}: expected RangeNotSatisfiable, got {e:?}"),
        }
    }
    store.delete(&digest).await.expect("delete");
}

async fn missing_blob(store: &dyn BlobStore, run: &Run) {
    for digest in [
        sha256(&run.content("missing", 10)),
        Algorithm::Sha512.digest(&run.content("missing", 10)),
    ] {
        assert_eq!(store.stat(&digest).await.expect("stat"), None);
        for range in [None, Some(0..1)] {
            match read_err(store, &digest, range).await {
                BlobError::BlobUnknown(d) => assert_eq!(d, digest),
                e => panic!("read of missing blob: {e:?}"),
            }
        }
        store.delete(&digest).await.expect("delete of missing blob");
    }
}

async fn delete(store: &dyn BlobStore, run: &Run) {
    let data = run.content("delete", 1000);
    let digest = sha256(&data);
    upload(store, &run.id(), &data, 1000, &digest).await;
    assert_eq!(store.stat(&digest).await.expect("stat"), Some(1000));
    store.delete(&digest).await.expect("delete");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    assert!(matches!(
        read_err(store, &digest, None).await,
        BlobError::BlobUnknown(_)
    ));
    store.delete(&digest).await.expect("second delete");
    // The same content can be uploaded again.
    upload(store, &run.id(), &data, 7, &digest).await;
    assert!(read_all(store, &digest, None).await == data);
    store.delete(&digest).await.expect("delete");
}

async fn abort(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let data = run.content("abort", 5000);
    let digest = sha256(&data);
    store.start_upload(&id).await.expect("start_upload");
    store
        .append_upload(&id, 0, chunked(&data, 1000))
        .await
        .expect("append");
    store.abort_upload(&id).await.expect("abort");
    assert_gone(store, run, &id, "after abort").await;
    assert_upload_unknown(
        store.append_upload(&id, 5000, chunked(&data, 1000)).await,
        &id,
        "append after abort",
    );
    assert_upload_unknown(
        store.commit_upload(&id, &digest).await,
        &id,
        "commit after abort",
    );
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    store.abort_upload(&id).await.expect("second abort");
}

async fn list_uploads(store: &dyn BlobStore, run: &Run) {
    let (a, b) = (run.id(), run.id());
    store.start_upload(&a).await.expect("start a");
    store.start_upload(&b).await.expect("start b");
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(run.own_uploads(store).await, want);
    store.abort_upload(&a).await.expect("abort a");
    assert_eq!(run.own_uploads(store).await, vec![b.clone()]);
    store
        .commit_upload(&b, &sha256(b""))
        .await
        .expect("commit b");
    assert_eq!(run.own_uploads(store).await, Vec::<String>::new());
}

async fn failing_body(store: &dyn BlobStore, run: &Run) {
    let id = run.id();
    let data = run.content("failing", 1_500_000);
    let digest = sha256(&data);
    store.start_upload(&id).await.expect("start_upload");

    // Failing at once stages nothing.
    match store.append_upload(&id, 0, failing(&[])).await {
        Err(BlobError::Body(_)) => {}
        other => panic!("body failing at once: {other:?}"),
    }
    assert_eq!(store.upload_size(&id).await.expect("size"), 0);

    // Failing after a few small chunks keeps them.
    match store
        .append_upload(&id, 0, failing(&[&data[..1000], &data[1000..3000]]))
        .await
    {
        Err(BlobError::Body(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("body failing after small chunks: {other:?}"),
    }
    assert_eq!(store.upload_size(&id).await.expect("size"), 3000);

    // Resumed, and failing again after large and small chunks: all of them are kept.
    let (a, b, c) = (100_000, 1_200_003, 1_250_000);
    let chunks = [&data[3000..a], &data[a..b], &data[b..c]];
    match store.append_upload(&id, 3000, failing(&chunks)).await {
        Err(BlobError::Body(_)) => {}
        other => panic!("body failing midway: {other:?}"),
    }
    assert_eq!(store.upload_size(&id).await.expect("size"), c as u64);
    assert_eq!(store.stat(&digest).await.expect("stat"), None);

    // The client resumes from the staged size.
    let size = store
        .append_upload(&id, c as u64, chunked(&data[c..], 40_000))
        .await
        .expect("resumed append");
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        store.commit_upload(&id, &digest).await.expect("commit"),
        data.len() as u64
    );
    assert!(read_all(store, &digest, None).await == data);
    store.delete(&digest).await.expect("delete");
}

async fn concurrent_uploads_of_same_content(store: &dyn BlobStore, run: &Run) {
    let data = run.content("concurrent", 2 * 1024 * 1024 + 1);
    let digest = sha256(&data);
    let (a, b) = (run.id(), run.id());
    futures::join!(
        upload(store, &a, &data, 16 * 1024, &digest),
        upload(store, &b, &data, 64 * 1024, &digest),
    );
    assert_gone(store, run, &a, "concurrent upload a").await;
    assert_gone(store, run, &b, "concurrent upload b").await;
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        Some(data.len() as u64)
    );
    assert!(read_all(store, &digest, None).await == data);
    store.delete(&digest).await.expect("delete");
}
