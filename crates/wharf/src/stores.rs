//! Opening the engines a deployment names: metadata in SQLite (a file) or PostgreSQL
//! (a `postgres://` URL), blobs on the filesystem (a directory) or in S3-compatible
//! object storage (an `s3://` URL).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wharf_blob::{BlobStore, FsBlobStore};
use wharf_meta::{IamStore, JobStore, MetadataStore, SqliteStore};

/// Where metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl MetadataLocation {
    /// `--metadata`: a `postgres://`/`postgresql://` URL, a `sqlite:` path, or a plain
    /// path to a SQLite file; none means `<data-dir>/metadata.db`.
    pub fn resolve(given: Option<&str>, data_dir: &Path) -> MetadataLocation {
        match given {
            None => MetadataLocation::Sqlite(data_dir.join("metadata.db")),
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                MetadataLocation::Postgres(s.to_string())
            }
            Some(s) => {
                MetadataLocation::Sqlite(PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s)))
            }
        }
    }

    /// What to print about it: the engine and where, without passwords.
    pub fn describe(&self) -> String {
        match self {
            MetadataLocation::Sqlite(p) => format!("SQLite {}", p.display()),
            MetadataLocation::Postgres(url) => format!("PostgreSQL {}", redact(url)),
        }
    }
}

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory (`blobs/` and `uploads/` under it).
    Fs(PathBuf),
    /// An `s3://bucket/prefix?...` URL.
    S3(String),
}

impl BlobLocation {
    /// `--blobs`: an `s3://` URL or a directory; none means the data directory.
    pub fn resolve(given: Option<&str>, data_dir: &Path) -> BlobLocation {
        match given {
            None => BlobLocation::Fs(data_dir.to_path_buf()),
            Some(s) if s.starts_with("s3://") => BlobLocation::S3(s.to_string()),
            Some(s) => BlobLocation::Fs(PathBuf::from(s.strip_prefix("file:").unwrap_or(s))),
        }
    }

    /// What to print about it.
    pub fn describe(&self) -> String {
        match self {
            BlobLocation::Fs(p) => format!("filesystem {}", p.display()),
            BlobLocation::S3(url) => format!("S3 {}", redact(url)),
        }
    }
}

/// `user:password@` in a URL becomes `user:***@`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The metadata engine, seen through each of its traits.
#[derive(Clone)]
pub struct Metadata {
    /// Repositories, images, uploads, keys.
    pub meta: Arc<dyn MetadataStore>,
    /// IAM principals and policies.
    pub iam: Arc<dyn IamStore>,
    /// Background jobs and leases.
    pub jobs: Arc<dyn JobStore>,
}

impl Metadata {
    fn of<S: MetadataStore + IamStore + JobStore>(store: Arc<S>) -> Metadata {
        Metadata {
            meta: store.clone(),
            iam: store.clone(),
            jobs: store,
        }
    }
}

/// Opens (creating or migrating it as needed) the metadata store at `loc`.
pub async fn open_metadata(loc: &MetadataLocation) -> Result<Metadata> {
    match loc {
        MetadataLocation::Sqlite(path) => {
            let store = SqliteStore::open(path)
                .with_context(|| format!("opening metadata database {}", path.display()))?;
            Ok(Metadata::of(Arc::new(store)))
        }
        MetadataLocation::Postgres(url) => {
            let store = wharf_meta_pg::PgStore::connect(url)
                .await
                .with_context(|| format!("connecting to metadata database {}", redact(url)))?;
            Ok(Metadata::of(Arc::new(store)))
        }
    }
}

/// Loads the master key file that turns on encryption at rest.
pub fn open_keyring(path: &Path) -> Result<Arc<wharf_crypt::Keyring>> {
    let keyring = wharf_crypt::Keyring::load(path)
        .with_context(|| format!("loading the encryption key file {}", path.display()))?;
    Ok(Arc::new(keyring))
}

/// Opens the blob store at `loc`; with a keyring, new blobs are encrypted at rest.
pub async fn open_blobs(
    loc: &BlobLocation,
    keyring: Option<Arc<wharf_crypt::Keyring>>,
) -> Result<Arc<dyn BlobStore>> {
    match loc {
        BlobLocation::Fs(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating blob directory {}", dir.display()))?;
            let store = match keyring {
                Some(k) => FsBlobStore::open_encrypted(dir, k),
                None => FsBlobStore::open(dir),
            }
            .with_context(|| format!("opening blob store in {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        BlobLocation::S3(url) => {
            let what = || format!("opening blob store {}", redact(url));
            let config = wharf_blob_s3::S3Config::from_url(url).with_context(what)?;
            let store = match keyring {
                Some(k) => wharf_blob_s3::S3BlobStore::with_keyring(config, k),
                None => wharf_blob_s3::S3BlobStore::new(config),
            }
            .with_context(what)?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let d = Path::new("/data");
        assert_eq!(
            MetadataLocation::resolve(None, d),
            MetadataLocation::Sqlite("/data/metadata.db".into())
        );
        assert_eq!(
            MetadataLocation::resolve(Some("postgres://u:p@h/db"), d),
            MetadataLocation::Postgres("postgres://u:p@h/db".into())
        );
        assert_eq!(
            MetadataLocation::resolve(Some("sqlite:/x/m.db"), d),
            MetadataLocation::Sqlite("/x/m.db".into())
        );
        assert_eq!(
            BlobLocation::resolve(None, d),
            BlobLocation::Fs("/data".into())
        );
        assert_eq!(
            BlobLocation::resolve(Some("s3://b/p?endpoint=http://h:1"), d),
            BlobLocation::S3("s3://b/p?endpoint=http://h:1".into())
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("s3://bucket/p?endpoint=http://a:b@h"),
            "s3://bucket/p?endpoint=http://a:b@h"
        );
    }
}
