//! An S3-compatible server for tests.
//!
//! [`bucket`] creates a fresh, empty bucket on a shared server and describes it
//! ([`Bucket`]), so every test gets its own keys and objects.
//!
//! The server is the one named by [`ENV`] (`WHARF_TEST_S3`, an endpoint such as
//! `http://127.0.0.1:9000`, with its credentials in [`ENV_ACCESS_KEY`] and
//! [`ENV_SECRET_KEY`]) when it is set. Otherwise the first call starts a private
//! server for the test process:
//!
//! - the server is `s3s-fs` (found on `PATH`, else in `$CARGO_HOME/bin` or
//!   `~/.cargo/bin`; install it with
//!   `cargo install --locked --features binary s3s-fs@0.14.1`), which keeps each bucket
//!   as a directory and each object as a file under its root directory;
//! - it listens on `127.0.0.1` at a free port, with its root in a new temporary
//!   directory ([`Bucket::root`]) and its log beside it;
//! - it is the direct child of a thread that lives as long as it runs, and asks the
//!   kernel for `SIGKILL` when that parent dies (`PR_SET_PDEATHSIG`), so it cannot
//!   outlive the test process however that ends;
//! - at normal exit the server is killed and its directory removed (a process killed
//!   by a signal leaves only the directory behind).
//!
//! Buckets are signed for with AWS Signature Version 4 in region [`REGION`]. They are
//! not deleted: a private server goes away with the process, and a server given by
//! [`ENV`] is expected to be thrown away after the run.

use crate::daemon::Daemon;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming a server to use instead of a private one: its
/// endpoint URL (`http://127.0.0.1:PORT`).
pub const ENV: &str = "WHARF_TEST_S3";
/// The access key id of the server of [`ENV`].
pub const ENV_ACCESS_KEY: &str = "WHARF_TEST_S3_ACCESS_KEY";
/// The secret access key of the server of [`ENV`].
pub const ENV_SECRET_KEY: &str = "WHARF_TEST_S3_SECRET_KEY";
/// The region requests to the test server are signed for.
pub const REGION: &str = "us-east-1";

/// Credentials of the private server.
const PRIVATE_ACCESS_KEY: &str = "WHARFTESTACCESSKEY";
const PRIVATE_SECRET_KEY: &str = "wharf-test-secret-access-key";
/// How long a private server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// SHA-256 of the empty string: the payload hash of a request without a body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A fresh bucket on the test server, and how to reach it.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The server's endpoint URL (`http://127.0.0.1:PORT`), for path-style requests.
    pub endpoint: String,
    /// The bucket's name.
    pub bucket: String,
    /// The region to sign for ([`REGION`]).
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// The private server's root directory, where the bucket is the directory
    /// `<root>/<bucket>` and each object the file at its key below it; `None` when
    /// [`ENV`] names the server.
    pub root: Option<PathBuf>,
}

impl Bucket {
    /// The URL form of a blob-store configuration for this bucket:
    /// `s3://<bucket>?endpoint=<endpoint>&region=<region>`. Credentials are not part
    /// of it; [`Bucket::env`] gives them as the AWS environment variables.
    pub fn url(&self) -> String {
        self.url_with("", "")
    }

    /// [`Bucket::url`] with a key prefix and more options: `prefix` (no leading or
    /// trailing `/`; empty for none) goes into the path, `options` (`name=value` pairs
    /// joined by `&`; empty for none) after the endpoint and region.
    pub fn url_with(&self, prefix: &str, options: &str) -> String {
        let mut url = format!("s3://{}", self.bucket);
        if !prefix.is_empty() {
            url.push('/');
            url.push_str(prefix);
        }
        url.push_str(&format!(
            "?endpoint={}&region={}",
            self.endpoint, self.region
        ));
        if !options.is_empty() {
            url.push('&');
            url.push_str(options);
        }
        url
    }

    /// The standard AWS environment variables for this bucket's credentials and
    /// region, as a lookup function (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`; `None` for any other name), for configuration parsers that take
    /// the environment as a function rather than from the process.
    pub fn env(&self) -> impl Fn(&str) -> Option<String> + 'static {
        let (key, secret, region) = (
            self.access_key.clone(),
            self.secret_key.clone(),
            self.region.clone(),
        );
        move |name| match name {
            "AWS_ACCESS_KEY_ID" => Some(key.clone()),
            "AWS_SECRET_ACCESS_KEY" => Some(secret.clone()),
            "AWS_REGION" => Some(region.clone()),
            _ => None,
        }
    }

    /// The directory holding this bucket's objects on a private server.
    pub fn dir(&self) -> Option<PathBuf> {
        self.root.as_ref().map(|root| root.join(&self.bucket))
    }
}

