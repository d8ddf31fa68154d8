//! Per-blob data keys and their envelope of wraps under master keys.

use crate::format::{fill_random, NONCE_LEN, SEGMENT, TAG_LEN};
use crate::keyring::{describe_version, validate_key_id, KeyFingerprint, KeyVersion, KEY_LEN};
use crate::{BlobId, CryptError, Keyring};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::fmt;
use zeroize::Zeroizing;

/// Magic bytes at the start of a serialized envelope.
const MAGIC: &[u8; 4] = b"WHEV";
/// Label at the start of a wrap's authenticated data.
const WRAP_AAD_LABEL: &[u8; 4] = b"WHKW";
/// Label at the start of sealed auxiliary data's authenticated data.
const AUX_AAD_LABEL: &[u8; 4] = b"WHAX";
/// Bytes of a wrapped data key: the encrypted key and its tag.
const WRAPPED_LEN: usize = KEY_LEN + TAG_LEN;
/// Most wraps one envelope may carry (the count is one byte).
pub const MAX_WRAPS: usize = 255;

/// A blob's data key: the AES-256 key its records are encrypted under, together with
/// the blob id they are bound to. Obtained from [`Envelope::data_key`]. The key is
/// zeroized on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    blob_id: BlobId,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("blob_id", &self.blob_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl DataKey {
    /// The blob this key belongs to.
    pub fn blob_id(&self) -> BlobId {
        self.blob_id
    }

    /// The AEAD key for records. (Its expanded key schedule lives as long as the
    /// encryptor or decryptor holding it and is not zeroized by the AEAD library.)
    pub(crate) fn aead(&self) -> Result<LessSafeKey, CryptError> {
        aead_key(&self.key)
    }

    /// Seals small auxiliary data that belongs to the blob and must not be stored in
    /// the clear (for instance the partial hash block of a staged upload), bound to
    /// the blob and to `context` (a label saying what it is). Output:
    /// `[nonce 12][ciphertext][tag 16]`.
    pub fn seal_aux(&self, context: &str, data: &[u8]) -> Result<Vec<u8>, CryptError> {
        let key = self.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(data);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aux_aad(context)),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| CryptError::Internal("sealing auxiliary data"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`DataKey::seal_aux`] sealed under the same `context`.
    pub fn open_aux(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptError> {
        let fail = || CryptError::AuxAuth {
            blob_id: self.blob_id,
            context: context.to_string(),
        };
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(fail());
        }
        let key = self.aead()?;
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).map_err(|_| fail())?;
        let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
        let len = key
            .open_in_place(nonce, Aad::from(self.aux_aad(context)), &mut buf)
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    fn aux_aad(&self, context: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(4 + 16 + context.len());
        aad.extend_from_slice(AUX_AAD_LABEL);
        aad.extend_from_slice(&self.blob_id.0);
        aad.extend_from_slice(context.as_bytes());
        aad
    }
}

fn aead_key(material: &[u8; KEY_LEN]) -> Result<LessSafeKey, CryptError> {
    UnboundKey::new(&AES_256_GCM, material)
        .map(LessSafeKey::new)
        .map_err(|_| CryptError::Internal("making an AES-256-GCM key"))
}

/// One copy of the data key, encrypted under one version of a master key.
#[derive(Clone, PartialEq, Eq)]
struct Wrap {
    key_id: String,
    fingerprint: KeyFingerprint,
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

/// What [`Envelope::wraps`] tells about one wrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapInfo<'a> {
    /// The master key id.
    pub key_id: &'a str,
    /// The master key version.
    pub fingerprint: KeyFingerprint,
}

