//! The crate's error type.

use crate::{BlobId, RecordKind};
use std::io;
use std::path::PathBuf;

/// What went wrong in encryption, decryption, envelope or keyring handling.
///
/// Messages name what failed (the key id and version, the blob id, the record index,
/// the file and line) and never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// A key file (or key text from the configuration) could not be parsed.
    #[error("key file {source_name}{}: {reason}", location(*.line, .key_id))]
    KeyFile {
        /// Path of the file, or where the text came from.
        source_name: String,
        /// 1-based line number (0 when the problem is the text as a whole, and then
        /// not shown).
        line: usize,
        /// The key id on that line, when one could be read.
        key_id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("key file {}: {action}: {error}", .path.display())]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// What was being done ("reading", "writing a temporary file", ...).
        action: String,
        /// The underlying error.
        #[source]
        error: io::Error,
    },
    /// A key id was asked for that the keyring does not hold.
    #[error("key '{id}' is not in the keyring (it has: {})", .available.join(", "))]
    UnknownKey {
        /// The id asked for.
        id: String,
        /// Ids the keyring does hold.
        available: Vec<String>,
    },
    /// A key id is not acceptable (empty, too long, whitespace or control characters).
    #[error("invalid key id {id:?}: {reason}")]
    InvalidKeyId {
        /// The rejected id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// None of the master keys an envelope's data key is wrapped under is in the keyring.
    #[error(
        "blob {blob_id}: its data key is wrapped only under key versions this keyring does \
         not hold (needs one of: {}; the keyring has: {})",
        .needed.join(", "),
        .available.join(", ")
    )]
    NoKeyForEnvelope {
        /// The envelope's blob.
        blob_id: BlobId,
        /// `id (version <fingerprint>)` of every wrap in the envelope.
        needed: Vec<String>,
        /// `id (version <fingerprint>)` of every key version in the keyring.
        available: Vec<String>,
    },
    /// A wrapped data key did not authenticate under the master key it names.
    #[error(
        "blob {blob_id}: the data key wrapped under key '{key_id}' (version {fingerprint}) \
         failed authentication: the envelope was altered or belongs to another blob"
    )]
    UnwrapFailed {
        /// The envelope's blob.
        blob_id: BlobId,
        /// The master key id of the wrap.
        key_id: String,
        /// The key version's fingerprint (hex).
        fingerprint: String,
    },
    /// An envelope could not be parsed, or an operation would make it invalid.
    #[error("envelope: {0}")]
    Envelope(String),
    /// The encryption configuration of a repository is not valid.
    #[error("encryption configuration: {0}")]
    Config(String),
    /// A record failed authentication.
    #[error(
        "blob {blob_id}, record {index}: authentication failed (the record was altered, \
         moved from another position or blob, or is not encrypted under this data key)"
    )]
    RecordAuth {
        /// The blob.
        blob_id: BlobId,
        /// 0-based record index.
        index: u64,
    },
    /// The last record present is an intermediate one: records are missing at the end.
    #[error(
        "blob {blob_id}: record {index} should be the final record but is marked as followed \
         by more: the ciphertext was truncated"
    )]
    Truncated {
        /// The blob.
        blob_id: BlobId,
        /// Index of the record that should have been final.
        index: u64,
    },
    /// A record authenticates, but is of another kind than its position requires.
    #[error("blob {blob_id}, record {index}: expected {expected} record, found {found} record")]
    WrongRecordKind {
        /// The blob.
        blob_id: BlobId,
        /// 0-based record index.
        index: u64,
        /// The kind required at this position.
        expected: RecordKind,
        /// The kind the record was sealed as.
        found: RecordKind,
    },
    /// A ciphertext (or staged ciphertext) length that no plaintext produces.
    #[error("ciphertext of {len} bytes is impossible in this format: {reason}")]
    CiphertextLength {
        /// The length.
        len: u64,
        /// Why it cannot be.
        reason: &'static str,
    },
    /// A provisional record of a staged upload is missing or has an impossible size.
    #[error("staged upload of blob {blob_id}: {reason}")]
    Provisional {
        /// The blob.
        blob_id: BlobId,
        /// What is wrong.
        reason: String,
    },
    /// The ciphertext stream ended before all the records a range needs.
    #[error(
        "blob {blob_id}: the ciphertext ended after {received} of the {expected} bytes expected"
    )]
    ShortCiphertext {
        /// The blob.
        blob_id: BlobId,
        /// Bytes the range needs.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The ciphertext stream carried more bytes than the range needs.
    #[error("blob {blob_id}: the ciphertext has more than the {expected} bytes expected")]
    ExcessCiphertext {
        /// The blob.
        blob_id: BlobId,
        /// Bytes the range needs.
        expected: u64,
    },
    /// A plaintext range does not lie within the blob.
    #[error("range {start}-{end} is outside the blob of {len} bytes")]
    RangeOutsideBlob {
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Plaintext length of the blob.
        len: u64,
    },
    /// Sealed auxiliary data did not authenticate.
    #[error("blob {blob_id}: sealed data for context '{context}' failed authentication")]
    AuxAuth {
        /// The blob.
        blob_id: BlobId,
        /// The context it was opened under.
        context: String,
    },
    /// A length beyond what the format can represent.
    #[error("{0} is too large for the encrypted format")]
    TooLarge(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The AEAD implementation refused an operation that cannot fail with valid inputs.
    #[error("internal cryptography error: {0}")]
    Internal(&'static str),
}

/// `, line N (key 'id')` for a key file message; no line for the file as a whole.
fn location(line: usize, key_id: &Option<String>) -> String {
    let mut out = String::new();
    if line > 0 {
        out.push_str(&format!(", line {line}"));
    }
    if let Some(id) = key_id {
        out.push_str(&format!(" (key '{id}')"));
    }
    out
}

impl From<CryptError> for io::Error {
    /// Key file I/O errors keep their kind, a short ciphertext is
    /// [`io::ErrorKind::UnexpectedEof`], everything else [`io::ErrorKind::InvalidData`];
    /// the message is the [`CryptError`]'s.
    fn from(e: CryptError) -> io::Error {
        let kind = match &e {
            CryptError::KeyFileIo { error, .. } => error.kind(),
            CryptError::ShortCiphertext { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
