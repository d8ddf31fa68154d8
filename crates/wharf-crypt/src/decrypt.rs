//! Decryption of whole blobs, ranges and staged uploads, from chunks or streams.

use crate::format::{
    diagnose, open_record, record_plain_len, record_range, records_for, staged_layout, RecordKind,
    NONCE_LEN, SEGMENT,
};
use crate::{ciphertext_range, BlobId, ByteStream, CryptError, DataKey};
use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use ring::aead::LessSafeKey;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

const SEG: u64 = SEGMENT as u64;

/// Decrypts the records covering a plaintext range and yields exactly the bytes of the
/// range, verifying every record it reads.
///
/// Feed it the ciphertext bytes of [`Decryptor::ciphertext_range`] in order, in chunks
/// of any size ([`Decryptor::push`]), and take the plaintext out with
/// [`Decryptor::next_plaintext`]; at the end of the input, [`Decryptor::finish`] says
/// whether bytes were missing. It holds at most one record beside the chunks given to
/// it, and the plaintext it returns shares the record's buffer (no copy); a record that
/// arrives whole in a chunk no one else holds is decrypted in that chunk's memory.
///
/// # What is verified
///
/// Every record read is authenticated as record *i* of this blob (blob id, index), of
/// the kind its position requires: intermediate, or — for the blob's last record —
/// final (committed blob) or provisional (staged upload). A read that includes the last
/// record therefore detects truncation and extension; **a range read that stops before
/// the last record cannot tell whether the blob was truncated after it** (what it
/// returns is still authentic). Full reads always include the last record.
pub struct Decryptor {
    key: LessSafeKey,
    blob_id: BlobId,
    plain: Range<u64>,
    /// Plaintext length of the blob (or of the staged upload).
    plain_len: u64,
    /// Records to read: `next..end`.
    next: u64,
    end: u64,
    /// Index of the blob's last record and what it must be.
    last_index: u64,
    last_kind: RecordKind,
    /// A partial record gathered from several chunks.
    acc: BytesMut,
    /// The rest of the current input chunk, when this decryptor holds it alone.
    owned: BytesMut,
    /// Input chunks not yet consumed.
    input: VecDeque<Bytes>,
    /// The ciphertext bytes needed.
    bytes: Range<u64>,
    expected: u64,
    received: u64,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("blob_id", &self.blob_id)
            .field("plain", &self.plain)
            .field("next_record", &self.next)
            .field("end_record", &self.end)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor for plaintext range `plain` of a committed blob of `plain_len` bytes
    /// (from [`crate::plaintext_len`] of its ciphertext length). `0..plain_len` is a
    /// full read.
    pub fn new(key: &DataKey, plain: Range<u64>, plain_len: u64) -> Result<Decryptor, CryptError> {
        let records = record_range(&plain, plain_len)?;
        let bytes = ciphertext_range(plain.clone(), plain_len)?;
        Decryptor::build(key, plain, plain_len, records, bytes, RecordKind::Final)
    }

    /// A decryptor for the whole staged ciphertext of an unfinished upload,
    /// `staged_len` bytes whose last record is provisional (to rebuild a hash of the
    /// staged plaintext, for instance). A staged length of 0 yields nothing.
    pub fn staged(key: &DataKey, staged_len: u64) -> Result<Decryptor, CryptError> {
        let layout = staged_layout(staged_len)?;
        let records = if staged_len == 0 {
            0..0
        } else {
            0..layout.segments_done + 1
        };
        let plain_len = layout.plaintext_len;
        Decryptor::build(
            key,
            0..plain_len,
            plain_len,
            records,
            0..staged_len,
            RecordKind::Provisional,
        )
    }

    fn build(
        key: &DataKey,
        plain: Range<u64>,
        plain_len: u64,
        records: Range<u64>,
        bytes: Range<u64>,
        last_kind: RecordKind,
    ) -> Result<Decryptor, CryptError> {
        Ok(Decryptor {
            key: key.aead()?,
            blob_id: key.blob_id(),
            plain,
            plain_len,
            next: records.start,
            end: records.end,
            last_index: records_for(plain_len) - 1,
            last_kind,
            acc: BytesMut::new(),
            owned: BytesMut::new(),
            input: VecDeque::new(),
            expected: bytes.end - bytes.start,
            bytes,
            received: 0,
        })
    }

