//! The record format: sizes, the mapping between plaintext and ciphertext offsets,
//! record authentication data, and sealing/opening of one record.

use crate::CryptError;
use ring::aead::{Aad, LessSafeKey, Nonce};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::ops::Range;

/// Plaintext bytes per segment (every record but the last holds exactly this many).
pub const SEGMENT: usize = 64 * 1024;
/// Bytes of the random nonce at the start of each record.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag at the end of each record.
pub const TAG_LEN: usize = 16;
/// Bytes a record adds to its segment: nonce and tag.
pub const RECORD_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Bytes of a full record (one full segment).
pub const RECORD_LEN: usize = SEGMENT + RECORD_OVERHEAD;

const SEG: u64 = SEGMENT as u64;
const REC: u64 = RECORD_LEN as u64;
const OVH: u64 = RECORD_OVERHEAD as u64;

/// Domain label at the start of every record's authenticated data.
const RECORD_AAD_LABEL: &[u8; 4] = b"WCR1";
/// Length of a record's authenticated data.
const RECORD_AAD_LEN: usize = 4 + 16 + 8 + 1;

/// The random 16-byte identity of an encrypted blob, bound into every record and
/// every wrap of its data key. Shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId(pub(crate) [u8; 16]);

impl BlobId {
    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random id.
    pub(crate) fn random() -> Result<BlobId, CryptError> {
        let mut id = [0u8; 16];
        fill_random(&mut id)?;
        Ok(BlobId(id))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// The role of a record, bound into its authenticated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A full segment with more records after it.
    Middle,
    /// The last record of a committed blob.
    Final,
    /// The sealed partial segment at the end of a staged (unfinished) upload.
    Provisional,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            RecordKind::Middle => 0,
            RecordKind::Final => 1,
            RecordKind::Provisional => 2,
        }
    }

    const ALL: [RecordKind; 3] = [
        RecordKind::Middle,
        RecordKind::Final,
        RecordKind::Provisional,
    ];
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Middle => "an intermediate",
            RecordKind::Final => "a final",
            RecordKind::Provisional => "a provisional",
        })
    }
}

/// The authenticated data of record `index` of blob `blob_id`.
pub(crate) fn record_aad(blob_id: &BlobId, index: u64, kind: RecordKind) -> [u8; RECORD_AAD_LEN] {
    let mut aad = [0u8; RECORD_AAD_LEN];
    aad[..4].copy_from_slice(RECORD_AAD_LABEL);
    aad[4..20].copy_from_slice(&blob_id.0);
    aad[20..28].copy_from_slice(&index.to_be_bytes());
    aad[28] = kind.byte();
    aad
}

/// Ciphertext length of a blob of `plain_len` plaintext bytes:
/// `plain_len + 28 × max(1, ⌈plain_len / SEGMENT⌉)`.
pub fn ciphertext_len(plain_len: u64) -> Result<u64, CryptError> {
    let records = plain_len.div_ceil(SEG).max(1);
    records
        .checked_mul(OVH)
        .and_then(|o| o.checked_add(plain_len))
        .ok_or(CryptError::TooLarge("plaintext length"))
}

/// Plaintext length of a committed blob whose ciphertext is `ciphertext_len` bytes.
///
/// With `n = ciphertext_len / RECORD_LEN` and `r = ciphertext_len % RECORD_LEN`: the
/// plaintext is `n × SEGMENT` when `r = 0`, else `n × SEGMENT + r − 28`. Lengths no
/// plaintext produces are refused: `0` (even the empty blob has one 28-byte record),
/// `0 < r < 28` (a record shorter than nonce and tag) and `r = 28` with `n > 0` (an
/// empty last record after full ones: a plaintext that fills its last segment ends
/// with that full record).
pub fn plaintext_len(ciphertext_len: u64) -> Result<u64, CryptError> {
    let len = ciphertext_len;
    if len == 0 {
        return Err(CryptError::CiphertextLength {
            len,
            reason: "every encrypted blob has at least one record of 28 bytes",
        });
    }
    let full = len / REC;
    let rest = len % REC;
    if rest == 0 {
        return Ok(full * SEG);
    }
    if rest < OVH {
        return Err(CryptError::CiphertextLength {
            len,
            reason: "the last record is shorter than its nonce and tag",
        });
    }
    if rest == OVH && full > 0 {
        return Err(CryptError::CiphertextLength {
            len,
            reason: "an empty last record follows full records",
        });
    }
    Ok(full * SEG + rest - OVH)
}

/// Number of records of a committed blob whose ciphertext is `ciphertext_len` bytes:
/// `⌈ciphertext_len / RECORD_LEN⌉`, for lengths [`plaintext_len`] accepts.
pub fn record_count(ciphertext_len: u64) -> Result<u64, CryptError> {
    plaintext_len(ciphertext_len)?;
    Ok(ciphertext_len.div_ceil(REC))
}

/// Number of records of a blob of `plain_len` plaintext bytes (at least 1).
pub(crate) fn records_for(plain_len: u64) -> u64 {
    plain_len.div_ceil(SEG).max(1)
}

