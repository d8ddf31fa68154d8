//! Test harness: runs the real `wharf` binary on a free loopback port.
#![allow(dead_code)]

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
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_KEY}:{ADMIN_SECRET}"))
    )
}

/// A containers-auth.json / docker config.json logging in to `host` as the
/// administrator.
pub fn auth_json(host: &str) -> String {
    use base64::Engine;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_KEY}:{ADMIN_SECRET}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

/// A running `wharf serve` process.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub host: String,
    /// Its data directory.
    pub data_dir: PathBuf,
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
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let extra: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, host) = spawn(&data_dir, "127.0.0.1:0", &extra);
        let scheme = if extra.iter().any(|a| a == "--tls-cert") {
            "https"
        } else {
            "http"
        };
        Server {
            url: format!("{scheme}://{host}"),
            host,
            data_dir,
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
            match try_spawn(&self.data_dir, &self.host, &self.extra_args) {
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

fn spawn(data_dir: &Path, listen: &str, extra: &[String]) -> (Child, String) {
    try_spawn(data_dir, listen, extra).unwrap_or_else(|e| panic!("wharf did not start: {e}"))
}

fn try_spawn(data_dir: &Path, listen: &str, extra: &[String]) -> Result<(Child, String), String> {
    let mut child = Command::new(wharf_bin())
        .arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data_dir)
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
