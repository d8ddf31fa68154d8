//! Helpers shared by the integration tests.
#![allow(dead_code)]

use base64::Engine;
use bytes::Bytes;
use wharf_crypt::{DataKey, Decryptor, Encryptor, Envelope, Keyring, SEGMENT};

pub const S: usize = SEGMENT;

/// A small deterministic generator (splitmix64), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// `data` cut into pieces of `lo..=hi` bytes.
    pub fn split<'a>(&mut self, data: &'a [u8], lo: usize, hi: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.between(lo, hi).min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
}

/// The base64 key file line for a key whose 32 bytes are all `fill`.
pub fn key_line(id: &str, fill: u8) -> String {
    format!(
        "{id} {}\n",
        base64::engine::general_purpose::STANDARD.encode([fill; 32])
    )
}

/// A keyring with `default` (current) and `alias/team-a`.
pub fn keyring() -> Keyring {
    let text = key_line("default", 1) + &key_line("alias/team-a", 2);
    Keyring::parse(&text, "test keys").unwrap()
}

/// A fresh data key (new envelope under `default`).
pub fn data_key() -> DataKey {
    let ring = keyring();
    Envelope::new(&ring, &["default"])
        .unwrap()
        .data_key(&ring)
        .unwrap()
}

/// Encrypts `data` given in `pieces`, checking the shape of what comes out.
pub fn encrypt_pieces(key: &DataKey, pieces: &[&[u8]]) -> Vec<u8> {
    let mut enc = Encryptor::new(key).unwrap();
    let mut out = Vec::new();
    for p in pieces {
        for rec in enc.update(p).unwrap() {
            assert_eq!(
                rec.len(),
                wharf_crypt::RECORD_LEN,
                "intermediate records are full"
            );
            out.extend_from_slice(&rec);
        }
    }
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

/// Feeds `ciphertext` to `dec` in chunks of `lo..=hi` bytes (shared chunks when
/// `shared`, so that the gathering path is taken) and collects the plaintext.
pub fn feed(
    rng: &mut Rng,
    mut dec: Decryptor,
    ciphertext: &[u8],
    lo: usize,
    hi: usize,
    shared: bool,
) -> Result<Vec<u8>, wharf_crypt::CryptError> {
    let mut out = Vec::new();
    let whole = Bytes::copy_from_slice(ciphertext);
    let mut keep = Vec::new();
    let mut at = 0;
    while at < ciphertext.len() {
        let n = rng.between(lo, hi).min(ciphertext.len() - at);
        let chunk = if shared {
            let c = whole.slice(at..at + n);
            keep.push(c.clone());
            c
        } else {
            Bytes::copy_from_slice(&ciphertext[at..at + n])
        };
        at += n;
        dec.push(chunk)?;
        while let Some(p) = dec.next_plaintext()? {
            out.extend_from_slice(&p);
        }
    }
    dec.finish()?;
    assert!(dec.is_done());
    Ok(out)
}