/// Plaintext bytes held by record `index` of a blob of `plain_len` bytes.
pub(crate) fn record_plain_len(index: u64, plain_len: u64) -> usize {
    let start = index.saturating_mul(SEG);
    // At most SEGMENT, so the conversion is lossless.
    (plain_len.saturating_sub(start).min(SEG)) as usize
}

/// The records (indices) holding plaintext range `plain` of a blob of `plain_len`
/// bytes. A full read of the empty blob is its one (empty, final) record; any other
/// empty range needs no record.
pub(crate) fn record_range(plain: &Range<u64>, plain_len: u64) -> Result<Range<u64>, CryptError> {
    if plain.start > plain.end || plain.end > plain_len {
        return Err(CryptError::RangeOutsideBlob {
            start: plain.start,
            end: plain.end,
            len: plain_len,
        });
    }
    if plain_len == 0 {
        return Ok(0..1);
    }
    if plain.start == plain.end {
        let at = (plain.start / SEG).min(records_for(plain_len));
        return Ok(at..at);
    }
    Ok(plain.start / SEG..(plain.end - 1) / SEG + 1)
}

/// The byte range of the ciphertext to fetch to decrypt plaintext range `plain` of a
/// blob of `plain_len` bytes: whole records, from the one holding `plain.start` to the
/// one holding byte `plain.end - 1`.
///
/// A full read of the empty blob (`0..0` of `0`) fetches its single record, so that it
/// is verified; any other empty range fetches nothing. A range outside the blob is
/// [`CryptError::RangeOutsideBlob`] (a backend checks ranges against the plaintext
/// length first, so this only catches mistakes).
pub fn ciphertext_range(plain: Range<u64>, plain_len: u64) -> Result<Range<u64>, CryptError> {
    let records = record_range(&plain, plain_len)?;
    let total = ciphertext_len(plain_len)?;
    let start = records.start.saturating_mul(REC).min(total);
    let end = records.end.saturating_mul(REC).min(total);
    Ok(start..end)
}

/// Where things are in the ciphertext of a staged (uncommitted) upload: complete
/// intermediate records, then one provisional record holding the pending partial
/// segment (see [`crate::Encryptor::seal_pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedLayout {
    /// Complete intermediate records before the provisional one.
    pub segments_done: u64,
    /// Byte range of the provisional record (empty when nothing was ever staged).
    pub provisional: Range<u64>,
    /// Plaintext bytes staged so far (what an upload reports as its size).
    pub plaintext_len: u64,
}

/// The layout of `staged_len` bytes of staged ciphertext. `0` is an upload that never
/// sealed anything; otherwise the last record (the last `((staged_len − 1) mod
/// RECORD_LEN) + 1` bytes) is the provisional one, which holds between 1 and `SEGMENT`
/// plaintext bytes (0 only when it is the only record).
pub fn staged_layout(staged_len: u64) -> Result<StagedLayout, CryptError> {
    if staged_len == 0 {
        return Ok(StagedLayout {
            segments_done: 0,
            provisional: 0..0,
            plaintext_len: 0,
        });
    }
    let records = staged_len.div_ceil(REC);
    let segments_done = records - 1;
    let start = segments_done * REC;
    let tail = staged_len - start;
    if tail < OVH {
        return Err(CryptError::CiphertextLength {
            len: staged_len,
            reason: "the provisional record is shorter than its nonce and tag",
        });
    }
    if tail == OVH && segments_done > 0 {
        return Err(CryptError::CiphertextLength {
            len: staged_len,
            reason: "an empty provisional record follows full records",
        });
    }
    Ok(StagedLayout {
        segments_done,
        provisional: start..staged_len,
        plaintext_len: segments_done * SEG + tail - OVH,
    })
}

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), CryptError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptError::Random)
}

/// Random nonces, drawn from the system generator in batches (one system call per
/// batch rather than per record).
pub(crate) struct NonceSource {
    rng: SystemRandom,
    buf: [u8; NONCE_LEN * 32],
    used: usize,
}

impl NonceSource {
    pub(crate) fn new() -> NonceSource {
        NonceSource {
            rng: SystemRandom::new(),
            buf: [0; NONCE_LEN * 32],
            used: NONCE_LEN * 32,
        }
    }

    pub(crate) fn next(&mut self) -> Result<[u8; NONCE_LEN], CryptError> {
        if self.used == self.buf.len() {
            self.rng
                .fill(&mut self.buf)
                .map_err(|_| CryptError::Random)?;
            self.used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.buf[self.used..self.used + NONCE_LEN]);
        self.used += NONCE_LEN;
        Ok(nonce)
    }
}

/// Seals `rec` in place: on entry `[NONCE_LEN bytes of any value][plaintext]`, on
/// return `[nonce][ciphertext][tag]`.
pub(crate) fn seal_record(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    blob_id: &BlobId,
    index: u64,
    kind: RecordKind,
    rec: &mut Vec<u8>,
) -> Result<(), CryptError> {
    rec[..NONCE_LEN].copy_from_slice(&nonce);
    let aad = record_aad(blob_id, index, kind);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut rec[NONCE_LEN..],
        )
        .map_err(|_| CryptError::Internal("sealing a record"))?;
    rec.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens record `rec` (`[nonce][ciphertext][tag]`) in place as record `index` of kind
