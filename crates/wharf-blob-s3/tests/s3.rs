//! `S3BlobStore` against a real S3-compatible server (`wharf_testenv::s3`): the shared
//! suite, and what only a store shared by replicas has to get right.

use bytes::Bytes;
use futures::{stream, StreamExt};
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use wharf_blob::{testsuite, BlobError, BlobStore};
use wharf_blob_s3::{S3BlobStore, S3Config};
use wharf_oci::Algorithm;
use wharf_testenv::s3::Bucket;

mod common;
use common::{body, content, files_under, read_all};

const MIB: usize = 1 << 20;

/// A store on `bucket`, configured through the URL form with extra `options`.
fn store(bucket: &Bucket, prefix: &str, options: &str) -> S3BlobStore {
    let url = bucket.url_with(prefix, options);
    let config = S3Config::from_url_with_env(&url, bucket.env()).unwrap();
    S3BlobStore::new(config).unwrap()
}

/// The S3 multipart uploads open in `bucket` on the private server, each with the
/// number of parts it has received (none when the server is not private). `s3s-fs`
/// keeps, at its root, `.bucket-<b64 bucket>.object-<b64 key>.upload-<id>.metadata.json`
/// while a multipart upload is open and `.upload_id-<id>.part-<n>` for its parts.
fn open_multiparts(bucket: &Bucket) -> Vec<usize> {
    use base64::Engine;
    let Some(root) = &bucket.root else {
        return Vec::new();
    };
    let names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let ours = format!(
        ".bucket-{}.object-",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bucket.bucket)
    );
    names
        .iter()
        .filter(|n| n.starts_with(&ours))
        .filter_map(|n| n.split_once(".upload-")?.1.strip_suffix(".metadata.json"))
        .map(|id| {
            let part = format!(".upload_id-{id}.part-");
            names.iter().filter(|n| n.starts_with(&part)).count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite() {
    let bucket = wharf_testenv::s3::bucket().await;
    testsuite::run_all(&store(&bucket, "", "")).await;
    // Under a key prefix, with the smallest part size S3 allows.
    testsuite::run_all(&store(&bucket, "some/prefix", "part_size=5MiB")).await;
}

#[tokio::test(flavor = "current_thread")]
async fn shared_suite_single_threaded_runtime() {
    let bucket = wharf_testenv::s3::bucket().await;
    testsuite::run_all(&store(&bucket, "", "")).await;
}

/// Two replicas on one bucket take turns appending to one upload, in chunks smaller
/// than a part, of exactly a part, spanning several parts, and of one byte; the other
/// one commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_turns_on_one_upload() {
    let bucket = wharf_testenv::s3::bucket().await;
    let a = store(&bucket, "", "part_size=5MiB");
    let b = store(&bucket, "", "part_size=5MiB");
    let part = 5 * MIB;
    let sizes = [
        1000,
        part,
        1,
        2 * part + 12_345,
        part - 1001,
        1,
        3 * part + 7,
        part,
        1,
        77_777,
    ];
    let total: usize = sizes.iter().sum();
    let data = content(1, total);
    let digest = Algorithm::Sha256.digest(&data);
    a.start_upload("turns").await.unwrap();
    common::take_turns(&a, &b, "turns", &sizes, &data).await;
    assert_eq!(a.list_uploads().await.unwrap(), vec!["turns"]);
    // The last append was on `b`'s turn (10 appends): commit on `a`.
    assert_eq!(
        a.commit_upload("turns", &digest).await.unwrap(),
        total as u64
    );
    assert!(matches!(
        b.upload_size("turns").await,
        Err(BlobError::UploadUnknown(_))
    ));
    assert_eq!(b.stat(&digest).await.unwrap(), Some(total as u64));
    let back = read_all(&b, &digest, None).await;
    assert_eq!(back.len(), total);
    assert!(back == data, "content read back differs");
    assert_eq!(Algorithm::Sha256.digest(&back), digest);
    assert_eq!(
        open_multiparts(&bucket),
        Vec::<usize>::new(),
        "multipart uploads left"
    );
    if let Some(dir) = bucket.dir() {
        assert_eq!(
            files_under(&dir.join("_uploads")),
            Vec::<PathBuf>::new(),
            "staging objects left"
        );
        // The blob is a plain object at its content address.
        let hex = digest.hex();
        let raw = std::fs::read(dir.join(format!("blobs/sha256/{}/{hex}", &hex[..2]))).unwrap();
        assert!(raw == data);
    }
}

/// A body that fails after more than a part: the parts sent and the bytes after them
/// stay staged, and another replica resumes from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_body_after_several_parts_keeps_everything() {
    let bucket = wharf_testenv::s3::bucket().await;
    let a = store(&bucket, "", "part_size=5MiB");
    let b = store(&bucket, "", "part_size=5MiB");
    let data = content(2, 14 * MIB + 3);
    let cut = 12 * MIB + 5;
    a.start_upload("fails").await.unwrap();
    let mut chunks: Vec<io::Result<Bytes>> = data[..cut]
        .chunks(1_000_003)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")));
    match a
        .append_upload("fails", 0, Box::pin(stream::iter(chunks)))
        .await
    {
        Err(BlobError::Body(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        r => panic!("failing body: {r:?}"),
    }
    assert_eq!(b.upload_size("fails").await.unwrap(), cut as u64);
    if let Some(dir) = bucket.dir() {
        // Two parts of 5 MiB went to the multipart upload; the rest is the tail.
        let staged = files_under(&dir.join("_uploads/fails"));
        let tails: Vec<_> = staged
            .iter()
            .filter(|p| p.to_string_lossy().starts_with("tail-"))
            .collect();
        assert_eq!(tails.len(), 1, "{staged:?}");
        let tail = std::fs::read(dir.join("_uploads/fails").join(tails[0])).unwrap();
        assert!(tail[..] == data[10 * MIB..cut]);
        assert_eq!(
            open_multiparts(&bucket),
            vec![2],
            "one multipart upload, two parts"
        );
    }
    b.append_upload("fails", cut as u64, body(&data[cut..], 4096))
        .await
        .unwrap();
    let digest = Algorithm::Sha256.digest(&data);
    assert_eq!(
        b.commit_upload("fails", &digest).await.unwrap(),
        data.len() as u64
    );
    assert!(read_all(&a, &digest, None).await == data);
}

/// 40 MiB in one append (five 8 MiB parts), read back whole and in ranges across the
/// part boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_in_one_append() {
    let bucket = wharf_testenv::s3::bucket().await;
    let s = store(&bucket, "", "");
    let len = 40 * MIB;
    let data = Bytes::from(content(3, len));
    let digest = Algorithm::Sha256.digest(&data);
    s.start_upload("big").await.unwrap();
    let chunks: Vec<io::Result<Bytes>> = (0..len)
        .step_by(65_537)
        .map(|i| Ok(data.slice(i..(i + 65_537).min(len))))
        .collect();
    let size = s
        .append_upload("big", 0, Box::pin(stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(size, len as u64);
    assert_eq!(s.commit_upload("big", &digest).await.unwrap(), size);

    let mut hasher = Algorithm::Sha256.hasher();
    let mut stream = s.read(&digest, None).await.unwrap();
    let mut n = 0;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        n += c.len();
        hasher.update(&c);
    }
    assert_eq!(n, len);
    assert_eq!(hasher.finish(), digest);
    let part = 8 * MIB as u64;
    for r in [
        part - 10..part + 10,
        part - 1..part,
        part..part + 1,
        0..2 * part + 1,
        3 * part - 100_000..4 * part + 100_000,
        4 * part + 1..len as u64,
        len as u64 - 1..len as u64,
    ] {
        let got = read_all(&s, &digest, Some(r.clone())).await;
        assert!(
            got[..] == data[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    match s.read(&digest, Some(0..len as u64 + 1)).await {
        Err(BlobError::RangeNotSatisfiable { size, .. }) => assert_eq!(size, len as u64),
        r => panic!("range past the end: {:?}", r.err()),
    }
}

/// A wrong digest (SHA-256 checked from the hash state, SHA-512 by reading back) leaves
/// neither a blob nor staging objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatch_leaves_nothing_visible() {
    let bucket = wharf_testenv::s3::bucket().await;
    let s = store(&bucket, "", "part_size=5MiB");
    let data = content(4, 11 * MIB + 1);
    for (id, alg) in [("bad256", Algorithm::Sha256), ("bad512", Algorithm::Sha512)] {
        let actual = alg.digest(&data);
        let claimed = alg.digest(b"something else");
        s.start_upload(id).await.unwrap();
        s.append_upload(id, 0, body(&data, MIB)).await.unwrap();
        match s.commit_upload(id, &claimed).await {
            Err(BlobError::DigestMismatch { expected, computed }) => {
                assert_eq!((expected, computed), (claimed.clone(), actual.clone()));
            }
            r => panic!("{id}: {r:?}"),
        }
        assert_eq!(s.stat(&claimed).await.unwrap(), None);
        assert_eq!(s.stat(&actual).await.unwrap(), None);
        assert!(matches!(
            s.upload_size(id).await,
            Err(BlobError::UploadUnknown(_))
        ));
    }
    assert_eq!(s.list_uploads().await.unwrap(), Vec::<String>::new());
    assert_eq!(
        open_multiparts(&bucket),
        Vec::<usize>::new(),
        "multipart uploads left"
    );
    if let Some(dir) = bucket.dir() {
        assert_eq!(files_under(&dir), Vec::<PathBuf>::new(), "objects left");
    }
}

/// Abort removes the multipart upload and every object under `_uploads/<id>/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_removes_all_staging_objects() {
    let bucket = wharf_testenv::s3::bucket().await;
    let a = store(&bucket, "pre", "part_size=5MiB");
    let b = store(&bucket, "pre", "part_size=5MiB");
    let data = content(5, 7 * MIB);
    a.start_upload("gone").await.unwrap();
    a.start_upload("kept").await.unwrap();
    a.append_upload("gone", 0, body(&data, MIB)).await.unwrap();
    a.append_upload("kept", 0, body(&data[..10], 3))
        .await
        .unwrap();
    assert_eq!(a.upload_prefix("gone"), "pre/_uploads/gone/");
    if let Some(dir) = bucket.dir() {
        let staged = files_under(&dir.join("pre/_uploads/gone"));
        assert!(staged.contains(&PathBuf::from("state")), "{staged:?}");
        assert!(staged.len() >= 2, "state and tail: {staged:?}");
        assert_eq!(open_multiparts(&bucket), vec![1], "one part sent");
    }
    b.abort_upload("gone").await.unwrap();
    assert!(matches!(
        a.upload_size("gone").await,
        Err(BlobError::UploadUnknown(_))
    ));
    assert_eq!(a.list_uploads().await.unwrap(), vec!["kept"]);
    assert_eq!(
        open_multiparts(&bucket),
        Vec::<usize>::new(),
        "multipart upload left"
    );
    if let Some(dir) = bucket.dir() {
        assert_eq!(
            files_under(&dir.join("pre/_uploads/gone")),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            files_under(&dir.join("pre/_uploads/kept")),
            vec![PathBuf::from("state"), PathBuf::from("tail-0")]
        );
    }
    // Aborting again, or an upload never started, is fine.
    b.abort_upload("gone").await.unwrap();
    b.abort_upload("never").await.unwrap();
    b.abort_upload("kept").await.unwrap();
    assert_eq!(a.list_uploads().await.unwrap(), Vec::<String>::new());
}

/// Pre-signed download URLs when redirects are enabled, none otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_urls() {
    let bucket = wharf_testenv::s3::bucket().await;
    let plain = store(&bucket, "p", "");
    let redirecting = store(&bucket, "p", "redirect=true");
    let data = content(6, 300_000);
    let digest = Algorithm::Sha256.digest(&data);
    plain.start_upload("dl").await.unwrap();
    plain
        .append_upload("dl", 0, body(&data, 65_536))
        .await
        .unwrap();
    plain.commit_upload("dl", &digest).await.unwrap();

    assert_eq!(
        plain
            .download_url(&digest, Duration::from_secs(300))
            .await
            .unwrap(),
        None
    );
    let url = redirecting
        .download_url(&digest, Duration::from_secs(300))
        .await
        .unwrap()
        .expect("a URL when redirects are enabled");
    assert!(url.starts_with(&bucket.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    let got = response.bytes().await.unwrap();
    assert!(got[..] == data[..]);

    // Tampering with the URL breaks the signature.
    let forged = url.replace(&digest.hex()[..8], "00000000");
    let response = reqwest::get(&forged).await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
}

/// Two replicas append at the same offset at once: exactly one wins; the other waits
/// for its claim and then reports the new size, or, when both claims got through
/// (s3s-fs checks conditional writes and then writes, not atomically as S3 does), it
/// finds the upload taken over when it writes and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_one_wins() {
    let bucket = wharf_testenv::s3::bucket().await;
    let a = store(&bucket, "", "part_size=5MiB");
    let b = store(&bucket, "", "part_size=5MiB");
    let x = content(7, 6 * MIB);
    let y = content(8, 6 * MIB + 1);
    a.start_upload("race").await.unwrap();
    let (rx, ry) = futures::join!(
        a.append_upload("race", 0, body(&x, 65_536)),
        b.append_upload("race", 0, body(&y, 65_536)),
    );
    let winner = match (rx, ry) {
        (Ok(n), Err(BlobError::OffsetMismatch { size, .. })) => {
            assert_eq!((n, size), (x.len() as u64, x.len() as u64));
            &x
        }
        (Err(BlobError::OffsetMismatch { size, .. }), Ok(n)) => {
            assert_eq!((n, size), (y.len() as u64, y.len() as u64));
            &y
        }
        (Ok(n), Err(e)) if e.to_string().contains("took the upload over") => {
            assert_eq!(n, x.len() as u64);
            return;
        }
        (Err(e), Ok(n)) if e.to_string().contains("took the upload over") => {
            assert_eq!(n, y.len() as u64);
            return;
        }
        other => panic!("exactly one append must win: {other:?}"),
    };
    let digest = Algorithm::Sha256.digest(winner);
    b.commit_upload("race", &digest).await.unwrap();
    assert!(read_all(&a, &digest, None).await == *winner);
}

/// A writer that dies holding its claim (its runtime is shut down mid-append) blocks
/// the upload only until the claim goes stale; then another replica takes it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_claim_is_taken_over() {
    let bucket = wharf_testenv::s3::bucket().await;
    let lease = "lease=10&part_size=5MiB";
    let survivor = store(&bucket, "", lease);
    let data = content(9, 6 * MIB);
    survivor.start_upload("orphan").await.unwrap();
    survivor
        .append_upload("orphan", 0, body(&data[..1000], 100))
        .await
        .unwrap();

    // The doomed replica runs on its own runtime, which is dropped while its append
    // waits for more body: its claim stays in the state, unrenewed.
    let doomed_bucket = bucket.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let doomed = store(&doomed_bucket, "", lease);
            let (tx, rx) = futures::channel::mpsc::channel::<io::Result<Bytes>>(1);
            let append = tokio::spawn(async move {
                let _ = doomed.append_upload("orphan", 1000, Box::pin(rx)).await;
            });
            // Wait until the claim is written, then die with the sender still open.
            let start = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(dir) = doomed_bucket.dir() {
                    let state = std::fs::read_to_string(dir.join("_uploads/orphan/state"))
                        .unwrap_or_default();
                    if state.contains("\"op\":\"append\"") {
                        break;
                    }
                } else if start.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            std::mem::forget(tx);
            drop(append);
        });
        drop(rt);
    })
    .join()
    .unwrap();

    let started = std::time::Instant::now();
    let size = survivor
        .append_upload("orphan", 1000, body(&data[1000..], 65_536))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(size, data.len() as u64);
    if bucket.dir().is_some() {
        assert!(
            waited >= Duration::from_secs(9),
            "took over after {waited:?}, before the lease ran out"
        );
    }
    let digest = Algorithm::Sha256.digest(&data);
    survivor.commit_upload("orphan", &digest).await.unwrap();
    assert!(read_all(&survivor, &digest, None).await == data);
}

