//! `S3BlobStore` with encryption at rest (`S3BlobStore::with_keyring`) against a real
//! S3-compatible server (`wharf_testenv::s3`): the shared suite, uploads moving between
//! replicas, no plaintext in the bucket, tampering, and blobs stored before encryption.

use base64::Engine;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wharf_blob::{testsuite, BlobError, BlobStore};
use wharf_blob_s3::{S3BlobStore, S3Config};
use wharf_crypt::{Keyring, RECORD_LEN, SEGMENT};
use wharf_oci::Algorithm;
use wharf_testenv::s3::Bucket;

mod common;
use common::{body, content, files_under, read_all, try_read_all};

const MIB: usize = 1 << 20;

fn keyring() -> Arc<Keyring> {
    let material: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let text = format!(
        "main {}\n",
        base64::engine::general_purpose::STANDARD.encode(material)
    );
    Arc::new(Keyring::parse(&text, "test keyring").unwrap())
}

fn config(bucket: &Bucket, prefix: &str, options: &str) -> S3Config {
    let url = bucket.url_with(prefix, options);
    S3Config::from_url_with_env(&url, bucket.env()).unwrap()
}

/// An encrypting store on `bucket`.
fn encrypted(bucket: &Bucket, prefix: &str, options: &str) -> S3BlobStore {
    S3BlobStore::with_keyring(config(bucket, prefix, options), keyring()).unwrap()
}

/// A store without a keyring on `bucket`.
fn plain(bucket: &Bucket, prefix: &str, options: &str) -> S3BlobStore {
    S3BlobStore::new(config(bucket, prefix, options)).unwrap()
}

/// A raw S3 client on the bucket, to look at and overwrite objects.
fn raw(bucket: &Bucket) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(&bucket.bucket)
        .with_region(&bucket.region)
        .with_endpoint(&bucket.endpoint)
        .with_access_key_id(&bucket.access_key)
        .with_secret_access_key(&bucket.secret_key)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite_encrypted() {
    let bucket = wharf_testenv::s3::bucket().await;
    testsuite::run_all(&encrypted(&bucket, "", "")).await;
    testsuite::run_all(&encrypted(&bucket, "some/prefix", "part_size=5MiB")).await;
}

#[tokio::test(flavor = "current_thread")]
async fn shared_suite_encrypted_single_threaded_runtime() {
    let bucket = wharf_testenv::s3::bucket().await;
    testsuite::run_all(&encrypted(&bucket, "", "")).await;
}

