//! The shared blob-store suite on [`FsBlobStore`], plus filesystem-specific checks.

use bytes::Bytes;
use futures::{stream, StreamExt};
use std::io;
use std::path::Path;
use std::time::Instant;
use wharf_blob::{testsuite, BlobError, BlobStore, ByteStream, FsBlobStore};
use wharf_oci::{Algorithm, Digest};

fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
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

async fn read_all(store: &dyn BlobStore, digest: &Digest) -> Vec<u8> {
    let mut s = store.read(digest, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    testsuite::run_all(&store).await;
    // Reopening an existing root works, and the suite passes again on it.
    let store = FsBlobStore::open(dir.path()).unwrap();
    testsuite::run_all(&store).await;
}

#[tokio::test(flavor = "current_thread")]
async fn shared_suite_single_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    testsuite::run_all(&FsBlobStore::open(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let data = content(1, 1000);
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("abc_DEF-123").await.unwrap();
    let staged = dir.path().join("uploads/abc_DEF-123");
    assert!(staged.is_file());
    store
        .append_upload("abc_DEF-123", 0, body(&data, 100))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&staged).unwrap(), data);
    store.commit_upload("abc_DEF-123", &digest).await.unwrap();
    assert!(!staged.exists());
    let hex = digest.hex();
    let blob = dir.path().join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    assert_eq!(std::fs::read(&blob).unwrap(), data);

    // Stray files in uploads/ (not upload ids) are not listed.
    std::fs::write(dir.path().join("uploads/.tmp.x"), b"").unwrap();
    assert_eq!(store.list_uploads().await.unwrap(), Vec::<String>::new());
}

/// A new store on the same root continues an upload of the old one: the hash state is
/// rebuilt from the staged file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_upload() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2, 3_000_000);
    let digest = Algorithm::Sha256.digest(&data);
    {
        let old = FsBlobStore::open(dir.path()).unwrap();
        old.start_upload("up1").await.unwrap();
        old.start_upload("up2").await.unwrap();
        old.append_upload("up1", 0, body(&data[..1_234_567], 65536))
            .await
            .unwrap();
        old.append_upload("up2", 0, body(&data, 65536))
            .await
            .unwrap();
    }
    let new = FsBlobStore::open(dir.path()).unwrap();
    assert_eq!(new.list_uploads().await.unwrap(), vec!["up1", "up2"]);
    assert_eq!(new.upload_size("up1").await.unwrap(), 1_234_567);
    let size = new
        .append_upload("up1", 1_234_567, body(&data[1_234_567..], 65536))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(new.commit_upload("up1", &digest).await.unwrap(), size);
    assert!(read_all(&new, &digest).await == data);

    // Committed straight after the restart, with a wrong digest: the computed one is
    // still right.
    let wrong = Algorithm::Sha256.digest(b"nope");
    match new.commit_upload("up2", &wrong).await {
        Err(BlobError::DigestMismatch { computed, .. }) => assert_eq!(computed, digest),
        other => panic!("{other:?}"),
    }
}

