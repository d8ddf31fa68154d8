//! Streaming encryption of a blob into records.

use crate::format::{
    diagnose, open_record, seal_record, NonceSource, RecordKind, NONCE_LEN, RECORD_LEN,
    RECORD_OVERHEAD, SEGMENT, TAG_LEN,
};
use crate::{BlobId, CryptError, DataKey};
use bytes::Bytes;
use ring::aead::LessSafeKey;
use zeroize::Zeroize;

/// Encrypts a blob's plaintext, given in chunks of any size, into records.
///
/// A segment is sealed and emitted only once it is full *and* more plaintext follows
/// it (the last segment must be sealed as final, and whether a full segment is the last
/// one is known only then), so at most one segment of plaintext (≤ [`SEGMENT`] bytes)
/// is held in memory; it is zeroized when the encryptor is dropped.
///
/// For uploads that span requests or processes, [`Encryptor::seal_pending`] turns the
/// pending plaintext into a provisional record to store at the end of the staged
/// ciphertext, and [`Encryptor::resume`] picks it up again. [`Encryptor::finish`] emits
/// the final record.
pub struct Encryptor {
    key: LessSafeKey,
    blob_id: BlobId,
    /// Index of the next record to emit (= complete records emitted).
    next_index: u64,
    /// `[NONCE_LEN bytes of room for the nonce][pending plaintext]`, capacity
    /// [`RECORD_LEN`] so that sealing in place never reallocates.
    rec: Vec<u8>,
    nonces: NonceSource,
}

impl Drop for Encryptor {
    fn drop(&mut self) {
        self.rec.zeroize();
    }
}

fn record_buffer() -> Vec<u8> {
    let mut rec = Vec::with_capacity(RECORD_LEN);
    rec.resize(NONCE_LEN, 0);
    rec
}

impl Encryptor {
    /// An encryptor for a new blob, starting at record 0.
    pub fn new(key: &DataKey) -> Result<Encryptor, CryptError> {
        Ok(Encryptor {
            key: key.aead()?,
            blob_id: key.blob_id(),
            next_index: 0,
            rec: record_buffer(),
            nonces: NonceSource::new(),
        })
    }

    /// Continues a staged upload whose ciphertext holds `segments_done` complete
    /// records followed by `provisional`, the record [`Encryptor::seal_pending`] made
    /// (empty if the upload never sealed anything). The caller removes the provisional
    /// record from the staged ciphertext and appends what the encryptor emits from now
    /// on. [`crate::staged_layout`] gives both values from the staged length.
    ///
    /// The provisional record is authenticated as record `segments_done` of this blob
    /// with the provisional flag; a record of another kind, index or blob is refused.
    pub fn resume(
        key: &DataKey,
        segments_done: u64,
        provisional: &[u8],
    ) -> Result<Encryptor, CryptError> {
        let mut enc = Encryptor::new(key)?;
        enc.next_index = segments_done;
        if provisional.is_empty() {
            if segments_done > 0 {
                return Err(CryptError::Provisional {
                    blob_id: enc.blob_id,
                    reason: format!(
                        "{segments_done} complete records but no provisional record after them"
                    ),
                });
            }
            return Ok(enc);
        }
        if provisional.len() < RECORD_OVERHEAD || provisional.len() > RECORD_LEN {
            return Err(CryptError::Provisional {
                blob_id: enc.blob_id,
                reason: format!(
                    "a provisional record of {} bytes is impossible (28 to {RECORD_LEN})",
                    provisional.len()
                ),
            });
        }
        enc.rec.clear();
        enc.rec.extend_from_slice(provisional);
        let opened = open_record(
            &enc.key,
            &enc.blob_id,
            segments_done,
            RecordKind::Provisional,
            &mut enc.rec,
        );
        let Ok(len) = opened else {
            return Err(diagnose(
                &enc.key,
                &enc.blob_id,
                segments_done,
                RecordKind::Provisional,
                Some(provisional),
            ));
        };
        enc.rec.truncate(NONCE_LEN + len);
        if len == 0 && segments_done > 0 {
            return Err(CryptError::Provisional {
                blob_id: enc.blob_id,
                reason: "an empty provisional record after complete records".into(),
            });
        }
        Ok(enc)
    }

    /// The blob these records belong to.
    pub fn blob_id(&self) -> BlobId {
        self.blob_id
    }

    /// Complete (intermediate) records emitted so far, counting those before a resume.
    pub fn segments_done(&self) -> u64 {
        self.next_index
    }

    /// Plaintext bytes taken so far (counting those before a resume).
    pub fn plaintext_len(&self) -> u64 {
        self.next_index * SEGMENT as u64 + self.pending_len() as u64
    }

    fn pending_len(&self) -> usize {
        self.rec.len() - NONCE_LEN
    }

    /// Takes `data` and returns the records it completes, in order, one `Bytes` each
    /// (possibly none). Each plaintext byte is copied once, into the record buffer,
    /// and encrypted there in place.
    pub fn update(&mut self, mut data: &[u8]) -> Result<Vec<Bytes>, CryptError> {
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.pending_len() == SEGMENT {
                out.push(self.emit_middle()?);
            }
            let take = (SEGMENT - self.pending_len()).min(data.len());
            self.rec.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(out)
    }

    fn emit_middle(&mut self) -> Result<Bytes, CryptError> {
        let nonce = self.nonces.next()?;
        let mut rec = std::mem::replace(&mut self.rec, record_buffer());
        let sealed = seal_record(
            &self.key,
            nonce,
            &self.blob_id,
            self.next_index,
            RecordKind::Middle,
            &mut rec,
        );
        if let Err(e) = sealed {
            rec.zeroize();
            return Err(e);
        }
        self.next_index += 1;
        Ok(Bytes::from(rec))
    }

    /// The pending partial segment sealed as a provisional record (record index
    /// [`Encryptor::segments_done`], fresh nonce), to store at the end of the staged
    /// ciphertext so that no plaintext is at rest between requests. The encryptor is
    /// unchanged and may go on taking data.
    pub fn seal_pending(&mut self) -> Result<Vec<u8>, CryptError> {
        let nonce = self.nonces.next()?;
        let mut rec = Vec::with_capacity(self.rec.len() + TAG_LEN);
        rec.extend_from_slice(&self.rec);
        let sealed = seal_record(
            &self.key,
            nonce,
            &self.blob_id,
            self.next_index,
            RecordKind::Provisional,
            &mut rec,
        );
        if let Err(e) = sealed {
            rec.zeroize();
            return Err(e);
        }
        Ok(rec)
    }

    /// Ends the blob: the pending segment (empty only for the empty blob) sealed as the
    /// final record.
    pub fn finish(mut self) -> Result<Vec<u8>, CryptError> {
        let nonce = self.nonces.next()?;
        let mut rec = std::mem::take(&mut self.rec);
        let sealed = seal_record(
            &self.key,
            nonce,
            &self.blob_id,
            self.next_index,
            RecordKind::Final,
            &mut rec,
        );
        if let Err(e) = sealed {
            rec.zeroize();
            return Err(e);
        }
        Ok(rec)
    }
}

/// Encrypts a whole blob in one call: every record, concatenated.
pub fn encrypt_all(key: &DataKey, plaintext: &[u8]) -> Result<Vec<u8>, CryptError> {
    let mut out = Vec::with_capacity(crate::ciphertext_len(plaintext.len() as u64)? as usize);
    let mut enc = Encryptor::new(key)?;
    for record in enc.update(plaintext)? {
        out.extend_from_slice(&record);
    }
    out.extend_from_slice(&enc.finish()?);
    Ok(out)
}
