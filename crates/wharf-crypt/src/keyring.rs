//! Master keys (key-encryption keys): the keyring, its text file, rotation.

use crate::format::fill_random;
use crate::CryptError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Bytes of a master key (AES-256).
pub const KEY_LEN: usize = 32;
/// Longest accepted key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 255;
/// The id [`Keyring::generate_file`] gives the first key.
pub const DEFAULT_KEY_ID: &str = "default";

/// Short public identity of one version of a master key: the first 8 bytes of
/// HMAC-SHA-256 of a fixed label under the key. It tells versions of one key id
/// apart, in envelopes and in messages, and reveals nothing usable about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(pub(crate) [u8; 8]);

impl KeyFingerprint {
    fn of(material: &[u8; KEY_LEN]) -> KeyFingerprint {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, material);
        let tag = ring::hmac::sign(&key, b"wharf-crypt key fingerprint v1");
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&tag.as_ref()[..8]);
        KeyFingerprint(fp)
    }

    /// The fingerprint's bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}

/// One version of a master key.
pub(crate) struct KeyVersion {
    pub(crate) id: String,
    pub(crate) fingerprint: KeyFingerprint,
    pub(crate) material: Zeroizing<[u8; KEY_LEN]>,
    line: usize,
}

impl KeyVersion {
    pub(crate) fn describe(&self) -> String {
        describe_version(&self.id, &self.fingerprint)
    }
}

/// `id (version <fingerprint>)`, as messages show a key version.
pub(crate) fn describe_version(id: &str, fingerprint: &KeyFingerprint) -> String {
    format!("{id} (version {fingerprint})")
}

/// What [`Keyring::keys`] tells about one key version (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo<'a> {
    /// The key id.
    pub id: &'a str,
    /// The version's fingerprint.
    pub fingerprint: KeyFingerprint,
    /// Whether this is the version new wraps under `id` use (the first line of `id`).
    pub current: bool,
    /// Whether this is the keyring's current key (the first key of the file), which
    /// repositories with the default `AES256` encryption use.
    pub default: bool,
    /// The line of the key file it was read from (1-based).
    pub line: usize,
}

/// The master keys (key-encryption keys) of a registry.
///
/// # Key file
///
/// Text, one key per line: `<id> <base64 of 32 bytes>`; blank lines and everything
/// from a `#` at the start of a line or after whitespace are ignored. An id is 1 to
/// 255 bytes without whitespace or control characters, not starting with `#`: the
/// registry's own key (e.g. `default`) or, for ECR `KMS` repositories, the key id the
/// operator gives them (`alias/team-a`, a key ARN, ...).
///
/// **The first key of the file is the current key**: it wraps the data keys of
/// repositories with the default `AES256` encryption.
///
/// **An id may appear on several lines: these are versions of that key**, the first
/// line being the version that wraps new data keys and the later ones older versions
/// kept to unwrap older envelopes. Each version is told apart by its
/// [`KeyFingerprint`], which envelopes record. This is what makes rotation of a named
/// key possible without renaming it (a repository's `kmsKey` cannot change): a new
/// version is put before the old one, envelopes are re-wrapped, then the old line is
/// removed. The same key material on two lines is refused (a copy-paste slip, and
/// removing one copy would not retire the key).
///
/// Key material is zeroized when the keyring is dropped. (The AES key schedules that
/// the AEAD implementation derives while wrapping and unwrapping are short-lived and
/// not under this crate's control.)
pub struct Keyring {
    versions: Vec<KeyVersion>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.versions.iter().map(|v| v.describe()))
            .finish()
    }
}

/// Checks that `id` is an acceptable key id.
pub fn validate_key_id(id: &str) -> Result<(), CryptError> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_KEY_ID_LEN {
        Some("it is longer than 255 bytes")
    } else if id.starts_with('#') {
        Some("it starts with '#', which starts a comment")
    } else if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CryptError::InvalidKeyId {
            id: id.chars().take(80).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The part of a key file line before its comment.
fn strip_comment(line: &str) -> &str {
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_ws {
            return &line[..i];
        }
        prev_ws = c.is_whitespace();
    }
    line
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, CryptError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(key.as_mut())?;
    Ok(key)
}

/// The key file line of key `id` with fresh random material.
fn new_key_line(id: &str) -> Result<Zeroizing<String>, CryptError> {
    let key = random_key()?;
    let encoded = Zeroizing::new(BASE64.encode(key.as_ref()));
    Ok(Zeroizing::new(format!("{id} {}\n", encoded.as_str())))
}

