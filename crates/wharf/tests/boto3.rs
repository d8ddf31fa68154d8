//! boto3, as ECR users script it, against the real binary (`boto3_walkthrough.py`).

mod common;

use std::process::Command;

#[test]
fn boto3_walkthrough() {
    let srv = common::Server::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boto3_walkthrough.py");
    let out = Command::new("python3")
        .arg(script)
        .env("WHARF_URL", &srv.url)
        .env("AWS_ACCESS_KEY_ID", common::ADMIN_KEY)
        .env("AWS_SECRET_ACCESS_KEY", common::ADMIN_SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("python3 runs (scripts/setup.sh installs boto3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "boto3 walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
