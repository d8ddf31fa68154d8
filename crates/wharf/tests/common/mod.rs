//! Test harness: runs the real `wharf` binary on a free loopback port.
//!
//! Servers store into SQLite and the filesystem in a temporary data directory, or,
//! when `WHARF_TEST_ENGINES=postgres-s3`, into a fresh PostgreSQL database and a fresh
//! S3 bucket (from `wharf-testenv`): the same tests then run on the scale-out engines.
#![allow(dead_code)]

use base64::Engine as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Access key id of the administrator every test server is started with.
pub const ADMIN_KEY: &str = "AKIAWHARFTESTADMIN01";
/// Its secret.
pub const ADMIN_SECRET: &str = "wharf-test-admin-secret-0123456789abcdef";
/// The account of test servers.
pub const ACCOUNT: &str = "000000000000";

/// `Basic <base64(ADMIN_KEY:ADMIN_SECRET)>`: the administrator's `/v2/` credentials.
pub fn admin_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_KEY}:{ADMIN_SECRET}"))
    )
}

/// A containers-auth.json / docker config.json logging in to `host` as the
/// administrator.
pub fn auth_json(host: &str) -> String {
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_KEY}:{ADMIN_SECRET}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

/// The engines a test server stores into (beside its data directory).
#[derive(Clone, Debug, Default)]
pub struct Engines {
    /// `--metadata`: a PostgreSQL URL; `None` for SQLite in the data directory.
    pub metadata: Option<String>,
    /// `--blobs`: an `s3://` URL; `None` for the data directory.
    pub blobs: Option<String>,
    /// Environment the server needs (the S3 credentials).
    pub env: Vec<(String, String)>,
}

impl Engines {
    /// SQLite and the filesystem in the data directory.
    pub fn local() -> Engines {
        Engines::default()
    }

    /// A fresh PostgreSQL database and a fresh S3 bucket.
    pub fn shared() -> Engines {
        // On a thread of its own: callers may be inside an async test's runtime.
        let (db, bucket) = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                (
                    wharf_testenv::postgres::database().await,
                    wharf_testenv::s3::bucket().await,
                )
            })
        })
        .join()
        .expect("test engines");
        Engines {
            metadata: Some(db),
            blobs: Some(bucket.url()),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), bucket.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), bucket.secret_key.clone()),
                ("AWS_REGION".into(), bucket.region.clone()),
            ],
        }
    }

    /// What `WHARF_TEST_ENGINES` names: `postgres-s3`, or local (unset or `local`).
    pub fn from_env() -> Engines {
        match std::env::var("WHARF_TEST_ENGINES").as_deref() {
            Ok("postgres-s3") => Engines::shared(),
            Ok("") | Ok("local") | Err(_) => Engines::local(),
            Ok(other) => panic!("WHARF_TEST_ENGINES={other:?}: expected local or postgres-s3"),
        }
    }

    /// Whether these are PostgreSQL and S3.
    pub fn is_shared(&self) -> bool {
        self.metadata.is_some()
    }

    /// The `serve` flags naming them.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(m) = &self.metadata {
            args.extend(["--metadata".to_string(), m.clone()]);
        }
        if let Some(b) = &self.blobs {
            args.extend(["--blobs".to_string(), b.clone()]);
        }
        args
    }
}

/// A running `wharf serve` process.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub host: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its engines.
    pub engines: Engines,
    extra_args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_on(Engines::from_env(), args)
    }

    /// Starts a server on `engines` with extra `serve` arguments.
    pub fn start_on(engines: Engines, args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let extra: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, host) = spawn(&data_dir, "127.0.0.1:0", &extra, &engines);
        let scheme = if extra.iter().any(|a| a == "--tls-cert") {
            "https"
        } else {
            "http"
        };
        Server {
            url: format!("{scheme}://{host}"),
            host,
            data_dir,
            engines,
            extra_args: extra,
            child: Some(child),
            _tmp: Some(tmp),
        }
    }

    /// Kills the process with SIGKILL (no graceful shutdown) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().ok()
    }

    /// Restarts on the same data directory and the same port.
    pub fn restart(&mut self) {
        self.kill9();
        let mut last = String::new();
        for _ in 0..50 {
            match try_spawn(&self.data_dir, &self.host, &self.extra_args, &self.engines) {
                Ok((child, host)) => {
                    assert_eq!(host, self.host);
                    self.child = Some(child);
                    return;
                }
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!("wharf did not restart on {}: {last}", self.host);
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// A `wharf` command (`repo`, `account`, ...) that works on this server's stores:
    /// its data directory and metadata database are in the command's environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(wharf_bin());
        c.env("WHARF_DATA_DIR", &self.data_dir);
        match &self.engines.metadata {
            Some(m) => c.env("WHARF_METADATA", m),
            None => c.env_remove("WHARF_METADATA"),
        };
        match &self.engines.blobs {
            Some(b) => c.env("WHARF_BLOBS", b),
            None => c.env_remove("WHARF_BLOBS"),
        };
        c.envs(self.engines.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Path of the `wharf` binary under test.
pub fn wharf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

fn spawn(data_dir: &Path, listen: &str, extra: &[String], engines: &Engines) -> (Child, String) {
    try_spawn(data_dir, listen, extra, engines)
        .unwrap_or_else(|e| panic!("wharf did not start: {e}"))
}

fn try_spawn(
    data_dir: &Path,
    listen: &str,
    extra: &[String],
    engines: &Engines,
) -> Result<(Child, String), String> {
    let mut child = Command::new(wharf_bin())
        .arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data_dir)
        .args(engines.args())
        .envs(engines.env.iter().map(|(k, v)| (k, v)))
        .args(extra)
        .args(if extra.iter().any(|a| a == "--admin-access-key-id") {
            Vec::new()
        } else {
            vec![
                "--admin-access-key-id",
                ADMIN_KEY,
                "--admin-secret-access-key",
                ADMIN_SECRET,
            ]
        })
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", wharf_bin()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!("exited with {status} before listening"));
        }
        let trimmed = line.trim();
        let rest = trimmed
            .strip_prefix("wharf listening on http://")
            .or_else(|| trimmed.strip_prefix("wharf listening on https://"));
        if let Some(rest) = rest {
            let host = rest.trim().to_string();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                    sink.clear();
                }
            });
            return Ok((child, host));
        }
    }
}

