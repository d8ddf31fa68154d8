//! `wharf`: the registry binary. `wharf serve` runs the registry; `wharf repo` manages
//! repositories in a data directory.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod config;
mod serve;

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
    Serve(config::ServeArgs),
    /// Manage repositories in a data directory.
    Repo {
        #[command(subcommand)]
        action: RepoAction,
    },
}

#[derive(Subcommand)]
enum RepoAction {
    /// Create a repository.
    Create {
        /// Repository name, e.g. team/app.
        name: String,
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
struct DataDirArg {
    /// Data directory of the registry (the server may be running on it).
    #[arg(long, env = "WHARF_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Repo { action } => runtime.block_on(repo(action)),
    }
}

async fn repo(action: RepoAction) -> Result<()> {
    use wharf_meta::MetadataStore;
    let open = |d: &DataDirArg| serve::open_metadata(&d.data_dir);
    match action {
        RepoAction::Create { name, data } => {
            wharf_oci::names::validate_repository(&name).map_err(anyhow::Error::msg)?;
            let repo = open(&data)?.create_repository(&name).await?;
            println!("created repository {}", repo.name);
        }
        RepoAction::List { data } => {
            let store = open(&data)?;
            let mut after: Option<String> = None;
            loop {
                let page = store.list_repositories(after.as_deref(), 1000).await?;
                for r in &page {
                    println!("{}", r.name);
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => after = Some(last.name.clone()),
                    _ => break,
                }
            }
        }
        RepoAction::Delete { name, force, data } => {
            open(&data)?.delete_repository(&name, force).await?;
            println!("deleted repository {name}");
        }
    }
    Ok(())
}
