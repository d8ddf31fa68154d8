//! SHA-256 and SHA-512 hashers whose state can be saved, moved to another process and
//! resumed there.
//!
//! A staged upload may receive each of its chunks in a different process (replicas
//! sharing one object store), so the hash of what has been staged so far has to live
//! next to the bytes, not in one process's memory. [`ResumableHasher`] is a plain
//! Merkle–Damgård state: the chaining words, the number of bytes hashed and the bytes
//! of the current, incomplete block. It serializes (serde) to a small JSON-friendly
//! form, [`SavedHash`], and hashes through `sha2`'s raw compression functions, so it
//! runs on the same accelerated code (SHA-NI, NEON, AVX2) as [`crate::Hasher`].

use crate::digest::{Algorithm, Digest, DigestError};
use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;
use std::fmt;

/// SHA-256 initial chaining value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-512 initial chaining value (FIPS 180-4, 5.3.5).
const SHA512_IV: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// Blocks per call of the compression function (which takes an array of blocks, so
/// they are copied into one; batching keeps its fast multi-block loop).
const BATCH: usize = 16;

/// The chaining words of one of the two algorithms.
#[derive(Clone, PartialEq, Eq)]
enum Words {
    Sha256([u32; 8]),
    Sha512([u64; 8]),
}

impl Words {
    fn initial(algorithm: Algorithm) -> Words {
        match algorithm {
            Algorithm::Sha256 => Words::Sha256(SHA256_IV),
            Algorithm::Sha512 => Words::Sha512(SHA512_IV),
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Words::Sha256(_) => Algorithm::Sha256,
            Words::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Runs the compression function over `blocks`, whose length is a multiple of the
    /// block size.
    fn compress(&mut self, blocks: &[u8]) {
        match self {
            Words::Sha256(h) => {
                let mut batch = [GenericArray::default(); BATCH];
                for run in blocks.chunks(64 * BATCH) {
                    let n = run.len() / 64;
                    for (slot, block) in batch.iter_mut().zip(run.chunks_exact(64)) {
                        slot.copy_from_slice(block);
                    }
                    sha2::compress256(h, &batch[..n]);
                }
            }
            Words::Sha512(h) => {
                let mut batch = [GenericArray::default(); BATCH];
                for run in blocks.chunks(128 * BATCH) {
                    let n = run.len() / 128;
                    for (slot, block) in batch.iter_mut().zip(run.chunks_exact(128)) {
                        slot.copy_from_slice(block);
                    }
                    sha2::compress512(h, &batch[..n]);
                }
            }
        }
    }

    /// The words as big-endian bytes: the digest once the padding has been hashed.
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Words::Sha256(h) => h.iter().flat_map(|w| w.to_be_bytes()).collect(),
            Words::Sha512(h) => h.iter().flat_map(|w| w.to_be_bytes()).collect(),
        }
    }
}

/// Block size in bytes of `algorithm`'s compression function.
fn block_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::Sha256 => 64,
        Algorithm::Sha512 => 128,
    }
}

/// A streaming SHA-256 or SHA-512 hasher whose state can be saved and restored
/// (see the module documentation). It serializes through [`SavedHash`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SavedHash", into = "SavedHash")]
pub struct ResumableHasher {
    words: Words,
    /// Bytes hashed so far, including those in `pending`.
    len: u64,
    /// The bytes of the current block, fewer than a block.
    pending: Vec<u8>,
}

impl fmt::Debug for ResumableHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumableHasher")
            .field("algorithm", &self.algorithm().name())
            .field("len", &self.len)
            .finish()
    }
}

