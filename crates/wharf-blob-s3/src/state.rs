//! The state object of a staged upload, kept in the bucket at `_uploads/<id>/state`.

use serde::{Deserialize, Serialize};
use wharf_crypt::{staged_layout, RECORD_LEN};
use wharf_oci::ResumableHasher;

/// Format version of the state of an unencrypted upload.
pub(crate) const FORMAT: u32 = 1;
/// Format version of the state of an encrypted upload (with [`Encryption`] and no
/// clear hash state). Processes that know only [`FORMAT`] refuse such a state rather
/// than append plaintext to ciphertext.
pub(crate) const FORMAT_ENCRYPTED: u32 = 2;
/// S3's largest part number. The last of them is kept for the tail at commit.
pub(crate) const MAX_PARTS: usize = 10_000;

/// Everything another process needs to continue or commit an upload.
///
/// Invariants (checked by [`UploadState::check`]): `size` is `parts.len() × part_size`
/// plus the tail's size. Unencrypted (format 1): the tail is shorter than a part, and
/// `hash` has hashed exactly `size` bytes. Encrypted (format 2): `size` counts stored
/// ciphertext bytes, `encryption.plaintext` the plaintext bytes they hold (what the
/// upload reports as its size), and the tail (present once anything was staged) ends
/// with the provisional record, so it is shorter than a part plus a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadState {
    /// [`FORMAT`] or [`FORMAT_ENCRYPTED`].
    pub format: u32,
    /// Incremented by every write, so that each version has distinct content (and so a
    /// distinct ETag) and a writer can recognise its own write.
    pub seq: u64,
    /// Token of the claim under which this version was written (empty when written
    /// outside a claim), so that a writer can recognise its own write.
    #[serde(default)]
    pub writer: String,
    /// Bytes stored in parts and tail: plaintext bytes for an unencrypted upload,
    /// ciphertext bytes for an encrypted one.
    pub size: u64,
    /// Size of every part in `parts`.
    pub part_size: u64,
    /// Id of the S3 multipart upload into `_uploads/<id>/data`, once a part was needed.
    #[serde(default)]
    pub multipart: Option<String>,
    /// ETags of parts 1, 2, ... of the multipart upload, each `part_size` bytes.
    #[serde(default)]
    pub parts: Vec<String>,
    /// The bytes after the last part, in their own object.
    #[serde(default)]
    pub tail: Option<Tail>,
    /// Generation of the next tail object.
    #[serde(default)]
    pub next_tail: u64,
    /// Hash of the staged bytes (unencrypted uploads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ResumableHasher>,
    /// What an encrypted upload keeps beside its ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The multipart upload was completed into `_uploads/<id>/data` by a commit that
    /// has not finished: the data object holds all `size` bytes.
    #[serde(default)]
    pub staged: bool,
    /// The writer currently working on the upload, if any.
    #[serde(default)]
    pub lease: Option<Lease>,
}

/// The plaintext side of an encrypted upload. Its data key is in the envelope object
/// `_uploads/<id>/envelope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Encryption {
    /// Plaintext bytes staged (the upload's size as clients see it).
    pub plaintext: u64,
    /// The hash state of the staged plaintext ([`wharf_oci::SavedHash`] as JSON),
    /// sealed under the upload's data key (`DataKey::seal_aux`, bound to the upload id
    /// and `plaintext`), in base64: its pending partial block is plaintext.
    pub hash: String,
}

/// The object holding the bytes after the last full part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tail {
    /// Generation: the object is `_uploads/<id>/tail-<gen>`. Each rewrite of the tail
    /// goes to a new generation, so the state never names a half-replaced object.
    pub generation: u64,
    /// Its size: 1 to `part_size - 1` bytes unencrypted; encrypted, the ciphertext
    /// after the last part (less than a part) followed by the provisional record.
    pub size: u64,
}

/// A writer's claim on an upload. Another process waits until the state object stays
/// unchanged for the configured lease time before it takes the upload over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    /// The store instance (one per [`crate::S3BlobStore`]) holding the claim.
    pub owner: String,
    /// Unique to one claim.
    pub token: String,
    /// What the writer does: `append` or `commit`.
    pub op: String,
}

impl UploadState {
    /// The state of a new, empty upload.
    pub fn new(part_size: u64) -> UploadState {
        UploadState {
            format: FORMAT,
            seq: 0,
            writer: String::new(),
            size: 0,
            part_size,
            multipart: None,
            parts: Vec::new(),
            tail: None,
            next_tail: 0,
            hash: Some(ResumableHasher::new(wharf_oci::Algorithm::Sha256)),
            encryption: None,
            staged: false,
            lease: None,
        }
    }