/// Two encrypting replicas take turns appending to one upload at awkward sizes (one
/// byte, below, at and above a part, several parts, around a record); the other one
/// commits; reads whole and in ranges across records and parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_replicas_take_turns_on_one_upload() {
    let bucket = wharf_testenv::s3::bucket().await;
    let a = encrypted(&bucket, "", "part_size=5MiB");
    let b = encrypted(&bucket, "", "part_size=5MiB");
    let part = 5 * MIB;
    let sizes = [
        1,
        part - 1,
        1,
        part,
        SEGMENT - 1,
        1,
        2 * part + 12_345,
        1,
        RECORD_LEN,
        part + 1,
        3,
        SEGMENT,
    ];
    let total: usize = sizes.iter().sum();
    let data = content(1, total);
    let digest = Algorithm::Sha256.digest(&data);
    a.start_upload("turns").await.unwrap();
    common::take_turns(&a, &b, "turns", &sizes, &data).await;
    // The last append was on `b`'s turn: commit on `a`.
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
    let seg = SEGMENT as u64;
    let p = part as u64;
    let len = total as u64;
    for r in [
        0..1,
        seg - 1..seg + 1,
        seg..2 * seg,
        p - 10..p + 10,
        3 * p - 100_000..4 * p + 100_000,
        len - 1..len,
        len - seg - 3..len,
        0..len,
    ] {
        let got = read_all(&a, &digest, Some(r.clone())).await;
        assert!(
            got[..] == data[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    match a.read(&digest, Some(0..len + 1)).await {
        Err(BlobError::RangeNotSatisfiable { size, .. }) => assert_eq!(size, len),
        r => panic!("range past the end: {:?}", r.err()),
    }
    if let Some(dir) = bucket.dir() {
        assert_eq!(
            files_under(&dir.join("_uploads")),
            Vec::<PathBuf>::new(),
            "staging objects left"
        );
        let hex = digest.hex();
        let blob = std::fs::metadata(dir.join(format!("blobs/sha256/{}/{hex}", &hex[..2])))
            .unwrap()
            .len();
        assert_eq!(blob, wharf_crypt::ciphertext_len(len).unwrap());
        assert!(dir
            .join(format!("blobs/sha256/{}/{hex}.envelope", &hex[..2]))
            .is_file());
    }
}

/// A recognizable plaintext: a phrase of 61 bytes (not a divisor of anything the
/// format uses) repeated, and the set of its 32-byte windows.
fn recognizable(len: usize) -> (Vec<u8>, HashSet<Vec<u8>>) {
    let phrase = b"wharf-plaintext-marker: this must never rest in the bucket!!\n";
    assert_eq!(phrase.len(), 61);
    let data: Vec<u8> = phrase.iter().copied().cycle().take(len).collect();
    let doubled: Vec<u8> = phrase.iter().chain(phrase.iter()).copied().collect();
    let windows = (0..phrase.len())
        .map(|i| doubled[i..i + 32].to_vec())
        .collect();
    (data, windows)
}

/// Names of the objects (or files) among `items` holding any of `windows`.
fn holding(items: &[(String, Vec<u8>)], windows: &HashSet<Vec<u8>>) -> Vec<String> {
    // The first two bytes of a window, as a quick filter before the set lookup.
    let mut starts = vec![false; 1 << 16];
    for w in windows {
        starts[usize::from(u16::from_le_bytes([w[0], w[1]]))] = true;
    }
    items
        .iter()
        .filter(|(_, bytes)| {
            bytes.windows(32).any(|w| {
                starts[usize::from(u16::from_le_bytes([w[0], w[1]]))] && windows.contains(w)
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// What is at rest: with a private server, every file under its root (the bucket's
/// objects, and the multipart uploads' parts that s3s-fs keeps at the root); with a
/// shared server (no root), every object listed in the bucket, fetched with GET (parts
/// of open multipart uploads are not listed, so not seen then).
async fn at_rest(bucket: &Bucket) -> Vec<(String, Vec<u8>)> {
    if let Some(root) = &bucket.root {
        return files_under(root)
            .into_iter()
            .map(|rel| {
                let bytes = std::fs::read(root.join(&rel)).unwrap_or_default();
                (rel.to_string_lossy().into_owned(), bytes)
            })
            .collect();
    }
    let s3 = raw(bucket);
    let keys: Vec<ObjectPath> = s3
        .list(None)
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let bytes = s3.get(&key).await.unwrap().bytes().await.unwrap();
        out.push((key.to_string(), bytes.to_vec()));
    }
    out
}

/// No 32-byte window of a recognizable plaintext is anywhere at rest: mid-upload
/// (parts, tail with its provisional record, state with its sealed hash state) and
/// after the commit; the scan does find it in an unencrypted blob, so it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_at_rest() {
    let bucket = wharf_testenv::s3::bucket().await;
    let s = encrypted(&bucket, "", "part_size=5MiB");
    let (data, windows) = recognizable(12 * MIB + 4321);
    let digest = Algorithm::Sha256.digest(&data);
    s.start_upload("secret").await.unwrap();
    let mut offset = 0;
    // Appends ending mid-record, after parts, and with fewer bytes than a hash block.
    for size in [50, 7 * MIB + 3, 40, 5 * MIB - 2] {
        s.append_upload(
            "secret",
            offset as u64,
            body(&data[offset..offset + size], 65_536),
        )
        .await
        .unwrap();
        offset += size;
        let files = at_rest(&bucket).await;
        if bucket.root.is_some() && offset > 5 * MIB {
            // The parts of the open multipart upload are among the files scanned.
            assert!(
                files
                    .iter()
                    .any(|(name, _)| name.starts_with(".upload_id-")),
                "no part file at the server's root"
            );
        }
        let found = holding(&files, &windows);
        assert_eq!(found, Vec::<String>::new(), "plaintext at {offset} bytes");
    }
    s.append_upload("secret", offset as u64, body(&data[offset..], 1000))
        .await
        .unwrap();
    s.commit_upload("secret", &digest).await.unwrap();
    let objects = at_rest(&bucket).await;
    assert!(objects.len() >= 2, "blob and envelope: {:?}", objects.len());
    assert_eq!(holding(&objects, &windows), Vec::<String>::new());
    assert!(read_all(&s, &digest, None).await == data);

    // The same content through a store without a keyring is found by the same scan.
    let p = plain(&bucket, "clear", "");
    p.start_upload("clear").await.unwrap();
    p.append_upload("clear", 0, body(&data[..1000], 100))
        .await
        .unwrap();
    assert!(!holding(&at_rest(&bucket).await, &windows).is_empty());
    p.abort_upload("clear").await.unwrap();
}

/// A blob overwritten with one byte flipped, or truncated by its last record, fails to
/// read; an altered envelope too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_objects_fail_on_read() {
    let bucket = wharf_testenv::s3::bucket().await;
    let s = encrypted(&bucket, "", "");
    let data = content(2, 3 * SEGMENT + 777);
    let digest = Algorithm::Sha256.digest(&data);
    s.start_upload("t").await.unwrap();
    s.append_upload("t", 0, body(&data, 10_000)).await.unwrap();
    s.commit_upload("t", &digest).await.unwrap();
    assert!(read_all(&s, &digest, None).await == data);

    let s3 = raw(&bucket);
    let key = ObjectPath::from(s.blob_key(&digest));
    let original = s3.get(&key).await.unwrap().bytes().await.unwrap();

    // One bit of record 1 flipped.
    let mut flipped = original.to_vec();
    flipped[RECORD_LEN + 100] ^= 0x01;
    s3.put(&key, PutPayload::from(flipped)).await.unwrap();
    let err = try_read_all(&s, &digest, None).await.unwrap_err();
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(
        try_read_all(&s, &digest, Some(SEGMENT as u64..SEGMENT as u64 + 10))
            .await
            .is_err()
    );
    // Record 0 is untouched: a range inside it reads.
    assert!(read_all(&s, &digest, Some(0..100)).await[..] == data[..100]);

    // The last record dropped: a whole number of records, but not final.
    let truncated = original.slice(..3 * RECORD_LEN);
    s3.put(&key, PutPayload::from(truncated)).await.unwrap();
    assert_eq!(s.stat(&digest).await.unwrap(), Some(3 * SEGMENT as u64));
    let err = try_read_all(&s, &digest, None).await.unwrap_err();
    assert!(err.to_string().contains("truncat"), "{err}");

    // The envelope altered.
    s3.put(&key, PutPayload::from(original.clone()))
        .await
        .unwrap();
    assert!(read_all(&s, &digest, None).await == data);
    let env_key = ObjectPath::from(s.blob_envelope_key(&digest));
    let envelope = s3.get(&env_key).await.unwrap().bytes().await.unwrap();
    let mut bad = envelope.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    s3.put(&env_key, PutPayload::from(bad)).await.unwrap();
    match s.read(&digest, None).await {
        Err(BlobError::Io(e)) => assert!(e.to_string().contains("envelope"), "{e}"),
        Err(e) => panic!("altered envelope: {e}"),
        Ok(_) => panic!("altered envelope: read succeeded"),
    }
}

/// Blobs and uploads from before encryption was enabled: a blob without an envelope is
/// read as plaintext by an encrypting store; an unencrypted upload in progress is
/// finished unencrypted; a store without a keyring refuses an encrypted upload.
/// Encrypting stores hand out no download URL, even with `redirect=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_and_download_urls() {
    let bucket = wharf_testenv::s3::bucket().await;
    let old = plain(&bucket, "", "redirect=true");
    let new = encrypted(&bucket, "", "redirect=true");
    assert!(new.encrypts() && !old.encrypts());

    let data = content(3, 200_000);
    let digest = Algorithm::Sha256.digest(&data);
    old.start_upload("before").await.unwrap();
    old.append_upload("before", 0, body(&data, 65_536))
        .await
        .unwrap();
    old.commit_upload("before", &digest).await.unwrap();
    assert_eq!(new.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert!(read_all(&new, &digest, None).await == data);
    assert!(read_all(&new, &digest, Some(1000..150_000)).await[..] == data[1000..150_000]);
    assert!(old
        .download_url(&digest, Duration::from_secs(60))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        new.download_url(&digest, Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );

    // Started unencrypted, continued and committed by the encrypting store.
    let data2 = content(4, 100_000);
    let digest2 = Algorithm::Sha256.digest(&data2);
    old.start_upload("midway").await.unwrap();
    old.append_upload("midway", 0, body(&data2[..50_000], 4096))
        .await
        .unwrap();
    new.append_upload("midway", 50_000, body(&data2[50_000..], 4096))
        .await
        .unwrap();
    new.commit_upload("midway", &digest2).await.unwrap();
    assert!(read_all(&old, &digest2, None).await == data2);

    // An encrypted upload cannot be continued without the keyring.
    new.start_upload("sealed").await.unwrap();
    new.append_upload("sealed", 0, body(b"abc", 1))
        .await
        .unwrap();
    assert_eq!(old.upload_size("sealed").await.unwrap(), 3);
    match old.append_upload("sealed", 3, body(b"def", 1)).await {
        Err(BlobError::Io(e)) => assert!(e.to_string().contains("no keyring"), "{e}"),
        r => panic!("append without keyring: {r:?}"),
    }
    // The failed append released its claim: the keyring holder goes on at once.
    new.append_upload("sealed", 3, body(b"def", 1))
        .await
        .unwrap();
    let digest3 = Algorithm::Sha256.digest(b"abcdef");
    new.commit_upload("sealed", &digest3).await.unwrap();
    assert_eq!(read_all(&new, &digest3, None).await, b"abcdef");
    assert_eq!(new.stat(&digest3).await.unwrap(), Some(6));
}

/// SHA-512 digests (checked by decrypting the staged blob), the empty blob, a wrong
/// digest that leaves nothing behind, and a commit of content already stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_commits() {
    let bucket = wharf_testenv::s3::bucket().await;
    let s = encrypted(&bucket, "", "part_size=5MiB");
    let data = content(5, 6 * MIB + 5);
    let d512 = Algorithm::Sha512.digest(&data);
    s.start_upload("u512").await.unwrap();
    s.append_upload("u512", 0, body(&data, MIB)).await.unwrap();
    let wrong = Algorithm::Sha512.digest(b"other");
    s.start_upload("bad").await.unwrap();
    s.append_upload("bad", 0, body(&data, MIB)).await.unwrap();
    match s.commit_upload("bad", &wrong).await {
        Err(BlobError::DigestMismatch { computed, .. }) => assert_eq!(computed, d512),
        r => panic!("wrong digest: {r:?}"),
    }
    assert_eq!(s.stat(&wrong).await.unwrap(), None);
    s.commit_upload("u512", &d512).await.unwrap();
    assert!(read_all(&s, &d512, None).await == data);

    let empty = Algorithm::Sha256.digest(b"");
    s.start_upload("empty").await.unwrap();
    assert_eq!(s.commit_upload("empty", &empty).await.unwrap(), 0);
    assert_eq!(s.stat(&empty).await.unwrap(), Some(0));
    assert_eq!(read_all(&s, &empty, None).await, b"");

    // The same content again: the blob and its envelope stay as they are.
    let d256 = Algorithm::Sha256.digest(&data);
    for id in ["first", "again"] {
        s.start_upload(id).await.unwrap();
        s.append_upload(id, 0, body(&data, 3 * MIB)).await.unwrap();
        s.commit_upload(id, &d256).await.unwrap();
    }
    assert!(read_all(&s, &d256, None).await == data);
    assert_eq!(s.list_uploads().await.unwrap(), Vec::<String>::new());

    s.delete(&d256).await.unwrap();
    assert_eq!(s.stat(&d256).await.unwrap(), None);
    if let Some(dir) = bucket.dir() {
        let hex = d256.hex();
        assert!(!dir
            .join(format!("blobs/sha256/{}/{hex}.envelope", &hex[..2]))
            .exists());
    }
}