impl ResumableHasher {
    /// A hasher of `algorithm` that has seen no bytes.
    pub fn new(algorithm: Algorithm) -> ResumableHasher {
        ResumableHasher {
            words: Words::initial(algorithm),
            len: 0,
            pending: Vec::with_capacity(block_len(algorithm)),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        self.words.algorithm()
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when no byte has been hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        let block = block_len(self.algorithm());
        self.len += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (block - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < block {
                return;
            }
            let full = std::mem::take(&mut self.pending);
            self.words.compress(&full);
            self.pending = full;
            self.pending.clear();
        }
        let whole = data.len() - data.len() % block;
        self.words.compress(&data[..whole]);
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// The raw digest of the bytes fed so far (32 bytes for SHA-256, 64 for SHA-512).
    pub fn finalize(mut self) -> Vec<u8> {
        let algorithm = self.algorithm();
        let block = block_len(algorithm);
        // The message length in bits, big-endian, in the last 8 (SHA-256) or 16
        // (SHA-512) bytes of the last block, after a 1 bit and as many 0 bits as needed.
        let bits = u128::from(self.len) * 8;
        let len_field: Vec<u8> = match algorithm {
            Algorithm::Sha256 => (bits as u64).to_be_bytes().to_vec(),
            Algorithm::Sha512 => bits.to_be_bytes().to_vec(),
        };
        let mut tail = std::mem::take(&mut self.pending);
        tail.push(0x80);
        while tail.len() % block != block - len_field.len() {
            tail.push(0);
        }
        tail.extend_from_slice(&len_field);
        self.words.compress(&tail);
        self.words.to_bytes()
    }

    /// The digest of the bytes fed so far.
    ///
    /// The result is built through [`Digest::parse`], which accepts every hex string
    /// this produces; the error is there only because that parser is fallible.
    pub fn finish(self) -> Result<Digest, DigestError> {
        let algorithm = self.algorithm();
        Digest::parse(&format!(
            "{}:{}",
            algorithm.name(),
            hex::encode(self.finalize())
        ))
    }

    /// The state in its serializable form.
    pub fn save(&self) -> SavedHash {
        SavedHash::from(self.clone())
    }

    /// Restores a hasher from a saved state, checking that it is consistent.
    pub fn restore(saved: SavedHash) -> Result<ResumableHasher, RestoreError> {
        ResumableHasher::try_from(saved)
    }
}

/// The serialized form of a [`ResumableHasher`].
///
/// In JSON: `{"algorithm":"sha256","state":"<hex>","length":123,"pending":"<hex>"}`,
/// where `state` is the chaining words in big-endian hex (64 hex characters for
/// SHA-256, 128 for SHA-512), `length` the number of bytes hashed and `pending` the
/// bytes of the incomplete last block (`length` modulo the block size of 64 or 128).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHash {
    /// `sha256` or `sha512`.
    pub algorithm: String,
    /// Chaining words, big-endian, in lowercase hex.
    pub state: String,
    /// Bytes hashed so far.
    pub length: u64,
    /// Bytes of the incomplete block, in lowercase hex.
    pub pending: String,
}

impl From<ResumableHasher> for SavedHash {
    fn from(h: ResumableHasher) -> SavedHash {
        SavedHash {
            algorithm: h.algorithm().name().to_string(),
            state: hex::encode(h.words.to_bytes()),
            length: h.len,
            pending: hex::encode(&h.pending),
        }
    }
}

/// Why a [`SavedHash`] cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The algorithm is neither `sha256` nor `sha512`.
    #[error("saved hash state names algorithm {0:?}; expected sha256 or sha512")]
    Algorithm(String),
    /// A field is not hex of the expected length.
    #[error("saved {algorithm} hash state: {field} is not {expected} hex characters")]
    Encoding {
        /// The algorithm of the state.
        algorithm: &'static str,
        /// The field at fault.
        field: &'static str,
        /// Expected length, in hex characters.
        expected: String,
    },
}

impl TryFrom<SavedHash> for ResumableHasher {
    type Error = RestoreError;

