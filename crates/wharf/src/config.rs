//! Configuration of `wharf serve`: command-line flags, environment variables and an
//! optional TOML file, in that order of precedence, over built-in defaults.

use crate::stores::{BlobLocation, MetadataLocation};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wharf_registry::RegistryConfig;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./wharf-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// Default account id.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

/// Checks that an account id is 12 digits.
pub fn check_account_id(id: &str) -> Result<()> {
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("account id {id:?} must be 12 digits");
    }
    Ok(())
}

/// Flags of `wharf serve`; each also reads a `WHARF_*` environment variable.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file (keys: listen, data_dir, metadata, blobs,
    /// encryption_key_file, tls_cert,
    /// tls_key, create_on_push, upload_timeout_secs, max_manifest_bytes,
    /// max_blob_bytes, region, account_id, auth, token_lifetime_secs, registry_domain).
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "WHARF_LISTEN")]
    pub listen: Option<String>,
    /// Data directory: SQLite metadata and filesystem blobs [default: ./wharf-data].
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: `postgres://user:password@host:port/db` for PostgreSQL
    /// (several replicas may share it), or a SQLite file [default:
    /// <data-dir>/metadata.db].
    #[arg(long, env = "WHARF_METADATA", hide_env_values = true)]
    pub metadata: Option<String>,
    /// Blob storage: `s3://bucket/prefix?endpoint=URL&region=R` for S3-compatible
    /// object storage (credentials from the AWS_* environment variables; several
    /// replicas may share it), or a directory [default: <data-dir>].
    #[arg(long, env = "WHARF_BLOBS")]
    pub blobs: Option<String>,
    /// Master key file (`wharf keys generate --key-file PATH` makes one): with it,
    /// new blobs are encrypted at rest (AES-256-GCM, a data key per blob wrapped under
    /// the file's current key). Every replica needs the same file.
    #[arg(long, env = "WHARF_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "WHARF_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WHARF_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse pushes to repositories that do not exist (ECR behaviour).
    #[arg(long, env = "WHARF_NO_CREATE_ON_PUSH")]
    pub no_create_on_push: bool,
    /// Seconds after which an idle upload session is discarded [default: 86400].
    #[arg(long, env = "WHARF_UPLOAD_TIMEOUT_SECS")]
    pub upload_timeout_secs: Option<u64>,
    /// Region name served (SigV4 scope and ARNs) [default: us-east-1].
    #[arg(long, env = "WHARF_REGION")]
    pub region: Option<String>,
    /// 12-digit account id of the registry [default: 000000000000].
    #[arg(long, env = "WHARF_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Access key id of the administrator (with --admin-secret-access-key); without
    /// it, one is generated on first start and printed once.
    #[arg(
        long,
        env = "WHARF_ADMIN_ACCESS_KEY_ID",
        requires = "admin_secret_access_key"
    )]
    pub admin_access_key_id: Option<String>,
    /// Secret of --admin-access-key-id.
    #[arg(
        long,
        env = "WHARF_ADMIN_SECRET_ACCESS_KEY",
        requires = "admin_access_key_id",
        hide_env_values = true
    )]
    pub admin_secret_access_key: Option<String>,
    /// Authentication: `iam` (default) verifies every signature and token and
    /// evaluates IAM policies; `permissive` (development only) lets any credentials,
    /// or none, act as the administrator.
    #[arg(long, env = "WHARF_AUTH")]
    pub auth: Option<String>,
    /// Seconds a registry token from GetAuthorizationToken stays valid [default: 43200,
    /// ECR's 12 hours].
    #[arg(long, env = "WHARF_TOKEN_LIFETIME_SECS")]
    pub token_lifetime_secs: Option<u64>,
    /// Domain under which registries are addressed ECR's way,
    /// `<account>.dkr.ecr.<region>.<domain>` (e.g. `localhost`, or a domain with
    /// wildcard DNS); used in repositoryUri and proxyEndpoint.
    #[arg(long, env = "WHARF_REGISTRY_DOMAIN")]
    pub registry_domain: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    metadata: Option<String>,
    blobs: Option<String>,
    encryption_key_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    create_on_push: Option<bool>,
    upload_timeout_secs: Option<u64>,
    max_manifest_bytes: Option<usize>,
    max_blob_bytes: Option<u64>,
    region: Option<String>,
    account_id: Option<String>,
    auth: Option<String>,
    token_lifetime_secs: Option<u64>,
    registry_domain: Option<String>,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub metadata: MetadataLocation,
    pub blobs: BlobLocation,
    pub encryption_key_file: Option<PathBuf>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub registry: RegistryConfig,
    pub region: String,
    pub account_id: String,
    pub admin_key: Option<(String, String)>,
    pub auth: wharf_access::AuthMode,
    pub token_lifetime_secs: i64,
    pub registry_domain: Option<String>,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

impl Settings {
    /// Resolves flags, environment and file over the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let listen_str = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_str
            .parse()
            .with_context(|| format!("listen address {listen_str:?} is not HOST:PORT"))?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let metadata =
            MetadataLocation::resolve(args.metadata.or(file.metadata).as_deref(), &data_dir);
        let blobs = BlobLocation::resolve(args.blobs.or(file.blobs).as_deref(), &data_dir);
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate and a key"),
        };
        let mut registry = RegistryConfig {
            create_on_push: !args.no_create_on_push && file.create_on_push.unwrap_or(true),
            ..RegistryConfig::default()
        };
        if let Some(s) = args.upload_timeout_secs.or(file.upload_timeout_secs) {
            registry.upload_timeout = Duration::from_secs(s);
        }
        if let Some(m) = file.max_manifest_bytes {
            registry.max_manifest_bytes = m;
        }
        if let Some(m) = file.max_blob_bytes {
            registry.max_blob_bytes = m;
        }
        let region = args
            .region
            .or(file.region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let account_id = args
            .account_id
            .or(file.account_id)
            .unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
        check_account_id(&account_id)?;
        let auth = match args.auth.or(file.auth).as_deref() {
            None | Some("iam") => wharf_access::AuthMode::Iam,
            Some("permissive") => wharf_access::AuthMode::Permissive,
            Some(other) => anyhow::bail!("--auth {other:?} must be iam or permissive"),
        };
        let admin_key = args.admin_access_key_id.zip(args.admin_secret_access_key);
        Ok(Settings {
            listen,
            data_dir,
            metadata,
            blobs,
            encryption_key_file: args.encryption_key_file.or(file.encryption_key_file),
            tls,
            registry,
            region,
            account_id,
            admin_key,
            auth,
            token_lifetime_secs: args
                .token_lifetime_secs
                .or(file.token_lifetime_secs)
                .map(|s| s.clamp(1, 7 * 24 * 3600) as i64)
                .unwrap_or(wharf_access::TOKEN_LIFETIME_SECS),
            registry_domain: args
                .registry_domain
                .or(file.registry_domain)
                .map(|d| d.trim_matches('.').to_string())
                .filter(|d| !d.is_empty()),
        })
    }
}