/// The URL form's prefix places every object under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_layout() {
    let bucket = wharf_testenv::s3::bucket().await;
    let s = store(&bucket, "tenant/a", "");
    let data = content(10, 5000);
    let digest = Algorithm::Sha512.digest(&data);
    s.start_upload("u1").await.unwrap();
    s.append_upload("u1", 0, body(&data, 999)).await.unwrap();
    s.commit_upload("u1", &digest).await.unwrap();
    let hex = digest.hex();
    assert_eq!(
        s.blob_key(&digest),
        format!("tenant/a/blobs/sha512/{}/{hex}", &hex[..2])
    );
    if let Some(dir) = bucket.dir() {
        assert_eq!(files_under(&dir), vec![PathBuf::from(s.blob_key(&digest))]);
    }
    // Another prefix sees nothing of it.
    let other = store(&bucket, "tenant/b", "");
    assert_eq!(other.stat(&digest).await.unwrap(), None);
    assert!(read_all(&s, &digest, None).await == data);
}

/// The HTTPS client is wired to a TLS provider: against a port where nothing listens,
/// requests fail with an error naming the operation, rather than the client panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_without_server_fails_cleanly() {
    let mut config = S3Config::new("bucket", "us-east-1", "AKID", "secret");
    config.endpoint = Some("https://127.0.0.1:1".to_string());
    let s = S3BlobStore::new(config).unwrap();
    let digest = Algorithm::Sha256.digest(b"x");
    match s.stat(&digest).await {
        Err(BlobError::Io(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("HEAD of blob") && msg.contains("s3://bucket/blobs/sha256/"),
                "{msg}"
            );
        }
        other => panic!("stat against nothing: {other:?}"),
    }
    // A plain-http endpoint needs allow_http.
    let mut config = S3Config::new("bucket", "us-east-1", "AKID", "secret");
    config.endpoint = Some("http://127.0.0.1:1".to_string());
    assert!(S3BlobStore::new(config).is_err());
}