impl Keyring {
    /// Parses key file text. `source` names where it came from (a path, or
    /// "configuration") in error messages.
    pub fn parse(text: &str, source: &str) -> Result<Keyring, CryptError> {
        let err = |line: usize, key_id: Option<&str>, reason: String| CryptError::KeyFile {
            source_name: source.to_string(),
            line,
            key_id: key_id.map(str::to_string),
            reason,
        };
        let mut versions: Vec<KeyVersion> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = strip_comment(raw).trim();
            if content.is_empty() {
                continue;
            }
            let mut fields = content.split_whitespace();
            let (Some(id), encoded, extra) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            if let Err(CryptError::InvalidKeyId { reason, .. }) = validate_key_id(id) {
                return Err(err(line, None, format!("invalid key id: {reason}")));
            }
            let Some(encoded) = encoded else {
                return Err(err(
                    line,
                    Some(id),
                    "expected `<id> <base64 of 32 bytes>`, the key is missing".into(),
                ));
            };
            if extra.is_some() {
                return Err(err(
                    line,
                    Some(id),
                    "expected `<id> <base64 of 32 bytes>`, found more fields".into(),
                ));
            }
            // The decoding error is not shown: it would quote the key's characters.
            let decoded = Zeroizing::new(
                BASE64
                    .decode(encoded)
                    .map_err(|_| err(line, Some(id), "the key is not valid base64".into()))?,
            );
            if decoded.len() != KEY_LEN {
                return Err(err(
                    line,
                    Some(id),
                    format!(
                        "the key decodes to {} bytes, a key must be {KEY_LEN} bytes \
                         (`openssl rand -base64 32` makes one)",
                        decoded.len()
                    ),
                ));
            }
            let mut material = Zeroizing::new([0u8; KEY_LEN]);
            material.copy_from_slice(&decoded);
            let fingerprint = KeyFingerprint::of(&material);
            if let Some(same) = versions.iter().find(|v| v.material == material) {
                return Err(err(
                    line,
                    Some(id),
                    format!(
                        "the same key material is already on line {} (key '{}')",
                        same.line, same.id
                    ),
                ));
            }
            if let Some(same) = versions
                .iter()
                .find(|v| v.id == id && v.fingerprint == fingerprint)
            {
                return Err(err(
                    line,
                    Some(id),
                    format!(
                        "two versions of this key have the same fingerprint {fingerprint} \
                         (line {}); generate another key",
                        same.line
                    ),
                ));
            }
            versions.push(KeyVersion {
                id: id.to_string(),
                fingerprint,
                material,
                line,
            });
        }
        if versions.is_empty() {
            return Err(err(0, None, "no key in it".into()));
        }
        Ok(Keyring { versions })
    }

    /// Reads and parses the key file at `path`.
    pub fn load(path: &Path) -> Result<Keyring, CryptError> {
        let text = read_key_file(path)?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// Creates the key file `path` with one random key, id [`DEFAULT_KEY_ID`], and
    /// returns its keyring. The file is written atomically with mode 0600 (a temporary
    /// file in the same directory, fsync, then linked into place, and the directory
    /// fsynced); an existing file is never overwritten.
    pub fn generate_file(path: &Path) -> Result<Keyring, CryptError> {
        let line = new_key_line(DEFAULT_KEY_ID)?;
        let text = Zeroizing::new(format!(
            "# Wharf master keys: `<id> <base64 of 32 bytes>`. The first key is the \
             current one;\n# later lines of the same id are older versions, kept until \
             envelopes are re-wrapped.\n{}",
            line.as_str()
        ));
        let keyring = Keyring::parse(&text, &path.display().to_string())?;
        write_atomic(path, text.as_bytes(), false)?;
        Ok(keyring)
    }

    /// Rotates the current key: a new random version of [`Keyring::current_id`] is
    /// put before the first key line of `path` (comments and the other lines are kept),
    /// atomically, mode 0600. Returns the new keyring.
    ///
    /// Every process using the file must load the new version before any of them uses
    /// it (or it cannot read what the others wrap): with several replicas, copy the
    /// rotated file to all of them before reloading any. Old versions are needed until
    /// every envelope has been re-wrapped ([`crate::Envelope::rotate`]); remove their
    /// lines only then.
    pub fn rotate_file(path: &Path) -> Result<Keyring, CryptError> {
        edit_key_file(path, |keyring| {
            let current = &keyring.versions[0];
            Ok((current.line, new_key_line(&current.id)?))
        })
    }

    /// Rotates key `id` (a named key): a new random version of it is put immediately
    /// before its current version's line in `path`. The same caveats as
    /// [`Keyring::rotate_file`] apply.
    pub fn rotate_key_file(path: &Path, id: &str) -> Result<Keyring, CryptError> {
        edit_key_file(path, |keyring| {
            let current = keyring.current_version(id)?;
            Ok((current.line, new_key_line(id)?))
        })
    }

    /// Adds a new named key `id` with random material at the end of `path` (for a
    /// repository with `KMS` encryption and that key id). Fails if `id` exists.
    pub fn add_key_file(path: &Path, id: &str) -> Result<Keyring, CryptError> {
        validate_key_id(id)?;
        edit_key_file(path, |keyring| {
            if keyring.has(id) {
                return Err(CryptError::KeyFile {
                    source_name: path.display().to_string(),
                    line: keyring.current_version(id)?.line,
                    key_id: Some(id.to_string()),
                    reason: "the key already exists (rotate it instead)".into(),
                });
            }
            Ok((usize::MAX, new_key_line(id)?))
        })
    }

    /// The current key's id: the first key of the file, which wraps the data keys of
    /// repositories with `AES256` encryption.
    pub fn current_id(&self) -> &str {
        &self.versions[0].id
    }

    /// Whether the keyring holds key `id` (any version).
    pub fn has(&self, id: &str) -> bool {
        self.versions.iter().any(|v| v.id == id)
    }

    /// The distinct key ids, in file order of their first appearance.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for v in &self.versions {
            if !ids.contains(&v.id.as_str()) {
                ids.push(&v.id);
            }
        }
        ids
    }

    /// Every key version, in file order, without material.
    pub fn keys(&self) -> Vec<KeyInfo<'_>> {
        self.versions
            .iter()
            .enumerate()
            .map(|(i, v)| KeyInfo {
                id: &v.id,
                fingerprint: v.fingerprint,
                current: self
                    .versions
                    .iter()
                    .find(|w| w.id == v.id)
                    .is_some_and(|w| std::ptr::eq(w, v)),
                default: i == 0,
                line: v.line,
            })
            .collect()
    }

    /// The key id a repository's encryption configuration wraps data keys under:
    /// `AES256` → the current key; `KMS` without a key → the current key too (ECR's
    /// AWS-managed key is, in Wharf, the registry's own key); `KMS` with a key → that
    /// id, which must be in the keyring.
    pub fn key_for<'a>(
        &'a self,
        config: &'a crate::EncryptionConfig,
    ) -> Result<&'a str, CryptError> {
        match config {
            crate::EncryptionConfig::Aes256 | crate::EncryptionConfig::Kms { key: None } => {
                Ok(self.current_id())
            }
            crate::EncryptionConfig::Kms { key: Some(id) } => {
                self.current_version(id)?;
                Ok(id)
            }
        }
    }

    /// The version of `id` that new wraps use.
    pub(crate) fn current_version(&self, id: &str) -> Result<&KeyVersion, CryptError> {
        self.versions
            .iter()
            .find(|v| v.id == id)
            .ok_or_else(|| CryptError::UnknownKey {
                id: id.to_string(),
                available: self.ids().into_iter().map(str::to_string).collect(),
            })
    }

    /// Version `fingerprint` of key `id`, if held.
    pub(crate) fn version(&self, id: &str, fingerprint: &KeyFingerprint) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|v| v.id == id && v.fingerprint == *fingerprint)
    }

    /// Every version, described for messages.
    pub(crate) fn describe_all(&self) -> Vec<String> {
        self.versions.iter().map(KeyVersion::describe).collect()
    }
}