/// Two stores (think: two processes) appending to the same upload in turn: each one's
/// hash state is out of step with the file and must be caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_share_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let a = FsBlobStore::open(dir.path()).unwrap();
    let b = FsBlobStore::open(dir.path()).unwrap();
    let data = content(3, 2_500_000);
    let digest = Algorithm::Sha256.digest(&data);
    a.start_upload("shared").await.unwrap();
    a.append_upload("shared", 0, body(&data[..1_000_000], 4096))
        .await
        .unwrap();
    b.append_upload("shared", 1_000_000, body(&data[1_000_000..2_000_000], 4096))
        .await
        .unwrap();
    // `a` has a hash state at 1 000 000 bytes; the file now has 2 000 000.
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
    // `b` sees the upload gone.
    assert!(matches!(
        b.append_upload("shared", 2_500_000, body(b"x", 1)).await,
        Err(BlobError::UploadUnknown(_))
    ));
    assert!(read_all(&b, &digest).await == data);

    // An upload aborted by one store and restarted under the same id by the other:
    // the first store's stale hash state must not be reused.
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsBlobStore::open(&root).unwrap();
    let outside = dir.path().join("victim");
    std::fs::write(&outside, b"precious").unwrap();
    let digest = Algorithm::Sha256.digest(b"precious");
    for id in [
        "../victim",
        "../../victim",
        "..",
        ".",
        "a/b",
        "",
        "x.y",
        "%2e%2e",
        "a\0b",
    ] {
        match store.start_upload(id).await {
            Err(BlobError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{id:?}"),
            other => panic!("start_upload({id:?}): {other:?}"),
        }
        for r in [
            store.upload_size(id).await,
            store.append_upload(id, 8, body(b"evil", 4)).await,
            store.commit_upload(id, &digest).await,
        ] {
            assert!(
                matches!(r, Err(BlobError::UploadUnknown(ref got)) if got == id),
                "{id:?}: {r:?}"
            );
        }
        store.abort_upload(id).await.unwrap();
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["store", "victim"]);
    assert_eq!(store.list_uploads().await.unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_start_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    store.start_upload("dup").await.unwrap();
    store
        .append_upload("dup", 0, body(b"abc", 3))
        .await
        .unwrap();
    assert!(matches!(
        store.start_upload("dup").await,
        Err(BlobError::Io(ref e)) if e.kind() == io::ErrorKind::AlreadyExists
    ));
    assert_eq!(store.upload_size("dup").await.unwrap(), 3);
}

/// A large upload streamed in odd-sized chunks has the right digest, and reads back
/// (whole and ranged) with the right content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_upload() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let len = 64 << 20;
    let data = Bytes::from(content(4, len));
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("big").await.unwrap();
    let chunks: Vec<io::Result<Bytes>> = (0..len)
        .step_by(65_537)
        .map(|i| Ok(data.slice(i..(i + 65_537).min(len))))
        .collect();
    let size = store
        .append_upload("big", 0, Box::pin(stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(size, len as u64);
    assert_eq!(store.commit_upload("big", &digest).await.unwrap(), size);

    let mut hasher = Algorithm::Sha256.hasher();
    let mut s = store.read(&digest, None).await.unwrap();
    while let Some(c) = s.next().await {
        hasher.update(&c.unwrap());
    }
    assert_eq!(hasher.finish(), digest);
    let mut s = store
        .read(&digest, Some(10_000_000..30_000_001))
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert!(got[..] == data[10_000_000..30_000_001]);
}

/// A caller that stops waiting for an append does not leave the upload inconsistent:
/// the append finishes on its own and a later append resumes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_append_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let data = content(5, 4 << 20);
    let digest = Algorithm::Sha256.digest(&data);
    store.start_upload("drop").await.unwrap();
    let (tx, rx) = futures::channel::mpsc::channel::<io::Result<Bytes>>(4);
    let append = store.append_upload("drop", 0, Box::pin(rx));
    let feed = async {
        let mut tx = tx;
        for c in data[..3 << 20].chunks(65536) {
            futures::SinkExt::send(&mut tx, Ok(Bytes::copy_from_slice(c)))
                .await
                .unwrap();
        }
        tx
    };
    // Cancel the append after the first 3 MiB were fed; then end the body.
    let tx = tokio::select! {
        _ = append => panic!("append finished before the body ended"),
        tx = feed => tx,
    };
    drop(tx);
    // The detached append holds the upload until it has written all it received.
    let size = store
        .append_upload("drop", 3 << 20, body(&data[3 << 20..], 65536))
        .await
        .unwrap();
    assert_eq!(size, 4 << 20);
    assert_eq!(store.commit_upload("drop", &digest).await.unwrap(), size);
}

/// `len` bytes in `chunk`-byte chunks, at about `rate` bytes per second (0: at once), as
/// a client on a network of that speed would send them.
fn gib_body(len: usize, chunk: usize, rate: f64) -> ByteStream {
    let block = Bytes::from(content(6, 1 << 20));
    let start = tokio::time::Instant::now();
    let chunks = stream::iter(0..len / chunk).then(move |i| {
        let at = (i * chunk) % block.len();
        let c = block.slice(at..at + chunk);
        async move {
            if rate > 0.0 && i % 64 == 0 {
                let due = std::time::Duration::from_secs_f64((i * chunk) as f64 / rate);
                tokio::time::sleep_until(start + due).await;
            }
            Ok(c)
        }
    });
    Box::pin(chunks)
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

struct Timing {
    append: f64,
    append_cpu: f64,
    commit: f64,
    read: f64,
}

async fn timed_upload(root: &Path, len: usize, chunk: usize, rate: f64) -> Timing {
    let store = FsBlobStore::open(root).unwrap();
    let mut hasher = Algorithm::Sha256.hasher();
    let mut s = gib_body(len, chunk, 0.0);
    while let Some(c) = s.next().await {
        hasher.update(&c.unwrap());
    }
    let digest = hasher.finish();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    store.start_upload("bench").await.unwrap();
    store
        .append_upload("bench", 0, gib_body(len, chunk, rate))
        .await
        .unwrap();
    let append = t0.elapsed().as_secs_f64();
    let append_cpu = cpu_seconds() - c0;
    let t1 = Instant::now();
    let committed = store.commit_upload("bench", &digest).await;
    let commit = t1.elapsed().as_secs_f64();
    if committed.is_err() {
        return Timing {
            append,
            append_cpu,
            commit,
            read: 0.0,
        };
    }

    let t2 = Instant::now();
    let mut s = store.read(&digest, None).await.unwrap();
    let mut n = 0;
    while let Some(c) = s.next().await {
        n += c.unwrap().len();
    }
    assert_eq!(n, len);
    let read = t2.elapsed().as_secs_f64();
    store.delete(&digest).await.unwrap();
    Timing {
        append,
        append_cpu,
        commit,
        read,
    }
}

/// `BENCH_DIR=/somewhere/on/disk cargo test --release -p wharf-blob --test fs -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_1gib_upload() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or(".".into())).unwrap();
    let len = 1 << 30;
    let chunks: Vec<usize> = std::env::var("BENCH_CHUNKS")
        .unwrap_or("65536,1048576".into())
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let rate: f64 =
        std::env::var("BENCH_RATE_MBPS").map_or(0.0, |r| r.parse::<f64>().unwrap() * 1e6);
    for chunk in chunks {
        for _ in 0..2 {
            let t = timed_upload(dir.path(), len, chunk, rate).await;
            println!(
                "1 GiB in {} KiB chunks: append {:.3} s ({:.2} s CPU), commit {:.3} s, total {:.3} s; read {:.3} s ({:.2} GB/s)",
                chunk >> 10,
                t.append,
                t.append_cpu,
                t.commit,
                t.append + t.commit,
                t.read,
                len as f64 / t.read / 1e9
            );
        }
    }
}

/// Reference figures for the same machine: hashing alone, writing alone, fsync alone.
#[test]
#[ignore]
fn bench_reference() {
    use std::io::Write;
    let block = content(7, 1 << 20);
    let t = Instant::now();
    let mut h = Algorithm::Sha256.hasher();
    for _ in 0..1024 {
        h.update(&block);
    }
    h.finish();
    println!("sha256 of 1 GiB: {:.3} s", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or(".".into())).unwrap();
    let mut f = std::fs::File::create(dir.path().join("x")).unwrap();
    let t = Instant::now();
    for _ in 0..1024 {
        f.write_all(&block).unwrap();
    }
    let w = t.elapsed().as_secs_f64();
    f.sync_data().unwrap();
    println!(
        "write 1 GiB (1 MiB writes): {w:.3} s, then fdatasync {:.3} s",
        t.elapsed().as_secs_f64() - w
    );
}