/// Runs the real AWS CLI against `srv` as `key`/`secret` in us-east-1: the parsed
/// JSON output, or the CLI's error text.
pub fn aws_cli(
    srv: &Server,
    key: &str,
    secret: &str,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    aws_session(srv, key, secret, None, args)
}

/// [`aws_cli`] with temporary credentials' session token.
pub fn aws_session(
    srv: &Server,
    key: &str,
    secret: &str,
    token: Option<&str>,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new("aws");
    match token {
        Some(t) => cmd.env("AWS_SESSION_TOKEN", t),
        None => cmd.env_remove("AWS_SESSION_TOKEN"),
    };
    let out = cmd
        .args(args)
        .args([
            "--endpoint-url",
            &srv.url,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("aws CLI runs (scripts/setup.sh installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.trim().to_string())))
}

/// [`aws_cli`] as the administrator, which must succeed.
pub fn aws_admin(srv: &Server, args: &[&str]) -> serde_json::Value {
    aws_cli(srv, ADMIN_KEY, ADMIN_SECRET, args).unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
}

/// [`aws_cli`] as the administrator, which must fail: the CLI's error text.
pub fn aws_admin_err(srv: &Server, args: &[&str]) -> String {
    match aws_cli(srv, ADMIN_KEY, ADMIN_SECRET, args) {
        Ok(v) => panic!("aws {args:?} should have failed, printed {v}"),
        Err(e) => e,
    }
}

/// Creates account `id` in `srv`'s data directory; returns its administrator's key
/// id and secret.
pub fn create_account(srv: &Server, id: &str) -> (String, String) {
    let out = srv
        .command()
        .args(["account", "create", "--account-id", id])
        .output()
        .expect("wharf runs");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} in {printed}"))
            .to_string()
    };
    (field("AWS_ACCESS_KEY_ID"), field("AWS_SECRET_ACCESS_KEY"))
}

/// `curl -i` with extra arguments: (status, headers+body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Pushes a one-blob image (its config names `repo`) to `repo:tag` through /v2/
/// with the header `auth`, optionally with another `Host`; returns the status and
/// output of the last request.
pub fn push(srv: &Server, auth: &str, host: Option<&str>, repo: &str, tag: &str) -> (u16, String) {
    let config = format!("{{\"repo\":\"{repo}\"}}");
    let digest = wharf_oci::Algorithm::Sha256
        .digest(config.as_bytes())
        .to_string();
    let mut args: Vec<String> = vec!["-H".into(), auth.into()];
    if let Some(h) = host {
        args.extend(["-H".into(), format!("Host: {h}")]);
    }
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        curl(&a)
    };
    let (status, text) = with(&[
        "-X",
        "POST",
        "--data-binary",
        &config,
        &srv.at(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")),
    ]);
    if status != 201 {
        return (status, text);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    with(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &manifest,
        &srv.at(&format!("/v2/{repo}/manifests/{tag}")),
    ])
}

/// Every object of the bucket of `engines` (key, bytes), fetched with the AWS CLI
/// straight from the S3 server.
pub fn list_bucket(engines: &Engines) -> Vec<(String, Vec<u8>)> {
    let url = engines.blobs.as_deref().expect("S3 engines");
    let rest = url.strip_prefix("s3://").expect("an s3:// URL");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let endpoint = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("endpoint="))
        .expect("an endpoint");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new("aws")
        .args([
            "s3",
            "sync",
            &format!("s3://{path}"),
            &tmp.path().to_string_lossy(),
        ])
        .args(["--endpoint-url", endpoint, "--only-show-errors"])
        .envs(engines.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("aws CLI runs");
    assert!(
        out.status.success(),
        "aws s3 sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut objects = Vec::new();
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p
                    .strip_prefix(tmp.path())
                    .unwrap_or(&p)
                    .display()
                    .to_string();
                objects.push((key, std::fs::read(&p).expect("read object")));
            }
        }
    }
    objects
}
