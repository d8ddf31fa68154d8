//! The state object of a staged upload, kept in the bucket at `_uploads/<id>/state`.

use serde::{Deserialize, Serialize};
use wharf_oci::ResumableHasher;

/// Format version written in every state object.
pub(crate) const FORMAT: u32 = 1;
/// S3's largest part number. The last of them is kept for the tail at commit.
pub(crate) const MAX_PARTS: usize = 10_000;

/// Everything another process needs to continue or commit an upload.
///
/// Invariants (checked by [`UploadState::check`]): `size` is `parts.len() × part_size`
/// plus the tail's size, the tail is shorter than a part, and `hash` has hashed exactly
/// `size` bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadState {
    /// [`FORMAT`].
    pub format: u32,
    /// Incremented by every write, so that each version has distinct content (and so a
    /// distinct ETag) and a writer can recognise its own write.
    pub seq: u64,
    /// Token of the claim under which this version was written (empty when written
    /// outside a claim), so that a writer can recognise its own write.
    #[serde(default)]
    pub writer: String,
    /// Bytes staged.
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
    /// Hash of the staged bytes.
    pub hash: ResumableHasher,
    /// The multipart upload was completed into `_uploads/<id>/data` by a commit that
    /// has not finished: the data object holds all `size` bytes.
    #[serde(default)]
    pub staged: bool,
    /// The writer currently working on the upload, if any.
    #[serde(default)]
    pub lease: Option<Lease>,
}

/// The object holding the bytes after the last full part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tail {
    /// Generation: the object is `_uploads/<id>/tail-<gen>`. Each rewrite of the tail
    /// goes to a new generation, so the state never names a half-replaced object.
    pub generation: u64,
    /// Its size, 1 to `part_size - 1` bytes.
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
            hash: ResumableHasher::new(wharf_oci::Algorithm::Sha256),
            staged: false,
            lease: None,
        }
    }

    /// Checks the invariants; the error says which one fails.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} is not the supported {FORMAT}",
                self.format
            ));
        }
        if self.part_size == 0 {
            return Err("part size is 0".to_string());
        }
        let tail = self.tail.map_or(0, |t| t.size);
        if self.tail.is_some() && (tail == 0 || tail >= self.part_size) {
            return Err(format!(
                "tail of {tail} bytes is not shorter than a part of {}",
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
        if self.hash.len() != self.size {
            return Err(format!(
                "hash covers {} bytes, not the {} staged",
                self.hash.len(),
                self.size
            ));
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
        st.hash.update(&[1u8; 10]);
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
