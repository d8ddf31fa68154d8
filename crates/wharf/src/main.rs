//! `wharf`: the registry binary. `wharf serve` runs the registry; `wharf repo` manages
//! repositories in a data directory.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod api;
mod config;
mod health;
mod serve;
mod stores;

/// Wharf: a self-hosted container registry with the ECR API.
#[derive(Parser)]
#[command(name = "wharf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (OCI distribution API on /v2/).
    Serve(Box<config::ServeArgs>),
    /// Manage repositories in a data directory.
    Repo {
        #[command(subcommand)]
        action: RepoAction,
    },
    /// Manage accounts in a data directory.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Manage the master key file of encryption at rest.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key file with one new random key (mode 0600; refuses to overwrite).
    Generate {
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// Put a new version of a key first (the default key, or --key ID): new data keys
    /// are wrapped under it; older versions stay to unwrap what they wrapped.
    Rotate {
        /// The key to rotate [default: the file's first key].
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// Add a named key (e.g. the key id of ECR KMS repositories).
    Add {
        /// Key id.
        id: String,
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// List the keys and versions (ids and fingerprints, never key material).
    List {
        #[command(flatten)]
        file: KeyFileArg,
    },
    /// After a rotation: re-wrap every blob's data key under the current version of
    /// each key that wraps it (blobs are not rewritten), so that the older versions'
    /// lines can then be deleted from the key file. Safe while servers run, and to
    /// run again.
    Rewrap {
        #[command(flatten)]
        file: KeyFileArg,
        #[command(flatten)]
        data: DataDirArg,
        /// Blob storage, as `wharf serve --blobs` [default: <data-dir>/blobs].
        #[arg(long, env = "WHARF_BLOBS", hide_env_values = true)]
        blobs: Option<String>,
    },
}

#[derive(clap::Args)]
struct KeyFileArg {
    /// The key file.
    #[arg(long, env = "WHARF_ENCRYPTION_KEY_FILE")]
    key_file: PathBuf,
}

#[derive(Subcommand)]
enum AccountAction {
    /// Create an account (a registry of its own) and print its administrator's
    /// access key, once.
    Create {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Replace the administrator's access keys with a new one and print it, once
    /// (for a lost key; a running server refuses the old keys within a second).
    ResetAdminKey {
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Subcommand)]
enum RepoAction {
    /// Create a repository.
    Create {
        /// Repository name, e.g. team/app.
        name: String,
        #[command(flatten)]
        tags: TagPolicyArgs,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set whether a repository's tags may be overwritten.
    SetTagMutability {
        /// Repository name.
        name: String,
        #[command(flatten)]
        tags: TagPolicyArgs,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List repositories.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Delete a repository.
    Delete {
        /// Repository name.
        name: String,
        /// Delete even if it still holds images.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(clap::Args)]
struct TagPolicyArgs {
    /// MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION (ECR's values).
    #[arg(long, default_value = "MUTABLE")]
    tag_mutability: String,
    /// Wildcard tag filter excepted from the setting (repeat, up to 5), e.g. 'latest' or 'dev-*'.
    #[arg(long = "exclusion-filter")]
    exclusion_filters: Vec<String>,
}

impl TagPolicyArgs {
    fn policy(&self) -> Result<wharf_meta::TagPolicy> {
        let mutability = wharf_meta::TagMutability::parse(&self.tag_mutability).ok_or_else(|| {
            anyhow::anyhow!(
                "--tag-mutability {:?} must be one of MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION",
                self.tag_mutability
            )
        })?;
        let policy = wharf_meta::TagPolicy {
            mutability,
            exclusion_filters: self.exclusion_filters.clone(),
        };
        policy.validate().map_err(anyhow::Error::msg)?;
        Ok(policy)
    }
}

#[derive(clap::Args, Clone)]
struct DataDirArg {
    /// Data directory of the registry (the server may be running on it).
    #[arg(long, env = "WHARF_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Metadata database, as `wharf serve --metadata` (a `postgres://` URL or a SQLite
    /// file) [default: <data-dir>/metadata.db].
    #[arg(long, env = "WHARF_METADATA", hide_env_values = true)]
    metadata: Option<String>,
    /// The account whose registry is meant.
    #[arg(long, env = "WHARF_ACCOUNT_ID", default_value = config::DEFAULT_ACCOUNT)]
    account_id: String,
}

impl DataDirArg {
    /// Opens the metadata store these flags name.
    async fn open(&self) -> Result<stores::Metadata> {
        config::check_account_id(&self.account_id)?;
        let loc = stores::MetadataLocation::resolve(self.metadata.as_deref(), &self.data_dir);
        stores::open_metadata(&loc).await
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(*args)),
        Command::Repo { action } => runtime.block_on(repo(action)),
        Command::Account { action } => runtime.block_on(account(action)),
        Command::Keys { action } => keys(action, &runtime),
    }
}

/// `wharf keys rewrap`: visits every blob the metadata records.
async fn rewrap(key_file: &std::path::Path, data: &DataDirArg, blobs: Option<&str>) -> Result<()> {
    let keyring = stores::open_keyring(key_file)?;
    let store = data.open().await?;
    let loc = stores::BlobLocation::resolve(blobs, &data.data_dir);
    let blobs = stores::open_blobs(&loc, Some(keyring)).await?;
    let (mut visited, mut changed, mut missing) = (0u64, 0u64, 0u64);
    let mut after = None;
    loop {
        let page = store.meta.list_blobs(after.as_ref(), 500).await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for digest in &page {
            visited += 1;
            match blobs.rotate_keys(digest).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                // Recorded but not stored: collected, or never committed.
                Err(wharf_blob::BlobError::BlobUnknown(_)) => missing += 1,
                Err(e) => return Err(e).with_context(|| format!("re-wrapping blob {digest}")),
            }
        }
        after = Some(last);
    }
    println!(
        "{visited} blobs visited, {changed} re-wrapped under the current key versions, \
         {missing} recorded but not in blob storage"
    );
    Ok(())
}

fn keys(action: KeysAction, runtime: &tokio::runtime::Runtime) -> Result<()> {
    use wharf_crypt::Keyring;
    let keyring = match &action {
        KeysAction::Rewrap { file, data, blobs } => {
            return runtime.block_on(rewrap(&file.key_file, data, blobs.as_deref()));
        }
        KeysAction::Generate { file } => Keyring::generate_file(&file.key_file),
        KeysAction::Rotate { key: None, file } => Keyring::rotate_file(&file.key_file),
        KeysAction::Rotate {
            key: Some(id),
            file,
        } => Keyring::rotate_key_file(&file.key_file, id),
        KeysAction::Add { id, file } => Keyring::add_key_file(&file.key_file, id),
        KeysAction::List { file } => Keyring::load(&file.key_file),
    }?;
    for k in keyring.keys() {
        let mut notes = Vec::new();
        if k.default {
            notes.push("default");
        }
        if k.current {
            notes.push("current");
        }
        println!("{}\t{}\t{}", k.id, k.fingerprint, notes.join(","));
    }
    Ok(())
}

async fn account(action: AccountAction) -> Result<()> {
    match action {
        AccountAction::Create { data } => {
            let store = data.open().await?;
            match wharf_ecr::bootstrap::ensure_admin(store.meta.as_ref(), &data.account_id, None)
                .await?
            {
                wharf_ecr::bootstrap::Bootstrap::Created(key) => {
                    wharf_iam::bootstrap_admin(
                        store.iam.as_ref(),
                        &data.account_id,
                        wharf_access::BOOTSTRAP_ADMIN,
                    )
                    .await?;
                    println!(
                        "account {} created; its administrator (shown once, keep it):",
                        key.account_id
                    );
                    println!("  export AWS_ACCESS_KEY_ID={}", key.access_key_id);
                    println!("  export AWS_SECRET_ACCESS_KEY={}", key.secret_access_key);
                }
                wharf_ecr::bootstrap::Bootstrap::Existing => {
                    anyhow::bail!("account {} exists already", data.account_id)
                }
            }
        }
        AccountAction::ResetAdminKey { data } => {
            let store = data.open().await?.iam;
            let admin = wharf_access::BOOTSTRAP_ADMIN;
            wharf_iam::bootstrap_admin(store.as_ref(), &data.account_id, admin).await?;
            for old in store.list_user_access_keys(&data.account_id, admin).await? {
                store
                    .delete_user_access_key(&data.account_id, admin, &old.access_key_id)
                    .await?;
                println!("deleted access key {}", old.access_key_id);
            }
            let (id, secret) = wharf_ecr::bootstrap::new_key_pair();
            let key = store
                .create_user_access_key(&wharf_meta::AccessKey {
                    access_key_id: id,
                    secret_access_key: secret,
                    account_id: data.account_id.clone(),
                    user_name: admin.to_string(),
                    active: true,
                    created_at: wharf_meta::now_millis(),
                })
                .await?;
            println!(
                "new administrator key of account {} (shown once, keep it):",
                key.account_id
            );
            println!("  export AWS_ACCESS_KEY_ID={}", key.access_key_id);
            println!("  export AWS_SECRET_ACCESS_KEY={}", key.secret_access_key);
        }
    }
    Ok(())
}

async fn repo(action: RepoAction) -> Result<()> {
    use wharf_meta::MetadataStore;
    let open = |d: &DataDirArg| {
        let d = d.clone();
        async move {
            let store = d.open().await?;
            Ok::<_, anyhow::Error>(wharf_meta::Namespaced::new(store.meta, &d.account_id))
        }
    };
    match action {
        RepoAction::Create { name, tags, data } => {
            wharf_oci::names::validate_repository(&name).map_err(anyhow::Error::msg)?;
            let policy = tags.policy()?;
            let store = open(&data).await?;
            let repo = store.create_repository(&name).await?;
            if policy != wharf_meta::TagPolicy::default() {
                store.set_tag_policy(&name, &policy).await?;
            }
            println!(
                "created repository {} (tags {})",
                repo.name,
                policy.mutability.as_str()
            );
        }
        RepoAction::SetTagMutability { name, tags, data } => {
            let repo = open(&data)
                .await?
                .set_tag_policy(&name, &tags.policy()?)
                .await?;
            println!(
                "repository {}: tags {}",
                repo.name,
                repo.tag_policy.mutability.as_str()
            );
        }
        RepoAction::List { data } => {
            let store = open(&data).await?;
            let mut after: Option<String> = None;
            loop {
                let page = store.list_repositories(after.as_deref(), 1000).await?;
                for r in &page {
                    let p = &r.tag_policy;
                    if p.exclusion_filters.is_empty() {
                        println!("{}\t{}", r.name, p.mutability.as_str());
                    } else {
                        println!(
                            "{}\t{} except {}",
                            r.name,
                            p.mutability.as_str(),
                            p.exclusion_filters.join(",")
                        );
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => after = Some(last.name.clone()),
                    _ => break,
                }
            }
        }
        RepoAction::Delete { name, force, data } => {
            open(&data).await?.delete_repository(&name, force).await?;
            println!("deleted repository {name}");
        }
    }
    Ok(())
}
