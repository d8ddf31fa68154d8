//! Throughput of `S3BlobStore` with and without encryption at rest, against the test
//! S3 server (`s3s-fs` on loopback). Ignored by default; run with
//! `cargo test --release -p wharf-blob-s3 --test s3_throughput -- --ignored --nocapture`.

use base64::Engine;
use bytes::Bytes;
use futures::{stream, StreamExt};
use std::io;
use std::sync::Arc;
use std::time::Instant;
use wharf_blob::BlobStore;
use wharf_blob_s3::{S3BlobStore, S3Config};
use wharf_crypt::Keyring;
use wharf_oci::Algorithm;

const MIB: usize = 1 << 20;
const LEN: usize = 256 * MIB;
/// Body chunks as an HTTP server hands them over.
const CHUNK: usize = 64 * 1024;

fn content(len: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn rate(bytes: usize, secs: f64) -> String {
    format!(
        "{:7.1} MiB/s ({secs:.2} s)",
        bytes as f64 / MIB as f64 / secs
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run explicitly, in release mode"]
async fn throughput_256mib() {
    let bucket = wharf_testenv::s3::bucket().await;
    let config = S3Config::from_url_with_env(&bucket.url(), bucket.env()).unwrap();
    let keyring = Arc::new(
        Keyring::parse(
            &format!(
                "k {}\n",
                base64::engine::general_purpose::STANDARD.encode([9u8; 32])
            ),
            "bench",
        )
        .unwrap(),
    );
    let plain = S3BlobStore::new(config.clone()).unwrap();
    let encrypted = S3BlobStore::with_keyring(config, keyring).unwrap();
    let data = content(LEN);
    let digest = Algorithm::Sha256.digest(&data);
    for round in 0..3 {
        for (name, store) in [("plaintext", &plain), ("encrypted", &encrypted)] {
            let id = format!("{name}{round}");
            let t = Instant::now();
            store.start_upload(&id).await.unwrap();
            let chunks: Vec<io::Result<Bytes>> = (0..LEN)
                .step_by(CHUNK)
                .map(|i| Ok(data.slice(i..(i + CHUNK).min(LEN))))
                .collect();
            store
                .append_upload(&id, 0, Box::pin(stream::iter(chunks)))
                .await
                .unwrap();
            let appended = t.elapsed().as_secs_f64();
            store.commit_upload(&id, &digest).await.unwrap();
            let uploaded = t.elapsed().as_secs_f64();

            let t = Instant::now();
            let mut s = store.read(&digest, None).await.unwrap();
            let mut n = 0;
            while let Some(c) = s.next().await {
                n += c.unwrap().len();
            }
            assert_eq!(n, LEN);
            let read = t.elapsed().as_secs_f64();
            println!(
                "round {round} {name}: append {} | append+commit {} | read {}",
                rate(LEN, appended),
                rate(LEN, uploaded),
                rate(LEN, read)
            );
            // Next round commits afresh.
            store.delete(&digest).await.unwrap();
        }
    }
}