    fn try_from(saved: SavedHash) -> Result<ResumableHasher, RestoreError> {
        let algorithm = match saved.algorithm.as_str() {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(RestoreError::Algorithm(saved.algorithm)),
        };
        let bad = |field: &'static str, expected: String| RestoreError::Encoding {
            algorithm: algorithm.name(),
            field,
            expected,
        };
        let block = block_len(algorithm);
        let state = hex::decode(&saved.state)
            .ok()
            .filter(|b| b.len() == block / 2)
            .ok_or_else(|| bad("state", (block).to_string()))?;
        let pending_len = (saved.length % block as u64) as usize;
        let pending = hex::decode(&saved.pending)
            .ok()
            .filter(|p| p.len() == pending_len)
            .ok_or_else(|| {
                bad(
                    "pending",
                    format!(
                        "{} (length {} modulo {block})",
                        2 * pending_len,
                        saved.length
                    ),
                )
            })?;
        let mut words = Words::initial(algorithm);
        match &mut words {
            Words::Sha256(h) => {
                for (w, b) in h.iter_mut().zip(state.chunks_exact(4)) {
                    *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Words::Sha512(h) => {
                for (w, b) in h.iter_mut().zip(state.chunks_exact(8)) {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(b);
                    *w = u64::from_be_bytes(bytes);
                }
            }
        }
        let mut restored = ResumableHasher {
            words,
            len: saved.length,
            pending: Vec::with_capacity(block),
        };
        restored.pending.extend_from_slice(&pending);
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256, Sha512};

    /// `len` bytes of a fixed pseudo-random sequence.
    fn data(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn reference(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
        match algorithm {
            Algorithm::Sha256 => Sha256::digest(data).to_vec(),
            Algorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Lengths around every block and padding boundary of both algorithms.
    fn lengths() -> Vec<usize> {
        let mut out: Vec<usize> = (0..=300).collect();
        for base in [511, 1023, 4096, 65_536, 100_003] {
            out.extend(base - 2..base + 3);
        }
        out
    }

    #[test]
    fn known_answers() {
        let abc = ResumableHasher::new(Algorithm::Sha256);
        let mut h = abc.clone();
        h.update(b"abc");
        assert_eq!(
            hex::encode(h.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = ResumableHasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(hex::encode(h.finalize()).starts_with("ddaf35a193617aba"));
        let empty = ResumableHasher::new(Algorithm::Sha256).finish().unwrap();
        assert_eq!(empty, Algorithm::Sha256.digest(b""));
    }

    #[test]
    fn matches_sha2_for_many_lengths_in_one_update() {
        let all = data(100_010);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for len in lengths() {
                let mut h = ResumableHasher::new(alg);
                h.update(&all[..len]);
                assert_eq!(h.len(), len as u64);
                assert_eq!(
                    h.finalize(),
                    reference(alg, &all[..len]),
                    "{} of {len} bytes",
                    alg.name()
                );
            }
        }
    }

    #[test]
    fn matches_sha2_at_every_split_point_through_a_saved_state() {
        let all = data(400);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for len in [
                0usize, 1, 63, 64, 65, 127, 128, 129, 200, 255, 256, 257, 400,
            ] {
                let want = reference(alg, &all[..len]);
                for split in 0..=len {
                    let mut first = ResumableHasher::new(alg);
                    first.update(&all[..split]);
                    let json = serde_json::to_string(&first).unwrap();
                    let mut second: ResumableHasher = serde_json::from_str(&json).unwrap();
                    assert_eq!(second, first);
                    second.update(&all[split..len]);
                    assert_eq!(
                        second.finalize(),
                        want,
                        "{} {len} split {split}",
                        alg.name()
                    );
                }
            }
        }
    }

    #[test]
    fn matches_sha2_over_many_uneven_updates() {
        let all = data(1_000_000);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for step in [1usize, 3, 7, 63, 64, 65, 127, 128, 129, 1000, 65_537] {
                let mut h = ResumableHasher::new(alg);
                let mut pos = 0;
                let mut i = 0usize;
                let mut next_restore = 97;
                while pos < all.len() {
                    // Vary the chunk size around `step`, including empty chunks.
                    let n = (step + i % 5).saturating_sub(2).min(all.len() - pos);
                    h.update(&all[pos..pos + n]);
                    pos += n;
                    i += 1;
                    // Now and then, continue from a saved state.
                    if i == next_restore {
                        h = ResumableHasher::restore(h.save()).unwrap();
                        next_restore += 97;
                    }
                }
                assert_eq!(
                    h.finalize(),
                    reference(alg, &all),
                    "{} step {step}",
                    alg.name()
                );
            }
        }
    }

    #[test]
    fn finish_gives_the_digest_of_the_algorithm() {
        let all = data(5000);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = ResumableHasher::new(alg);
            h.update(&all);
            assert_eq!(h.finish().unwrap(), alg.digest(&all));
        }
    }

    #[test]
    fn saved_form() {
        let mut h = ResumableHasher::new(Algorithm::Sha256);
        h.update(&[7u8; 70]);
        let saved = h.save();
        assert_eq!(saved.algorithm, "sha256");
        assert_eq!(saved.length, 70);
        assert_eq!(saved.state.len(), 64);
        assert_eq!(saved.pending, "07".repeat(6));
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["length"], 70);
        assert_eq!(v["algorithm"], "sha256");

        let mut h = ResumableHasher::new(Algorithm::Sha512);
        h.update(&[1u8; 130]);
        let saved = h.save();
        assert_eq!((saved.state.len(), saved.pending.len()), (128, 4));
    }

    #[test]
    fn restore_rejects_inconsistent_states() {
        let mut h = ResumableHasher::new(Algorithm::Sha256);
        h.update(&[1u8; 10]);
        let good = h.save();
        let cases = [
            SavedHash {
                algorithm: "md5".into(),
                ..good.clone()
            },
            SavedHash {
                state: "00".into(),
                ..good.clone()
            },
            SavedHash {
                state: "zz".repeat(32),
                ..good.clone()
            },
            SavedHash {
                length: 11,
                ..good.clone()
            },
            SavedHash {
                pending: String::new(),
                ..good.clone()
            },
            SavedHash {
                algorithm: "sha512".into(),
                ..good.clone()
            },
        ];
        for bad in cases {
            assert!(ResumableHasher::restore(bad.clone()).is_err(), "{bad:?}");
            let json = serde_json::to_string(&bad).unwrap();
            assert!(serde_json::from_str::<ResumableHasher>(&json).is_err());
        }
        assert_eq!(ResumableHasher::restore(good).unwrap(), h);
    }

    /// `cargo test --release -p wharf-oci resumable::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn speed() {
        let block = data(1 << 20);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let t = std::time::Instant::now();
            let mut h = ResumableHasher::new(alg);
            for _ in 0..256 {
                h.update(&block);
            }
            let ours = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let mut r = alg.hasher();
            for _ in 0..256 {
                r.update(&block);
            }
            let theirs = t.elapsed().as_secs_f64();
            assert_eq!(h.finish().unwrap(), r.finish());
            println!(
                "{}: 256 MiB resumable {ours:.3} s, sha2 {theirs:.3} s",
                alg.name()
            );
        }
    }
}