/// A blob's encryption parameters and its data key wrapped under one or more master
/// keys; stored beside the blob (a sidecar), so that rotation and sharing rewrite only
/// this small structure. See the crate documentation for the serialized format.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    blob_id: BlobId,
    wraps: Vec<Wrap>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("blob_id", &self.blob_id)
            .field(
                "wraps",
                &self
                    .wraps
                    .iter()
                    .map(|w| describe_version(&w.key_id, &w.fingerprint))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Envelope {
    /// Serialization format version written by [`Envelope::to_bytes`].
    pub const VERSION: u8 = 1;

    /// A new blob: a random blob id and random data key, wrapped under the current
    /// version of each of `key_ids` (at least one; duplicates are ignored).
    pub fn new(keyring: &Keyring, key_ids: &[&str]) -> Result<Envelope, CryptError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(key.as_mut())?;
        let data_key = DataKey {
            key,
            blob_id: BlobId::random()?,
        };
        Envelope::wrap_all(keyring, &data_key, key_ids)
    }

    fn wrap_all(
        keyring: &Keyring,
        data_key: &DataKey,
        key_ids: &[&str],
    ) -> Result<Envelope, CryptError> {
        if key_ids.is_empty() {
            return Err(CryptError::Envelope(
                "a data key must be wrapped under at least one master key".into(),
            ));
        }
        let mut envelope = Envelope {
            blob_id: data_key.blob_id,
            wraps: Vec::with_capacity(key_ids.len()),
        };
        for id in key_ids {
            envelope.put_wrap(keyring, data_key, id)?;
        }
        Ok(envelope)
    }

    /// The blob id the data key and the records are bound to.
    pub fn blob_id(&self) -> BlobId {
        self.blob_id
    }

    /// Plaintext bytes per record segment (always [`SEGMENT`] in version 1).
    pub fn segment_size(&self) -> usize {
        SEGMENT
    }

    /// The master key ids the data key is wrapped under.
    pub fn key_ids(&self) -> Vec<&str> {
        self.wraps.iter().map(|w| w.key_id.as_str()).collect()
    }

    /// Every wrap: key id and key version.
    pub fn wraps(&self) -> Vec<WrapInfo<'_>> {
        self.wraps
            .iter()
            .map(|w| WrapInfo {
                key_id: &w.key_id,
                fingerprint: w.fingerprint,
            })
            .collect()
    }

    /// Unwraps the data key with any wrap whose key version `keyring` holds.
    ///
    /// Errors: [`CryptError::NoKeyForEnvelope`] names the key versions needed and those
    /// held when none matches; [`CryptError::UnwrapFailed`] when a matching wrap does
    /// not authenticate (and no other one does).
    pub fn data_key(&self, keyring: &Keyring) -> Result<DataKey, CryptError> {
        let mut failure = None;
        for wrap in &self.wraps {
            let Some(kek) = keyring.version(&wrap.key_id, &wrap.fingerprint) else {
                continue;
            };
            match self.unwrap_with(kek, wrap) {
                Ok(key) => return Ok(key),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        Err(failure.unwrap_or_else(|| CryptError::NoKeyForEnvelope {
            blob_id: self.blob_id,
            needed: self
                .wraps
                .iter()
                .map(|w| describe_version(&w.key_id, &w.fingerprint))
                .collect(),
            available: keyring.describe_all(),
        }))
    }

    /// Rotation and re-keying: unwraps the data key with any known key, then replaces
    /// all wraps by wraps under the current version of each of `key_ids`. The data key
    /// and the records do not change.
    pub fn rewrap(&mut self, keyring: &Keyring, key_ids: &[&str]) -> Result<(), CryptError> {
        let data_key = self.data_key(keyring)?;
        *self = Envelope::wrap_all(keyring, &data_key, key_ids)?;
        Ok(())
    }

    /// Whether every wrap uses the current version of its key id (nothing for
    /// [`Envelope::rotate`] to do). A wrap whose id the keyring lacks counts as current:
    /// it cannot be rotated here.
    pub fn is_current(&self, keyring: &Keyring) -> bool {
        self.wraps
            .iter()
            .all(|w| match keyring.current_version(&w.key_id) {
                Ok(current) => current.fingerprint == w.fingerprint,
                Err(_) => true,
            })
    }

    /// Key rotation for one blob: re-wraps, under the current version of the same key
    /// id, every wrap made with an older version. Returns whether the envelope changed
    /// (and must be stored again). Wraps under ids the keyring lacks are kept as they
    /// are.
    pub fn rotate(&mut self, keyring: &Keyring) -> Result<bool, CryptError> {
        if self.is_current(keyring) {
            return Ok(false);
        }
        let data_key = self.data_key(keyring)?;
        let stale: Vec<String> = self
            .wraps
            .iter()
            .filter(|w| {
                keyring
                    .current_version(&w.key_id)
                    .is_ok_and(|c| c.fingerprint != w.fingerprint)
            })
            .map(|w| w.key_id.clone())
            .collect();
        for id in stale {
            self.put_wrap(keyring, &data_key, &id)?;
        }
        Ok(true)
    }

    /// A repository with master key `key_id` now shares this blob: the *same* data key
    /// gets one more wrap, under the current version of `key_id` (a wrap under an older
    /// version of that id is replaced). Returns whether the envelope changed.
    ///
    /// Consequence: the blob stays one set of bytes; removing `key_id` from the keyring
    /// makes the blob unreadable *through that key only*, since the other wraps still
    /// open it. Crypto-shredding a blob needs every wrap gone (or every key it is
    /// wrapped under destroyed).
    pub fn add_wrap(&mut self, keyring: &Keyring, key_id: &str) -> Result<bool, CryptError> {
        let current = keyring.current_version(key_id)?;
        if self
            .wraps
            .iter()
            .any(|w| w.key_id == key_id && w.fingerprint == current.fingerprint)
        {
            return Ok(false);
        }
        let data_key = self.data_key(keyring)?;
        self.put_wrap(keyring, &data_key, key_id)?;
        Ok(true)
    }

    /// Removes the wrap under `key_id` (when the last repository using that key no
    /// longer links the blob). Refuses to remove the last wrap, which would make the
    /// blob unreadable: shredding is deleting the envelope. Returns whether a wrap was
    /// removed.
    pub fn remove_wrap(&mut self, key_id: &str) -> Result<bool, CryptError> {
        let Some(pos) = self.wraps.iter().position(|w| w.key_id == key_id) else {
            return Ok(false);
        };
        if self.wraps.len() == 1 {
            return Err(CryptError::Envelope(format!(
                "blob {}: '{key_id}' is the only key its data key is wrapped under; \
                 delete the envelope to shred the blob",
                self.blob_id
            )));
        }
        self.wraps.remove(pos);
        Ok(true)
    }

    /// Wraps `data_key` under the current version of `key_id`, replacing any wrap under
    /// that id.
    fn put_wrap(
        &mut self,
        keyring: &Keyring,
        data_key: &DataKey,
        key_id: &str,
    ) -> Result<(), CryptError> {
        validate_key_id(key_id)?;
        let kek = keyring.current_version(key_id)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut buf = Zeroizing::new([0u8; WRAPPED_LEN]);
        buf[..KEY_LEN].copy_from_slice(data_key.key.as_ref());
        let tag = aead_key(&kek.material)?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(&self.blob_id, key_id, &kek.fingerprint)),
                &mut buf[..KEY_LEN],
            )
            .map_err(|_| CryptError::Internal("wrapping a data key"))?;
        buf[KEY_LEN..].copy_from_slice(tag.as_ref());
        let wrap = Wrap {
            key_id: key_id.to_string(),
            fingerprint: kek.fingerprint,
            nonce,
            wrapped: *buf,
        };
        match self.wraps.iter_mut().find(|w| w.key_id == key_id) {
            Some(existing) => *existing = wrap,
            None => {
                if self.wraps.len() >= MAX_WRAPS {
                    return Err(CryptError::Envelope(format!(
                        "blob {}: an envelope holds at most {MAX_WRAPS} wraps",
                        self.blob_id
                    )));
                }
                self.wraps.push(wrap);
            }
        }
        Ok(())
    }

    fn unwrap_with(&self, kek: &KeyVersion, wrap: &Wrap) -> Result<DataKey, CryptError> {
        let mut buf = Zeroizing::new(wrap.wrapped);
        let opened = aead_key(&kek.material)?
            .open_in_place(
                Nonce::assume_unique_for_key(wrap.nonce),
                Aad::from(wrap_aad(&self.blob_id, &wrap.key_id, &wrap.fingerprint)),
                buf.as_mut(),
            )
            .map_err(|_| CryptError::UnwrapFailed {
                blob_id: self.blob_id,
                key_id: wrap.key_id.clone(),
                fingerprint: wrap.fingerprint.to_string(),
            })?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(opened);
        Ok(DataKey {
            key,
            blob_id: self.blob_id,
        })
    }

    /// The serialized envelope (format version 1, see the crate documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            26 + self
                .wraps
                .iter()
                .map(|w| 1 + w.key_id.len() + 8 + NONCE_LEN + WRAPPED_LEN)
                .sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.push(Envelope::VERSION);
        out.extend_from_slice(&(SEGMENT as u32).to_be_bytes());
        out.extend_from_slice(&self.blob_id.0);
        // Both bounded by construction: at most MAX_WRAPS wraps, ids of at most 255 bytes.
        out.push(self.wraps.len() as u8);
        for w in &self.wraps {
            out.push(w.key_id.len() as u8);
            out.extend_from_slice(w.key_id.as_bytes());
            out.extend_from_slice(&w.fingerprint.0);
            out.extend_from_slice(&w.nonce);
            out.extend_from_slice(&w.wrapped);
        }
        out
    }

    /// Parses a serialized envelope. Unknown versions, another segment size, malformed
    /// or duplicate wraps and trailing bytes are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, CryptError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(CryptError::Envelope(
                "not a Wharf envelope (bad magic bytes)".into(),
            ));
        }
        let version = r.take(1)?[0];
        if version != Envelope::VERSION {
            return Err(CryptError::Envelope(format!(
                "format version {version} is not supported (this build reads version {})",
                Envelope::VERSION
            )));
        }
        let segment = u32::from_be_bytes(r.array()?);
        if segment as usize != SEGMENT {
            return Err(CryptError::Envelope(format!(
                "segment size {segment} is not supported (version 1 uses {SEGMENT})"
            )));
        }
        let blob_id = BlobId(r.array()?);
        let count = r.take(1)?[0] as usize;
        if count == 0 {
            return Err(CryptError::Envelope(format!(
                "blob {blob_id}: no wrapped data key"
            )));
        }
        let mut wraps: Vec<Wrap> = Vec::with_capacity(count);
        for _ in 0..count {
            let id_len = r.take(1)?[0] as usize;
            let key_id = std::str::from_utf8(r.take(id_len)?)
                .map_err(|_| {
                    CryptError::Envelope(format!("blob {blob_id}: a key id is not UTF-8"))
                })?
                .to_string();
            if let Err(CryptError::InvalidKeyId { reason, .. }) = validate_key_id(&key_id) {
                return Err(CryptError::Envelope(format!(
                    "blob {blob_id}: invalid key id in a wrap: {reason}"
                )));
            }
            if wraps.iter().any(|w| w.key_id == key_id) {
                return Err(CryptError::Envelope(format!(
                    "blob {blob_id}: two wraps under key '{key_id}'"
                )));
            }
            wraps.push(Wrap {
                key_id,
                fingerprint: KeyFingerprint(r.array()?),
                nonce: r.array()?,
                wrapped: r.array()?,
            });
        }
        if r.pos != bytes.len() {
            return Err(CryptError::Envelope(format!(
                "blob {blob_id}: {} unexpected bytes after the last wrap",
                bytes.len() - r.pos
            )));
        }
        Ok(Envelope { blob_id, wraps })
    }
}

/// The authenticated data of a wrap: format version, blob id, segment size, key
/// version and key id. A valid unwrap therefore also vouches for the envelope's
/// parameters.
fn wrap_aad(blob_id: &BlobId, key_id: &str, fingerprint: &KeyFingerprint) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + 1 + 16 + 4 + 8 + 1 + key_id.len());
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.push(Envelope::VERSION);
    aad.extend_from_slice(&blob_id.0);
    aad.extend_from_slice(&(SEGMENT as u32).to_be_bytes());
    aad.extend_from_slice(&fingerprint.0);
    // Key ids are at most 255 bytes (validated).
    aad.push(key_id.len() as u8);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                CryptError::Envelope(format!(
                    "truncated: {} bytes, more needed at offset {}",
                    self.bytes.len(),
                    self.pos
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}