/// `kind`; returns the plaintext length (the plaintext is at `rec[NONCE_LEN..]`).
/// On failure the contents of `rec` are unspecified.
pub(crate) fn open_record(
    key: &LessSafeKey,
    blob_id: &BlobId,
    index: u64,
    kind: RecordKind,
    rec: &mut [u8],
) -> Result<usize, ()> {
    if rec.len() < RECORD_OVERHEAD {
        return Err(());
    }
    let (nonce, body) = rec.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
    let aad = record_aad(blob_id, index, kind);
    key.open_in_place(nonce, Aad::from(aad), body)
        .map(|plain| plain.len())
        .map_err(|_| ())
}

/// The error for record `index` that failed to open as `expected`: the record (an
/// intact copy) is tried as the other kinds, so that a truncated blob, an unfinished
/// upload or a misplaced final record is named as such.
pub(crate) fn diagnose(
    key: &LessSafeKey,
    blob_id: &BlobId,
    index: u64,
    expected: RecordKind,
    intact: Option<&[u8]>,
) -> CryptError {
    if let Some(record) = intact {
        for found in RecordKind::ALL {
            if found == expected {
                continue;
            }
            let mut copy = record.to_vec();
            if open_record(key, blob_id, index, found, &mut copy).is_ok() {
                return match (expected, found) {
                    (RecordKind::Final, RecordKind::Middle) => CryptError::Truncated {
                        blob_id: *blob_id,
                        index,
                    },
                    _ => CryptError::WrongRecordKind {
                        blob_id: *blob_id,
                        index,
                        expected,
                        found,
                    },
                };
            }
        }
    }
    CryptError::RecordAuth {
        blob_id: *blob_id,
        index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for plain in [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 2 * SEG + 5, 1 << 40] {
            let c = ciphertext_len(plain).unwrap();
            assert_eq!(plaintext_len(c).unwrap(), plain, "plain {plain}");
        }
        assert_eq!(ciphertext_len(0).unwrap(), 28);
        assert_eq!(ciphertext_len(SEG).unwrap(), REC);
        assert_eq!(ciphertext_len(SEG + 1).unwrap(), REC + 29);
        assert!(ciphertext_len(u64::MAX).is_err());
    }

    #[test]
    fn impossible_lengths() {
        for bad in [0, 1, 27, REC + 1, REC + 27, REC + 28, 3 * REC + 28] {
            assert!(
                matches!(plaintext_len(bad), Err(CryptError::CiphertextLength { .. })),
                "{bad}"
            );
        }
        // Every ciphertext length of every plaintext length up to a few records is
        // accepted, and no other.
        let valid: std::collections::HashSet<u64> =
            (0..4 * SEG).map(|p| ciphertext_len(p).unwrap()).collect();
        for c in 0..3 * REC + 40 {
            assert_eq!(plaintext_len(c).is_ok(), valid.contains(&c), "{c}");
        }
    }

    #[test]
    fn staged_layouts() {
        let l = staged_layout(0).unwrap();
        assert_eq!(
            (l.segments_done, l.provisional, l.plaintext_len),
            (0, 0..0, 0)
        );
        let l = staged_layout(28).unwrap();
        assert_eq!(
            (l.segments_done, l.provisional, l.plaintext_len),
            (0, 0..28, 0)
        );
        let l = staged_layout(REC).unwrap();
        assert_eq!(
            (l.segments_done, l.provisional, l.plaintext_len),
            (0, 0..REC, SEG)
        );
        let l = staged_layout(REC + 29).unwrap();
        assert_eq!(
            (l.segments_done, l.provisional, l.plaintext_len),
            (1, REC..REC + 29, SEG + 1)
        );
        for bad in [1, 27, REC + 1, REC + 28] {
            assert!(staged_layout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_map_to_records() {
        let len = 3 * SEG + 10;
        let total = ciphertext_len(len).unwrap();
        assert_eq!(ciphertext_range(0..len, len).unwrap(), 0..total);
        assert_eq!(ciphertext_range(0..1, len).unwrap(), 0..REC);
        assert_eq!(ciphertext_range(SEG - 1..SEG + 1, len).unwrap(), 0..2 * REC);
        assert_eq!(ciphertext_range(SEG..2 * SEG, len).unwrap(), REC..2 * REC);
        assert_eq!(ciphertext_range(3 * SEG..len, len).unwrap(), 3 * REC..total);
        assert_eq!(ciphertext_range(5..5, len).unwrap(), 0..0);
        assert_eq!(ciphertext_range(len..len, len).unwrap(), 3 * REC..3 * REC);
        assert_eq!(ciphertext_range(0..0, 0).unwrap(), 0..28);
        assert!(ciphertext_range(0..len + 1, len).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..4;
        assert!(ciphertext_range(reversed, len).is_err());
    }

    #[test]
    fn blob_id_display() {
        let id = BlobId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
    }
}
