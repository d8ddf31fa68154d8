//! `wharf serve` behaviour: TLS, graceful shutdown, upload expiry, configuration file.

mod common;

use std::process::Command;
use std::time::Duration;

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-u",
            &format!("{}:{}", common::ADMIN_KEY, common::ADMIN_SECRET),
        ])
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs (installed by scripts/setup.sh)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=127.0.0.1")
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let srv = common::Server::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(srv.url.starts_with("https://"));
    let (out, err) = curl(&["--cacert", cert.to_str().unwrap(), "-i", &srv.at("/v2/")]);
    assert!(out.contains("200"), "https GET /v2/ failed: {out} {err}");
    assert!(out
        .to_lowercase()
        .contains("docker-distribution-api-version: registry/2.0"));
    // Plain HTTP to the TLS port does not get a registry answer.
    let (plain, _) = curl(&["-i", &format!("http://{}/v2/", srv.host)]);
    assert!(
        !plain.contains("200 OK"),
        "plain HTTP was answered: {plain}"
    );
}

#[test]
fn sigterm_lets_an_inflight_upload_finish() {
    let mut srv = common::Server::start();
    let data = vec![7u8; 8 * 1024 * 1024];
    let digest = wharf_oci::Algorithm::Sha256.digest(&data).to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &data).unwrap();
    // A slow client: 8 MiB at 2 MiB/s takes about 4 s.
    let url = srv.at(&format!("/v2/shutdown/blobs/uploads/?digest={digest}"));
    let path = format!("@{}", file.path().display());
    let upload = std::thread::spawn(move || {
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--limit-rate",
            "2M",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &path,
            &url,
        ])
    });
    std::thread::sleep(Duration::from_millis(1500));
    let status = srv.terminate().expect("server was running");
    let (code, err) = upload.join().unwrap();
    assert_eq!(
        code, "201",
        "in-flight upload was cut off by shutdown: {err}"
    );
    assert!(status.success(), "wharf exited with {status}");
    srv.restart();
    let (head, _) = curl(&["-I", &srv.at(&format!("/v2/shutdown/blobs/{digest}"))]);
    assert!(head.contains("200"), "blob not there after restart: {head}");
}

#[test]
fn idle_upload_sessions_expire() {
    let srv = common::Server::start_with(&["--upload-timeout-secs", "1"]);
    let (hdrs, _) = curl(&["-i", "-X", "POST", &srv.at("/v2/expiry/blobs/uploads/")]);
    let location = hdrs
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("Location header")
        .trim()
        .to_string();
    let status_url = srv.at(&location);
    let (first, _) = curl(&["-o", "/dev/null", "-w", "%{http_code}", &status_url]);
    assert_eq!(first, "204");
    let mut last = String::new();
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        last = curl(&["-o", "/dev/null", "-w", "%{http_code}", &status_url]).0;
        if last == "404" {
            break;
        }
    }
    assert_eq!(last, "404", "idle upload session was not expired");
    // Its staging area is gone too.
    let uploads = srv.data_dir.join("uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging areas left behind: {left:?}");
}

#[test]
fn reads_a_toml_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wharf.toml");
    std::fs::write(&cfg, "create_on_push = false\nmax_manifest_bytes = 1000\n").unwrap();
    let srv = common::Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let (out, _) = curl(&["-X", "POST", &srv.at("/v2/nocreate/blobs/uploads/")]);
    assert!(
        out.contains("NAME_UNKNOWN"),
        "create-on-push not disabled by the file: {out}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listn = 1\n").unwrap();
    let out = Command::new(common::wharf_bin())
        .args(["serve", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listn"), "unknown key not named: {err}");
}

#[test]
fn blob_size_limit_is_a_clear_413() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wharf.toml");
    std::fs::write(&cfg, "max_blob_bytes = 1000\n").unwrap();
    let srv = common::Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let data = vec![1u8; 2000];
    let digest = wharf_oci::Algorithm::Sha256.digest(&data).to_string();
    let file = dir.path().join("blob");
    std::fs::write(&file, &data).unwrap();
    let (out, _) = curl(&[
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &srv.at(&format!("/v2/limits/blobs/uploads/?digest={digest}")),
    ]);
    assert!(
        out.ends_with("413"),
        "oversized blob not refused with 413: {out}"
    );
    assert!(
        out.contains("SIZE_INVALID") && out.contains("1000 bytes"),
        "{out}"
    );
    let (head, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-I",
        &srv.at(&format!("/v2/limits/blobs/{digest}")),
    ]);
    assert_eq!(head, "404", "an oversized blob became visible");
    let staged: Vec<_> = std::fs::read_dir(srv.data_dir.join("uploads"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        staged.is_empty(),
        "refused monolithic upload left {staged:?}"
    );
}