/// The configured encryption of a repository (ECR's `encryptionConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EncryptionConfig {
    /// `AES256`: the registry's current master key.
    #[default]
    Aes256,
    /// `KMS`: the named master key (`kmsKey`), or the registry's current key when none
    /// is given.
    Kms {
        /// The key id (`kmsKey`), as given.
        key: Option<String>,
    },
}

impl EncryptionConfig {
    /// Reads ECR's `encryptionType` (`AES256` or `KMS`) and optional `kmsKey`.
    pub fn from_ecr(
        encryption_type: &str,
        kms_key: Option<&str>,
    ) -> Result<EncryptionConfig, CryptError> {
        match (encryption_type, kms_key) {
            ("AES256", None) => Ok(EncryptionConfig::Aes256),
            ("AES256", Some(_)) => Err(CryptError::Config(
                "a kmsKey may only be given with encryptionType KMS".into(),
            )),
            ("KMS", key) => {
                if let Some(id) = key {
                    validate_key_id(id)?;
                }
                Ok(EncryptionConfig::Kms {
                    key: key.map(str::to_string),
                })
            }
            (other, _) => Err(CryptError::Config(format!(
                "encryptionType must be AES256 or KMS, not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

fn io_err(path: &Path, action: impl Into<String>) -> impl FnOnce(io::Error) -> CryptError + '_ {
    let action = action.into();
    move |error| CryptError::KeyFileIo {
        path: path.to_path_buf(),
        action,
        error,
    }
}

fn read_key_file(path: &Path) -> Result<Zeroizing<String>, CryptError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io_err(path, "reading"))
}

/// `<path><suffix>` (suffix appended to the file name).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An exclusive claim on editing a key file: `<path>.lock`, created exclusively and
/// removed on drop.
struct EditLock {
    path: PathBuf,
}

impl EditLock {
    fn acquire(key_file: &Path) -> Result<EditLock, CryptError> {
        let path = with_suffix(key_file, ".lock");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(
                key_file,
                format!(
                    "creating the lock file {} (if no other rotation is running, a \
                     previous one died: remove it)",
                    path.display()
                ),
            ))?;
        Ok(EditLock { path })
    }
}

impl Drop for EditLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Inserts a line into the key file under the edit lock: `edit` returns the 1-based
/// line number to insert before (`usize::MAX`: at the end) and the line.
fn edit_key_file(
    path: &Path,
    edit: impl FnOnce(&Keyring) -> Result<(usize, Zeroizing<String>), CryptError>,
) -> Result<Keyring, CryptError> {
    let _lock = EditLock::acquire(path)?;
    let text = read_key_file(path)?;
    let source = path.display().to_string();
    let keyring = Keyring::parse(&text, &source)?;
    let (before, line) = edit(&keyring)?;
    let mut out = Zeroizing::new(String::with_capacity(text.len() + line.len() + 1));
    let mut inserted = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == before {
            out.push_str(&line);
            inserted = true;
        }
        out.push_str(l);
    }
    if !inserted {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&line);
    }
    let keyring = Keyring::parse(&out, &source)?;
    write_atomic(path, out.as_bytes(), true)?;
    Ok(keyring)
}