    /// The state of a new, empty encrypted upload; `hash` is the sealed hash state of
    /// nothing.
    pub fn new_encrypted(part_size: u64, hash: String) -> UploadState {
        UploadState {
            format: FORMAT_ENCRYPTED,
            hash: None,
            encryption: Some(Encryption { plaintext: 0, hash }),
            ..UploadState::new(part_size)
        }
    }

    /// The upload's size as clients see it: plaintext bytes staged.
    pub fn plaintext_size(&self) -> u64 {
        match &self.encryption {
            Some(e) => e.plaintext,
            None => self.size,
        }
    }

    /// Checks the invariants; the error says which one fails.
    pub fn check(&self) -> Result<(), String> {
        let encrypted = match (self.format, &self.hash, &self.encryption) {
            (FORMAT, Some(_), None) => false,
            (FORMAT_ENCRYPTED, None, Some(_)) => true,
            (FORMAT | FORMAT_ENCRYPTED, _, _) => {
                return Err(format!(
                    "format {} with {} clear hash state and {} encryption state",
                    self.format,
                    if self.hash.is_some() { "a" } else { "no" },
                    if self.encryption.is_some() {
                        "an"
                    } else {
                        "no"
                    },
                ))
            }
            _ => {
                return Err(format!(
                    "format {} is not one of the supported {FORMAT} and {FORMAT_ENCRYPTED}",
                    self.format
                ))
            }
        };
        if self.part_size == 0 {
            return Err("part size is 0".to_string());
        }
        let tail = self.tail.map_or(0, |t| t.size);
        let tail_limit = if encrypted {
            self.part_size + RECORD_LEN as u64
        } else {
            self.part_size
        };
        if self.tail.is_some() && (tail == 0 || tail >= tail_limit) {
            return Err(format!(
                "tail of {tail} bytes is not shorter than {tail_limit} (part of {})",
                self.part_size
            ));
        }
        if self.parts.len() >= MAX_PARTS {
            return Err(format!("{} parts recorded", self.parts.len()));
        }
        if !self.parts.is_empty() && self.multipart.is_none() && !self.staged {
            return Err("parts recorded without a multipart upload".to_string());
        }
        let expected = (self.parts.len() as u64)
            .checked_mul(self.part_size)
            .and_then(|p| p.checked_add(tail));
        if expected != Some(self.size) {
            return Err(format!(
                "size {} is not {} parts of {} plus a tail of {tail}",
                self.size,
                self.parts.len(),
                self.part_size
            ));
        }
        if let Some(hash) = &self.hash {
            if hash.len() != self.size {
                return Err(format!(
                    "hash covers {} bytes, not the {} staged",
                    hash.len(),
                    self.size
                ));
            }
        }
        if let Some(enc) = &self.encryption {
            let layout = staged_layout(self.size)
                .map_err(|e| format!("{} bytes of staged ciphertext: {e}", self.size))?;
            if layout.plaintext_len != enc.plaintext {
                return Err(format!(
                    "{} bytes of staged ciphertext hold {} plaintext bytes, not the {} recorded",
                    self.size, layout.plaintext_len, enc.plaintext
                ));
            }
            let provisional = layout.provisional.end - layout.provisional.start;
            if self.size > 0 && (self.tail.is_none() || tail < provisional) {
                return Err(format!(
                    "the provisional record of {provisional} bytes is not in the tail of {tail} bytes"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let mut st = UploadState::new(5 << 20);
        st.check().unwrap();
        st.hash.as_mut().unwrap().update(&[1u8; 10]);
        st.size = 10;
        st.tail = Some(Tail {
            generation: 3,
            size: 10,
        });
        st.lease = Some(Lease {
            owner: "o".into(),
            token: "t".into(),
            op: "append".into(),
        });
        st.check().unwrap();
        let json = serde_json::to_string(&st).unwrap();
        let back: UploadState = serde_json::from_str(&json).unwrap();
        back.check().unwrap();
        assert_eq!(back.tail, st.tail);
        assert_eq!(back.lease, st.lease);
        assert_eq!(back.hash, st.hash);

        let mut bad = st.clone();
        bad.size = 11;
        assert!(bad.check().is_err());
        let mut bad = st.clone();
        bad.parts.push("etag".into());
        assert!(bad.check().is_err(), "no multipart");
        let mut bad = st.clone();
        bad.tail = Some(Tail {
            generation: 0,
            size: 5 << 20,
        });
        assert!(bad.check().is_err(), "tail as large as a part");
    }
}
