//! The ECR API driven by the real AWS CLI (installed by scripts/setup.sh), signed with
//! SigV4 against the administrator key given on the command line. State written
//! through the API is the state `/v2/` sees.

mod common;

use serde_json::Value;
use std::process::{Command, Output};

const AK: &str = "AKIAWHARFTESTADMIN01";
const SK: &str = "wharfTestSecret/0123456789abcdefghijklmnop";

fn start() -> common::Server {
    common::Server::start_with(&[
        "--admin-access-key-id",
        AK,
        "--admin-secret-access-key",
        SK,
        "--account-id",
        "123456789012",
        "--region",
        "eu-west-1",
    ])
}

fn aws_as(srv: &common::Server, key_id: &str, secret: &str, region: &str, args: &[&str]) -> Output {
    Command::new("aws")
        .args(args)
        .args([
            "--endpoint-url",
            &srv.url,
            "--region",
            region,
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("aws CLI runs (scripts/setup.sh installs it)")
}

fn aws_with(srv: &common::Server, secret: &str, args: &[&str]) -> Output {
    aws_as(srv, AK, secret, "eu-west-1", args)
}

fn aws(srv: &common::Server, args: &[&str]) -> Value {
    let out = aws_with(srv, SK, args);
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn aws_err(srv: &common::Server, secret: &str, args: &[&str]) -> String {
    let out = aws_with(srv, secret, args);
    assert!(!out.status.success(), "aws {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn repositories_through_the_aws_cli() {
    let srv = start();
    let created = aws(
        &srv,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "team/app",
            "--image-scanning-configuration",
            "scanOnPush=true",
            "--encryption-configuration",
            "encryptionType=AES256",
        ],
    );
    let repo = &created["repository"];
    assert_eq!(repo["repositoryName"], "team/app");
    assert_eq!(repo["registryId"], "123456789012");
    assert_eq!(
        repo["repositoryArn"],
        "arn:aws:ecr:eu-west-1:123456789012:repository/team/app"
    );
    assert_eq!(repo["repositoryUri"], format!("{}/team/app", srv.host));
    assert_eq!(repo["imageTagMutability"], "MUTABLE");
    assert_eq!(repo["imageScanningConfiguration"]["scanOnPush"], true);
    assert_eq!(repo["encryptionConfiguration"]["encryptionType"], "AES256");
    assert!(repo["createdAt"].as_f64().unwrap() > 1.7e9);

    let err = aws_err(
        &srv,
        SK,
        &["ecr", "create-repository", "--repository-name", "team/app"],
    );
    assert!(err.contains("RepositoryAlreadyExistsException"), "{err}");

    for name in ["other/one", "other/two", "other/three"] {
        aws(
            &srv,
            &["ecr", "create-repository", "--repository-name", name],
        );
    }
    // The CLI follows nextToken across pages of 2.
    let all = aws(&srv, &["ecr", "describe-repositories", "--page-size", "2"]);
    let names: Vec<&str> = all["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repositoryName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other/one", "other/three", "other/two", "team/app"]);

    let err = aws_err(
        &srv,
        SK,
        &[
            "ecr",
            "describe-repositories",
            "--repository-names",
            "missing/repo",
        ],
    );
    assert!(
        err.contains("RepositoryNotFoundException")
            && err.contains("missing/repo")
            && err.contains("123456789012"),
        "{err}"
    );
    // A near miss is named.
    let err = aws_err(
        &srv,
        SK,
        &[
            "ecr",
            "describe-repositories",
            "--repository-names",
            "team/apq",
        ],
    );
    assert!(err.contains("did you mean 'team/app'?"), "{err}");

    // The repository is the one /v2/ sees.
    let r = Command::new("curl")
        .args(["-s", "-u", &format!("{AK}:{SK}"), &srv.at("/v2/_catalog")])
        .output()
        .unwrap();
    let catalog: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(catalog["repositories"].as_array().unwrap().len(), 4);

    let scan = aws(
        &srv,
        &[
            "ecr",
            "put-image-scanning-configuration",
            "--repository-name",
            "other/one",
            "--image-scanning-configuration",
            "scanOnPush=true",
        ],
    );
    assert_eq!(scan["imageScanningConfiguration"]["scanOnPush"], true);

    let deleted = aws(
        &srv,
        &["ecr", "delete-repository", "--repository-name", "other/two"],
    );
    assert_eq!(deleted["repository"]["repositoryName"], "other/two");
    let err = aws_err(
        &srv,
        SK,
        &["ecr", "delete-repository", "--repository-name", "other/two"],
    );
    assert!(err.contains("RepositoryNotFoundException"), "{err}");
}

#[test]
fn tag_mutability_set_by_the_api_holds_on_v2() {
    let srv = start();
    aws(
        &srv,
        &["ecr", "create-repository", "--repository-name", "locked"],
    );
    let out = aws(
        &srv,
        &[
            "ecr",
            "put-image-tag-mutability",
            "--repository-name",
            "locked",
            "--image-tag-mutability",
            "IMMUTABLE_WITH_EXCLUSION",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=latest",
        ],
    );
    assert_eq!(out["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION");
    assert_eq!(
        out["imageTagMutabilityExclusionFilters"][0]["filter"],
        "latest"
    );
    let err = aws_err(
        &srv,
        SK,
        &[
            "ecr",
            "put-image-tag-mutability",
            "--repository-name",
            "locked",
            "--image-tag-mutability",
            "FROZEN",
        ],
    );
    assert!(err.contains("FROZEN") || err.contains("Invalid"), "{err}");

    // Push two manifests under one tag through /v2/.
    let config = b"{}";
    let digest = wharf_oci::Algorithm::Sha256.digest(config).to_string();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-u", &format!("{AK}:{SK}")])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        "{}",
        &srv.at(&format!("/v2/locked/blobs/uploads/?digest={digest}")),
    ]);
    let manifest = |label: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}","size":2}},"layers":[],"annotations":{{"l":"{label}"}}}}"#
        )
    };
    let put = |tag: &str, body: &str| {
        curl(&[
            "-w",
            "\n%{http_code}",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            body,
            &srv.at(&format!("/v2/locked/manifests/{tag}")),
        ])
    };
    assert!(put("v1", &manifest("a")).ends_with("201"));
    let refused = put("v1", &manifest("b"));
    assert!(
        refused.ends_with("400") && refused.contains("TAG_INVALID"),
        "{refused}"
    );
    assert!(put("latest", &manifest("a")).ends_with("201"));
    assert!(put("latest", &manifest("b")).ends_with("201"));

    // Not empty: deletion needs --force.
    let err = aws_err(
        &srv,
        SK,
        &["ecr", "delete-repository", "--repository-name", "locked"],
    );
    assert!(err.contains("RepositoryNotEmptyException"), "{err}");
    aws(
        &srv,
        &[
            "ecr",
            "delete-repository",
            "--repository-name",
            "locked",
            "--force",
        ],
    );
}

