//! PostgreSQL for tests.
//!
//! [`database`] creates a fresh, empty database (`CREATE DATABASE wharf_test_…`) on a
//! shared cluster and returns its URL, so every test gets its own schema and data.
//!
//! The cluster is the one named by [`ENV`] (`WHARF_TEST_POSTGRES`, a superuser URL
//! such as `postgres://postgres@127.0.0.1:5433/postgres`) when it is set. Otherwise the
//! first call starts a private cluster for the test process:
//!
//! - the binaries are those of the newest version under `/usr/lib/postgresql/*/bin`
//!   (Debian's layout), else of the directory `pg_config --bindir` names;
//! - `initdb` makes a cluster in a new temporary directory owned by the `postgres` OS
//!   user (PostgreSQL refuses to run as root; as another user it runs as that user),
//!   with trust authentication and, when the build has ICU, an `en-US` default
//!   collation: text sorts in natural-language order unless a query asks for bytes,
//!   which is what catches a missing `COLLATE "C"`;
//! - `postgres` itself (not `pg_ctl`, which daemonizes) is the direct child of a
//!   thread that lives as long as the process, listening on `127.0.0.1` at a free port
//!   and on a Unix socket in the temporary directory, with `fsync=off`;
//! - the child switches to the `postgres` user and then asks the kernel for
//!   `SIGQUIT` (PostgreSQL's immediate shutdown) when its parent dies
//!   (`PR_SET_PDEATHSIG`; set after the user switch, which would clear it), so the
//!   server cannot outlive the test process however that ends;
//! - at normal exit the server is stopped and its directory removed (a process killed
//!   by a signal leaves only the directory behind).
//!
//! Test databases are not dropped: a private cluster goes away with the process, and a
//! cluster given by [`ENV`] is expected to be thrown away after the run.

use crate::daemon::Daemon;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming a cluster to use instead of a private one: the URL
/// of a superuser connection (it must be allowed to `CREATE DATABASE`).
pub const ENV: &str = "WHARF_TEST_POSTGRES";

/// How long a private cluster may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The URL of a new, empty database on the test cluster.
///
/// # Panics
///
/// When no cluster can be had (PostgreSQL is not installed, it does not start, or the
/// cluster of [`ENV`] refuses the connection or the `CREATE DATABASE`): tests that
/// need PostgreSQL cannot run without it.
pub async fn database() -> String {
    let admin = admin_url().await;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "wharf_test_{}_{}_{nanos:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL cluster: {e}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e:?}"));
    drop(client);
    // The connection ends once the client is gone; its result does not matter.
    let _ = driver.await;
    with_database(&admin, &name)
}

/// The directory of the private cluster's Unix socket (starting the cluster if it is
/// not running yet), for tests of socket URLs (`?host=<dir>&port=<port>`; the port is
/// the one of [`database`]'s URLs). `None` when [`ENV`] names the cluster.
///
/// # Panics
///
/// When the private cluster cannot be started (see [`database`]).
pub async fn socket_dir() -> Option<PathBuf> {
    if std::env::var_os(ENV).is_some() {
        return None;
    }
    Some(private_cluster().await.root.clone())
}

/// The superuser URL of the cluster, starting the private one if needed.
async fn admin_url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => private_cluster().await.url.clone(),
    }
}

/// `url` with its path (the database name) replaced by `database`; the query, if any,
/// is kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path = base[authority..]
        .find('/')
        .map(|i| authority + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A running private cluster.
struct Cluster {
    /// Superuser URL of database `postgres`.
    url: String,
    /// The temporary directory: data directory, socket, log.
    root: PathBuf,
    /// The server (`postgres` itself).
    daemon: Daemon,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The private cluster, started on first use (on a blocking thread).
async fn private_cluster() -> &'static Cluster {
    let started = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start).is_ok())
        .await
        .unwrap_or_else(|e| panic!("starting the test PostgreSQL cluster: {e}"));
    match CLUSTER.get() {
        Some(Ok(cluster)) if started => cluster,
        Some(Err(why)) => panic!("the test PostgreSQL cluster could not be started: {why}"),
        _ => panic!("the test PostgreSQL cluster could not be started"),
    }
}

/// The directory holding `initdb` and `postgres` of the newest installed version.
fn binaries() -> Result<PathBuf, String> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output();
    if let Ok(out) = out {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && bin.join("postgres").is_file() {
            return Ok(bin);
        }
    }
    Err(format!(
        "no PostgreSQL server found under /usr/lib/postgresql or by pg_config; \
         install one (Debian: apt-get install postgresql) or set {ENV}"
    ))
}

/// The uid and gid of OS user `name`, from `/etc/passwd`.
fn os_user(name: &str) -> Result<(u32, u32), String> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(|| {
            format!("there is no OS user {name:?} to run PostgreSQL as (it refuses to run as root)")
        })
}

/// Runs `initdb` into `data`, with ICU's `en-US` collation if this build has ICU.
fn initdb(bin: &Path, root: &Path, data: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    let run = |extra: &[&str]| -> Result<(), String> {
        let mut cmd = Command::new(bin.join("initdb"));
        cmd.arg("-D")
            .arg(data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .args(extra)
            .current_dir(root)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("running {}: {e}", bin.join("initdb").display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let icu = run(&[
        "--locale-provider=icu",
        "--icu-locale=en-US",
        "--locale=C.UTF-8",
    ]);
    if icu.is_ok() {
        return icu;
    }
    // A build without ICU: the default locale will do.
    std::fs::remove_dir_all(data).ok();
    run(&[])
}

/// Starts the private cluster and waits until it accepts connections.
fn start() -> Result<Cluster, String> {
    let bin = binaries()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = if unsafe { libc::geteuid() } == 0 {
        Some(os_user("postgres")?)
    } else {
        None
    };
    let root = tempfile::Builder::new()
        .prefix("wharf-test-postgres-")
        .tempdir()
        .map_err(|e| format!("creating a directory for the cluster: {e}"))?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&root, Some(uid), Some(gid))
            .map_err(|e| format!("handing {} to the postgres user: {e}", root.display()))?;
    }
    let data = root.join("data");
    initdb(&bin, &root, &data, user)?;

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let log_path = root.join("postgres.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(&root)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let daemon = Daemon::spawn("postgres", cmd, user, libc::SIGQUIT, root.clone())?;
    let cluster = Cluster {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        root,
        daemon,
    };
    wait_until_ready(&cluster, &data, &log_path)?;
    Ok(cluster)
}

/// Waits until the server's `postmaster.pid` says `ready`, or fails with its log.
fn wait_until_ready(cluster: &Cluster, data: &Path, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let status = std::fs::read_to_string(data.join("postmaster.pid")).ok();
        // Line 8 of postmaster.pid is the server's status.
        if status
            .as_deref()
            .and_then(|s| s.lines().nth(7))
            .is_some_and(|l| l.trim() == "ready")
        {
            return Ok(());
        }
        if cluster.daemon.exited() || Instant::now() > deadline {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(log) {
                let _ = f.read_to_string(&mut text);
            }
            cluster.daemon.kill();
            return Err(format!(
                "postgres {} (log {}): {text}",
                if cluster.daemon.exited() {
                    "exited during start-up"
                } else {
                    "did not become ready in time"
                },
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5433/postgres", "x"),
            "postgres://postgres@127.0.0.1:5433/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h:1", "x"),
            "postgresql://u:p@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u@/postgres?host=/run/pg&port=5", "x"),
            "postgres://u@/x?host=/run/pg&port=5"
        );
    }
}