    /// The ciphertext bytes to fetch and feed, as a byte range of the blob's ciphertext.
    pub fn ciphertext_range(&self) -> Range<u64> {
        self.bytes.clone()
    }

    /// Gives the next chunk of ciphertext. More bytes than the range needs are refused.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), CryptError> {
        self.received += chunk.len() as u64;
        if self.received > self.expected {
            return Err(CryptError::ExcessCiphertext {
                blob_id: self.blob_id,
                expected: self.expected,
            });
        }
        if !chunk.is_empty() {
            self.input.push_back(chunk);
        }
        Ok(())
    }

    /// Whether every record of the range has been decrypted.
    pub fn is_done(&self) -> bool {
        self.next == self.end
    }

    /// The next piece of plaintext of the range, once a whole record has been given;
    /// `None` when more input is needed or the range is done ([`Decryptor::is_done`]).
    pub fn next_plaintext(&mut self) -> Result<Option<Bytes>, CryptError> {
        while self.next < self.end {
            let rec_len = record_plain_len(self.next, self.plain_len) + crate::RECORD_OVERHEAD;
            let Some(record) = self.take_record(rec_len) else {
                return Ok(None);
            };
            let plain = self.open(record)?;
            if !plain.is_empty() {
                return Ok(Some(plain));
            }
        }
        Ok(None)
    }

    /// The next record of `rec_len` bytes, if the input holds all of it. A record lying
    /// whole in a chunk that this decryptor owns alone is split off that chunk without
    /// copying; otherwise its bytes are gathered into the accumulation buffer.
    fn take_record(&mut self, rec_len: usize) -> Option<BytesMut> {
        loop {
            if self.acc.is_empty() && self.owned.len() >= rec_len {
                return Some(self.owned.split_to(rec_len));
            }
            if self.acc.is_empty() && self.owned.is_empty() {
                // Own the next chunk if no one else holds it.
                let front = self.input.pop_front()?;
                match front.try_into_mut() {
                    Ok(own) => {
                        self.owned = own;
                        continue;
                    }
                    Err(shared) => self.input.push_front(shared),
                }
            }
            if self.acc.capacity() < rec_len {
                self.acc.reserve(rec_len - self.acc.len());
            }
            let want = rec_len - self.acc.len();
            if !self.owned.is_empty() {
                let take = want.min(self.owned.len());
                self.acc.extend_from_slice(&self.owned[..take]);
                self.owned.advance(take);
            } else {
                let front = self.input.front_mut()?;
                let take = want.min(front.len());
                self.acc.extend_from_slice(&front[..take]);
                front.advance(take);
                if front.is_empty() {
                    self.input.pop_front();
                }
            }
            if self.acc.len() == rec_len {
                return Some(self.acc.split_to(rec_len));
            }
        }
    }

    /// Opens one record and returns the part of its plaintext inside the range.
    fn open(&mut self, mut record: BytesMut) -> Result<Bytes, CryptError> {
        let index = self.next;
        let kind = if index == self.last_index {
            self.last_kind
        } else {
            RecordKind::Middle
        };
        // The last record is kept intact so that a failure can be diagnosed (truncated
        // blob, unfinished upload): one small copy per read that reaches the end.
        let intact = (kind != RecordKind::Middle).then(|| record.to_vec());
        let len = match open_record(&self.key, &self.blob_id, index, kind, &mut record) {
            Ok(len) => len,
            Err(()) => {
                return Err(diagnose(
                    &self.key,
                    &self.blob_id,
                    index,
                    kind,
                    intact.as_deref(),
                ))
            }
        };
        self.next += 1;
        let seg_start = index * SEG;
        let lo = self.plain.start.max(seg_start) - seg_start;
        let hi = self.plain.end.min(seg_start + len as u64) - seg_start;
        let lo = lo.min(hi) as usize;
        let hi = hi as usize;
        Ok(record.freeze().slice(NONCE_LEN + lo..NONCE_LEN + hi))
    }

    /// Call when the input has ended: fails if the range's ciphertext was not all given.
    pub fn finish(&self) -> Result<(), CryptError> {
        if self.received < self.expected {
            return Err(CryptError::ShortCiphertext {
                blob_id: self.blob_id,
                expected: self.expected,
                received: self.received,
            });
        }
        Ok(())
    }
}