/// Writes `contents` to `path` atomically with mode 0600: a temporary file beside it,
/// fsynced, then renamed over `path` (`replace`) or hard-linked to it (which fails if
/// `path` exists), and the directory fsynced.
fn write_atomic(path: &Path, contents: &[u8], replace: bool) -> Result<(), CryptError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut suffix = [0u8; 8];
    fill_random(&mut suffix)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = with_suffix(path, &format!(".{suffix}.tmp"));
    let result = (|| -> Result<(), CryptError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(path, "creating a temporary file"))?;
        // The umask may only have removed bits; make it exactly 0600.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(path, "setting the permissions of a temporary file"))?;
        file.write_all(contents)
            .map_err(io_err(path, "writing a temporary file"))?;
        file.sync_all()
            .map_err(io_err(path, "syncing a temporary file"))?;
        drop(file);
        if replace {
            fs::rename(&tmp, path).map_err(io_err(path, "renaming the new file into place"))?;
        } else {
            fs::hard_link(&tmp, path).map_err(io_err(path, "creating"))?;
            fs::remove_file(&tmp).map_err(io_err(path, "removing the temporary file"))?;
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(path, "syncing the directory"))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped() {
        assert_eq!(strip_comment("# all"), "");
        assert_eq!(strip_comment("a b # c"), "a b ");
        assert_eq!(strip_comment("a#b c"), "a#b c");
        assert_eq!(strip_comment("  #x"), "  ");
    }

    #[test]
    fn key_ids() {
        for good in [
            "default",
            "alias/team-a",
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            validate_key_id(good).unwrap();
        }
        for bad in ["", "a b", "#x", "a\tb", "a\u{7}"] {
            assert!(validate_key_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key_id(&"x".repeat(256)).is_err());
        validate_key_id(&"x".repeat(255)).unwrap();
    }
}
