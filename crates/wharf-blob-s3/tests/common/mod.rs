//! Helpers shared by the S3 backend's test files.
#![allow(dead_code)]

use bytes::Bytes;
use futures::{stream, StreamExt};
use std::io;
use std::path::{Path, PathBuf};
use wharf_blob::{BlobError, BlobStore, ByteStream};
use wharf_oci::Digest;

/// `len` pseudo-random bytes, distinct for each `seed`.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `data` as a request body of `chunk`-byte pieces.
pub fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

/// The whole blob, or `range` of it, or the read error.
pub async fn try_read_all(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> io::Result<Vec<u8>> {
    let mut s = store.read(digest, range).await.map_err(io::Error::other)?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

/// The whole blob, or `range` of it.
pub async fn read_all(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    try_read_all(store, digest, range).await.unwrap()
}

/// Every file under `dir` (relative paths), sorted; empty if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(rel) = path.strip_prefix(base) {
                out.push(rel.to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Appends `data` to upload `id` in pieces of `sizes`, alternating between replicas
/// `a` and `b` (one request of a piece, or many odd chunks); after each append the other
/// replica reports the same size, and at the fifth it refuses a stale offset.
pub async fn take_turns(
    a: &dyn BlobStore,
    b: &dyn BlobStore,
    id: &str,
    sizes: &[usize],
    data: &[u8],
) {
    let mut offset = 0usize;
    for (i, size) in sizes.iter().enumerate() {
        let replica: &dyn BlobStore = if i % 2 == 0 { a } else { b };
        let other: &dyn BlobStore = if i % 2 == 0 { b } else { a };
        // Requests of different shapes: one chunk, or many odd ones.
        let chunk = if i % 3 == 0 { *size } else { 65_537 };
        let staged = replica
            .append_upload(id, offset as u64, body(&data[offset..offset + size], chunk))
            .await
            .unwrap_or_else(|e| panic!("append {i} of {size} bytes at {offset}: {e}"));
        offset += size;
        assert_eq!(staged, offset as u64, "append {i}");
        assert_eq!(other.upload_size(id).await.unwrap(), offset as u64);
        // The other replica refuses an append at a stale offset.
        if i == 4 {
            match other
                .append_upload(id, (offset - size) as u64, body(b"late", 4))
                .await
            {
                Err(BlobError::OffsetMismatch { size: s, .. }) => assert_eq!(s, offset as u64),
                r => panic!("stale append: {r:?}"),
            }
        }
    }
}