/// Decrypts a whole committed blob in one call.
pub fn decrypt_all(key: &DataKey, ciphertext: &[u8]) -> Result<Vec<u8>, CryptError> {
    let plain_len = crate::plaintext_len(ciphertext.len() as u64)?;
    let mut dec = Decryptor::new(key, 0..plain_len, plain_len)?;
    dec.push(Bytes::copy_from_slice(ciphertext))?;
    let mut out = Vec::with_capacity(plain_len as usize);
    while let Some(piece) = dec.next_plaintext()? {
        out.extend_from_slice(&piece);
    }
    dec.finish()?;
    Ok(out)
}

/// A plaintext stream from a ciphertext stream: `ciphertext` must carry exactly the
/// bytes of `decryptor.ciphertext_range()`. Memory stays at about one record plus the
/// chunk being consumed. A failed record, missing or excess bytes end the stream with
/// an [`io::Error`] (kind `InvalidData`, or `UnexpectedEof` for missing bytes) whose
/// message is the [`CryptError`]'s; errors of `ciphertext` itself pass through.
pub fn decrypt_stream(decryptor: Decryptor, ciphertext: ByteStream) -> ByteStream {
    Box::pin(DecryptStream {
        dec: decryptor,
        inner: ciphertext,
        inner_done: false,
        ended: false,
    })
}

struct DecryptStream {
    dec: Decryptor,
    inner: ByteStream,
    inner_done: bool,
    /// Set once the stream has returned its end or an error.
    ended: bool,
}

impl DecryptStream {
    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Bytes>>> {
        self.ended = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for DecryptStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match this.dec.next_plaintext() {
                Ok(Some(plain)) => return Poll::Ready(Some(Ok(plain))),
                Ok(None) => {}
                Err(e) => return this.fail(e.into()),
            }
            if this.inner_done {
                return match this.dec.finish() {
                    Ok(()) => {
                        this.ended = true;
                        Poll::Ready(None)
                    }
                    Err(e) => this.fail(e.into()),
                };
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.inner_done = true,
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Err(e) = this.dec.push(chunk) {
                        return this.fail(e.into());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encrypt_all, Envelope, Keyring};

    fn key() -> DataKey {
        let ring = Keyring::parse("k AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "test")
            .unwrap_or_else(|e| panic!("{e}"));
        Envelope::new(&ring, &["k"])
            .and_then(|env| env.data_key(&ring))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn inside(piece: &Bytes, buf: &Range<usize>) -> bool {
        let p = piece.as_ptr() as usize;
        buf.contains(&p) && buf.contains(&(p + piece.len() - 1))
    }

    #[test]
    fn records_in_an_owned_chunk_are_opened_in_place() {
        let key = key();
        let data: Vec<u8> = (0..3 * SEGMENT + 7).map(|i| i as u8).collect();
        let ct = encrypt_all(&key, &data).unwrap_or_else(|e| panic!("{e}"));
        let chunk = Bytes::from(ct);
        let buf = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        let mut dec = Decryptor::new(&key, 0..data.len() as u64, data.len() as u64)
            .unwrap_or_else(|e| panic!("{e}"));
        dec.push(chunk).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        while let Some(piece) = dec.next_plaintext().unwrap_or_else(|e| panic!("{e}")) {
            assert!(
                inside(&piece, &buf),
                "no copy for a record inside the chunk"
            );
            out.extend_from_slice(&piece);
        }
        assert_eq!(out, data);
    }

    #[test]
    fn records_in_shared_chunks_are_gathered() {
        let key = key();
        let data = vec![3u8; 2 * SEGMENT];
        let chunk = Bytes::from(encrypt_all(&key, &data).unwrap_or_else(|e| panic!("{e}")));
        let keep = chunk.clone();
        let before = keep.to_vec();
        let buf = keep.as_ptr() as usize..keep.as_ptr() as usize + keep.len();
        let mut dec = Decryptor::new(&key, 0..data.len() as u64, data.len() as u64)
            .unwrap_or_else(|e| panic!("{e}"));
        dec.push(chunk).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        while let Some(piece) = dec.next_plaintext().unwrap_or_else(|e| panic!("{e}")) {
            assert!(!inside(&piece, &buf), "a shared chunk is never written to");
            out.extend_from_slice(&piece);
        }
        assert_eq!(out, data);
        assert_eq!(keep[..], before[..], "the shared chunk is intact");
    }
}