/// A new, empty bucket on the test server.
///
/// # Panics
///
/// When no server can be had (`s3s-fs` is not installed or does not start, or the
/// server of [`ENV`] lacks credentials or refuses to create the bucket): tests that
/// need S3 cannot run without it.
pub async fn bucket() -> Bucket {
    let server = server().await;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Short, because s3s-fs names a file at its root after the bucket and key
    // together (base64, in one file name of at most 255 bytes): with a name of about
    // ten characters, keys up to about 155 characters work (a SHA-512 blob's key under
    // a short prefix). Unique per process by the counter, and across processes
    // sharing a server by the process id and the time.
    let tag = std::process::id().rotate_left(16) ^ nanos;
    let name = format!("w{tag:08x}{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let bucket = Bucket {
        endpoint: server.endpoint.clone(),
        bucket: name,
        region: REGION.to_string(),
        access_key: server.access_key.clone(),
        secret_key: server.secret_key.clone(),
        root: server.root.clone(),
    };
    create_bucket(&bucket)
        .await
        .unwrap_or_else(|e| panic!("creating test bucket {}: {e}", bucket.bucket));
    bucket
}

/// Sends a SigV4-signed `PUT /<bucket>` (CreateBucket, path style).
async fn create_bucket(bucket: &Bucket) -> Result<(), String> {
    let url = format!(
        "{}/{}",
        bucket.endpoint.trim_end_matches('/'),
        bucket.bucket
    );
    let host = bucket
        .endpoint
        .split_once("://")
        .map_or(bucket.endpoint.as_str(), |(_, rest)| rest)
        .trim_end_matches('/')
        .to_string();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::HOST,
        host.parse()
            .map_err(|e| format!("endpoint host {host:?}: {e}"))?,
    );
    headers.insert(
        "x-amz-content-sha256",
        http::HeaderValue::from_static(EMPTY_SHA256),
    );
    let signer = wharf_auth::sigv4::Signer {
        access_key_id: &bucket.access_key,
        secret: &bucket.secret_key,
        region: &bucket.region,
        service: "s3",
    };
    signer.sign(
        "PUT",
        &format!("/{}", bucket.bucket),
        None,
        &mut headers,
        b"",
        time::OffsetDateTime::now_utc(),
    );
    let response = reqwest::Client::new()
        .put(&url)
        .headers(headers)
        .send()
        .await
        .map_err(|e| format!("PUT {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!("PUT {url}: {status}: {body}"))
}

/// The server buckets are made on.
struct Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
    root: Option<PathBuf>,
}

/// The server of [`ENV`], or the private one (started on first use).
async fn server() -> &'static Server {
    static GIVEN: OnceLock<Server> = OnceLock::new();
    match std::env::var(ENV) {
        Ok(endpoint) if !endpoint.is_empty() => GIVEN.get_or_init(|| {
            let var = |name: &str| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| panic!("{ENV} is set, but {name} (its credentials) is not"))
            };
            Server {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                access_key: var(ENV_ACCESS_KEY),
                secret_key: var(ENV_SECRET_KEY),
                root: None,
            }
        }),
        _ => &private_server().await.server,
    }
}

/// A running private server.
struct Private {
    server: Server,
    /// The server process (its temporary directory, with `data/` and `s3s-fs.log`, is
    /// removed at exit).
    daemon: Daemon,
}

static PRIVATE: OnceLock<Result<Private, String>> = OnceLock::new();

/// The private server, started on first use (on a blocking thread).
async fn private_server() -> &'static Private {
    let started = tokio::task::spawn_blocking(|| PRIVATE.get_or_init(start).is_ok())
        .await
        .unwrap_or_else(|e| panic!("starting the test S3 server: {e}"));
    match PRIVATE.get() {
        Some(Ok(private)) if started => private,
        Some(Err(why)) => panic!("the test S3 server could not be started: {why}"),
        _ => panic!("the test S3 server could not be started"),
    }
}

/// The `s3s-fs` binary.
fn binary() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from);
    let home_cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo"));
    on_path
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin")))
        .chain(home_cargo.map(|c| c.join("bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "s3s-fs was not found on PATH, in $CARGO_HOME/bin or in ~/.cargo/bin; install it \
                 (cargo install --locked --features binary s3s-fs@0.14.1) or set {ENV}"
            )
        })
}

/// Starts the private server and waits until it accepts connections.
fn start() -> Result<Private, String> {
    let bin = binary()?;
    let dir = tempfile::Builder::new()
        .prefix("wharf-test-s3-")
        .tempdir()
        .map_err(|e| format!("creating a directory for the server: {e}"))?
        .keep();
    let root = dir.join("data");
    std::fs::create_dir(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let log_path = dir.join("s3s-fs.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", PRIVATE_ACCESS_KEY])
        .args(["--secret-key", PRIVATE_SECRET_KEY])
        .arg(&root)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let daemon = Daemon::spawn("s3s-fs", cmd, None, libc::SIGKILL, dir)?;
    let private = Private {
        server: Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key: PRIVATE_ACCESS_KEY.to_string(),
            secret_key: PRIVATE_SECRET_KEY.to_string(),
            root: Some(root),
        },
        daemon,
    };
    wait_until_ready(
        &private,
        SocketAddr::from(([127, 0, 0, 1], port)),
        &log_path,
    )?;
    Ok(private)
}

/// Waits until the server accepts connections, or fails with its log.
fn wait_until_ready(private: &Private, addr: SocketAddr, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if private.daemon.exited() || Instant::now() > deadline {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(log) {
                let _ = f.read_to_string(&mut text);
            }
            private.daemon.kill();
            return Err(format!(
                "s3s-fs {} (log {}): {text}",
                if private.daemon.exited() {
                    "exited during start-up"
                } else {
                    "did not accept connections in time"
                },
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
