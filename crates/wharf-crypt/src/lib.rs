//! Encryption at rest of Wharf blobs.
//!
//! A blob is encrypted with its own random data key (AES-256-GCM) in fixed-size
//! records, so that a byte range can be read by fetching and decrypting only the
//! records that hold it. The data key is kept in an [`Envelope`] beside the blob,
//! wrapped under one or more master keys of a [`Keyring`]; rotating a master key
//! rewrites envelopes, never blobs. This crate is pure cryptography and arithmetic;
//! where ciphertext and envelopes are stored is the blob stores' business.
//!
//! # Record format
//!
//! The plaintext is cut into segments of [`SEGMENT`] = 64 KiB; the last one is shorter
//! or full, and empty only for the empty blob. Segment *i* is stored as record *i*:
//!
//! ```text
//! [nonce: 12 random bytes][AES-256-GCM ciphertext: segment length][tag: 16 bytes]
//! ```
//!
//! at ciphertext offset `i × RECORD_LEN` (`RECORD_LEN` = 65,564). There is no header in
//! the ciphertext, so it is written by appends only. Each record's associated data is
//!
//! ```text
//! "WCR1" | blob id (16 bytes) | i (u64, big-endian) | kind (1 byte)
//! ```
//!
//! with kind `0` = intermediate, `1` = final (the last record of a committed blob),
//! `2` = provisional (the sealed partial segment at the end of a staged upload). Records
//! therefore cannot be reordered, moved to another blob, or dropped or added at the end
//! unnoticed, and a staged upload cannot pass for a committed blob. A segment that is
//! full is the last one if no byte follows it: the encryptor holds it back until it
//! knows, so that the final flag is always on the record holding the last byte.
//!
//! **Lengths.** With `S` = [`SEGMENT`], `R` = [`RECORD_LEN`] and ciphertext length
//! `C`, let `n = C div R` and `r = C mod R`. Then the blob has `n` records of `S`
//! plaintext bytes plus, if `r > 0`, one more of `r − 28`; plaintext length is
//! `n × S + max(r − 28, 0)`. `C = 0`, `0 < r < 28`, and `r = 28` with `n > 0` are
//! impossible ([`plaintext_len`] refuses them). Conversely [`ciphertext_len`] is
//! `P + 28 × max(1, ⌈P / S⌉)`. Sizes (`stat`) and range mapping ([`ciphertext_range`])
//! therefore need nothing but the stored length.
//!
//! **Nonces** are 96 random bits per record written (records are never re-encrypted
//! under an old nonce), under a key used for one blob only: even a blob of terabytes
//! has tens of millions of records, far below the 2³² messages per key after which
//! random GCM nonces become a concern.
//!
//! # Staged uploads
//!
//! An upload spans requests, and possibly processes. At the end of each append the
//! blob store asks the [`Encryptor`] to [`seal_pending`](Encryptor::seal_pending): the
//! pending partial segment (plaintext never rests on disk) becomes a *provisional*
//! record, index = complete records so far, stored after them. The staged ciphertext is
//! thus `k` intermediate records plus one provisional record, and [`staged_layout`]
//! finds `k`, the provisional record's byte range and the staged plaintext size from
//! the staged length alone. The next append reads the provisional record back,
//! [`Encryptor::resume`]s, removes the record from the staged ciphertext and appends
//! what the encryptor emits; the commit resumes likewise and appends
//! [`Encryptor::finish`]'s final record in its place. [`Decryptor::staged`] reads a
//! staged upload whole (to rebuild a hash state after a restart).
//!
//! # Envelope
//!
//! Each blob has a random blob id and data key; the [`Envelope`] holds the id and
//! one wrap of the data key per master key: AES-256-GCM of the 32-byte key under the
//! master key version, random nonce, associated data
//! `"WHKW" | format version | blob id | segment size | key fingerprint | id length | id`.
//! Serialized ([`Envelope::to_bytes`]), version 1:
//!
//! ```text
//! "WHEV" | version = 1 | segment size (u32 BE) | blob id (16) | wrap count (u8, ≥ 1)
//! then per wrap: id length (u8) | key id (UTF-8) | key fingerprint (8) | nonce (12)
//!                | wrapped data key (32) | tag (16)
//! ```
//!
//! about 100 bytes for one wrap. A compact binary form rather than JSON: the envelope
//! is read on every blob read, is mostly binary fields that JSON would have to carry in
//! base64, and must be parsed strictly (exact lengths, no unknown fields, no trailing
//! bytes); the magic and version byte leave room for later formats. The format
//! version, blob id and segment size are authenticated by every wrap, so a data key that
//! unwraps also vouches for the envelope's parameters.
//!
//! # Master keys and rotation
//!
//! The [`Keyring`] is a text file of `<id> <base64 of 32 bytes>` lines (see there).
//! The first key is the current one: repositories with ECR's default `AES256`
//! encryption use it; `KMS` repositories name their key id ([`EncryptionConfig`],
//! [`Keyring::key_for`]). Several lines with one id are *versions* of that key, the
//! first being current; envelopes record the version they used by its
//! [`KeyFingerprint`]. Rotation:
//!
//! 1. [`Keyring::rotate_file`] (or [`Keyring::rotate_key_file`] for a named key) puts a
//!    new version first; every process loads it. New blobs are wrapped under it; old
//!    envelopes still open with the old version.
//! 2. A background pass calls [`Envelope::rotate`] on every envelope and stores those
//!    that changed: only envelopes are rewritten, never blob bytes.
//! 3. When no envelope is left on the old version, its line is deleted from the file.
//!
//! # Blobs shared by repositories with different keys
//!
//! Blobs are content-addressed and stored once. When a repository whose master key is
//! not yet in a blob's envelope links the blob (push of an existing blob, mount), the
//! blob keeps its data key and the envelope gets one more wrap of that *same* data key
//! ([`Envelope::add_wrap`]). Storage and deduplication are unchanged, and no blob is
//! re-encrypted. The consequence: each key gives access to the blob on its own, so
//! removing a `KMS` key from the keyring makes the blob unreadable through that key
//! only; repositories with other keys still read it. Crypto-shredding a blob needs every
//! wrap gone ([`Envelope::remove_wrap`] as repositories stop using it, or deleting the
//! envelope). The alternative — a separate encrypted copy per key — would make
//! per-key shredding exact but duplicate bytes per key and break the one-blob-per-digest
//! layout; it was not chosen.
//!
//! # Reads
//!
//! [`ciphertext_range`] maps a plaintext range to the whole records holding it; a
//! [`Decryptor`] takes those bytes in chunks of any size (or [`decrypt_stream`] takes a
//! [`ByteStream`]) and yields exactly the requested plaintext, verifying each record.
//! A read that includes the last record checks the final flag, so full reads detect
//! truncation; a range read that ends earlier cannot (see [`Decryptor`]).
//!
//! # Performance
//!
//! The AEAD is `ring`'s AES-256-GCM (already in the dependency tree through rustls).
//! Measured on this project's 2-core build machine (x86-64 with AES-NI, VAES, AVX2;
//! other jobs running) over 64 KiB records, `ring` sealed and opened at about
//! 5–6.5 GB/s against about 1 GB/s for the RustCrypto `aes-gcm` crate, so `ring` was
//! chosen. Each plaintext byte is copied once on encryption (into the record buffer,
//! then sealed in place, records handed out without copying); on decryption a record
//! that arrives whole in an unshared chunk is opened in place, otherwise it is gathered
//! into one reused buffer; plaintext is handed out as slices of the record buffers.
//! Through this crate's API, 256 MiB streaming from memory encrypted at about
//! 3.3–4.2 GB/s and decrypted at about 3.2–4.4 GB/s (the AEAD alone over the same data:
//! 3.7–4.4 GB/s); the `throughput` test (ignored by default) prints these rates.
//!
//! # Using it in a blob store
//!
//! - Start of an upload: [`Envelope::new`] with the repository's key
//!   ([`Keyring::key_for`]); store [`Envelope::to_bytes`] with the upload.
//! - Append: [`staged_layout`] of the staged length; read the provisional record,
//!   [`Encryptor::resume`]; for each body chunk hash the plaintext and write
//!   [`Encryptor::update`]'s records in place of the provisional record; at the end (or
//!   when the body fails) write [`Encryptor::seal_pending`]. The upload's size is
//!   [`StagedLayout::plaintext_len`].
//! - Commit: resume, write [`Encryptor::finish`] in place of the provisional record,
//!   verify the digest of the plaintext, store the envelope beside the blob. If the blob
//!   already exists, discard the staged ciphertext and [`Envelope::add_wrap`] the
//!   repository's key to the existing envelope instead.
//! - `stat`: [`plaintext_len`] of the stored length. Read: [`Envelope::data_key`], then
//!   [`Decryptor::new`], fetch [`Decryptor::ciphertext_range`], [`decrypt_stream`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decrypt;
mod encrypt;
mod envelope;
mod error;
mod format;
mod keyring;

use bytes::Bytes;
use futures::Stream;
use std::io;
use std::pin::Pin;

pub use decrypt::{decrypt_all, decrypt_stream, Decryptor};
pub use encrypt::{encrypt_all, Encryptor};
pub use envelope::{DataKey, Envelope, WrapInfo, MAX_WRAPS};
pub use error::CryptError;
pub use format::{
    ciphertext_len, ciphertext_range, plaintext_len, record_count, staged_layout, BlobId,
    RecordKind, StagedLayout, NONCE_LEN, RECORD_LEN, RECORD_OVERHEAD, SEGMENT, TAG_LEN,
};
pub use keyring::{
    validate_key_id, EncryptionConfig, KeyFingerprint, KeyInfo, Keyring, DEFAULT_KEY_ID, KEY_LEN,
    MAX_KEY_ID_LEN,
};

/// A stream of bytes, the same type as `wharf_blob::ByteStream` (defined here too so
/// that this crate does not depend on the blob stores that use it).
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;