#[test]
fn signatures_are_checked_and_refusals_say_why() {
    let srv = start();
    let err = aws_err(&srv, "not-the-secret", &["ecr", "describe-repositories"]);
    assert!(
        err.contains("InvalidSignatureException") && err.contains(AK),
        "{err}"
    );
    assert!(!err.contains(SK));
    let describe = ["ecr", "describe-repositories"];
    let out = aws_as(&srv, "AKIAUNKNOWNKEY000000", SK, "eu-west-1", &describe);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UnrecognizedClientException") && err.contains("AKIAUNKNOWNKEY000000"),
        "{err}"
    );
    // Signed for another region.
    let out = aws_as(&srv, AK, SK, "us-west-2", &describe);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidSignatureException") && err.contains("eu-west-1"),
        "{err}"
    );
    // Unsigned.
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            "-H",
            "Content-Type: application/x-amz-json-1.1",
            "-d",
            "{}",
            &srv.url,
        ])
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
}

#[test]
fn first_start_creates_and_prints_an_administrator_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let run = || {
        let mut child = Command::new(common::wharf_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = String::new();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        use std::io::{BufRead, Read};
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            out.push_str(&line);
            if line.contains("ECR API:") {
                break;
            }
        }
        // The banner is written and flushed at once: the rest is already in the pipe.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = child.kill();
        let _ = reader.read_to_string(&mut out);
        let _ = child.kill();
        let _ = child.wait();
        out
    };
    let first = run();
    assert!(first.contains("export AWS_ACCESS_KEY_ID=AKIA"), "{first}");
    assert!(first.contains("export AWS_SECRET_ACCESS_KEY="), "{first}");
    let second = run();
    assert!(
        !second.contains("AWS_SECRET_ACCESS_KEY"),
        "the secret must be shown only once: {second}"
    );
}
