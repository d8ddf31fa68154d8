//! Tag immutability on `/v2/`: set with `wharf repo`, enforced on manifest PUT with a
//! TAG_INVALID error that says which tag, which repository and why; skopeo shows it.

mod common;

use std::process::Command;
use wharf_oci::Algorithm;

fn wharf(srv: &common::Server, args: &[&str]) -> String {
    let out = srv.command().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "wharf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn manifest(config: &str, size: usize, label: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{size}}},"layers":[],"annotations":{{"label":"{label}"}}}}"#
    )
}

async fn put(client: &reqwest::Client, url: &str, body: &str) -> (u16, String) {
    let r = client
        .put(url)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn immutable_tags_are_refused_with_the_reason() {
    let srv = common::Server::start_with(&["--no-create-on-push"]);
    wharf(
        &srv,
        &[
            "repo",
            "create",
            "locked/app",
            "--tag-mutability",
            "IMMUTABLE_WITH_EXCLUSION",
            "--exclusion-filter",
            "latest",
            "--exclusion-filter",
            "dev-*",
        ],
    );
    let list = wharf(&srv, &["repo", "list"]);
    assert!(
        list.contains("locked/app\tIMMUTABLE_WITH_EXCLUSION except latest,dev-*"),
        "{list}"
    );

    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&common::admin_basic()).unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let config = b"{}";
    let digest = Algorithm::Sha256.digest(config).to_string();
    let r = client
        .post(srv.at(&format!("/v2/locked/app/blobs/uploads/?digest={digest}")))
        .body(config.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let a = manifest(&digest, 2, "a");
    let b = manifest(&digest, 2, "b");
    let b_digest = Algorithm::Sha256.digest(b.as_bytes()).to_string();
    let at = |tag: &str| srv.at(&format!("/v2/locked/app/manifests/{tag}"));

    assert_eq!(put(&client, &at("v1"), &a).await.0, 201);
    assert_eq!(
        put(&client, &at("v1"), &a).await.0,
        201,
        "same manifest again"
    );
    let (status, body) = put(&client, &at("v1"), &b).await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "TAG_INVALID", "{body}");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"v1\"")
            && msg.contains("locked/app")
            && msg.contains("IMMUTABLE_WITH_EXCLUSION"),
        "{msg}"
    );
    let r = client
        .get(srv.at(&format!("/v2/locked/app/manifests/{b_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a refused manifest must not be stored");

    assert_eq!(put(&client, &at("latest"), &a).await.0, 201);
    assert_eq!(
        put(&client, &at("latest"), &b).await.0,
        201,
        "excluded tag moves"
    );
    assert_eq!(put(&client, &at("dev-1"), &a).await.0, 201);
    assert_eq!(
        put(&client, &at("dev-1"), &b).await.0,
        201,
        "excluded tag moves"
    );

    // What a client prints.
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!(
            "--src-creds={}:{}",
            common::ADMIN_KEY,
            common::ADMIN_SECRET
        ))
        .arg(format!(
            "--dest-creds={}:{}",
            common::ADMIN_KEY,
            common::ADMIN_SECRET
        ))
        .arg(format!("docker://{}/locked/app:latest", srv.host))
        .arg(format!("docker://{}/locked/app:v1", srv.host))
        .output()
        .expect("skopeo runs (scripts/setup.sh installs it)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tag invalid") && err.contains("v1"), "{err}");

    // Made mutable, the tag moves.
    wharf(
        &srv,
        &[
            "repo",
            "set-tag-mutability",
            "locked/app",
            "--tag-mutability",
            "MUTABLE",
        ],
    );
    assert_eq!(put(&client, &at("v1"), &b).await.0, 201);
    let r = client.get(at("v1")).send().await.unwrap();
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        b_digest
    );
}

#[test]
fn invalid_settings_are_refused_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for args in [
        vec!["--tag-mutability", "IMMUTABLE", "--exclusion-filter", "x"],
        vec!["--tag-mutability", "MUTABLE_WITH_EXCLUSION"],
        vec!["--tag-mutability", "FROZEN"],
    ] {
        let out = Command::new(common::wharf_bin())
            .args(["repo", "create", "bad/app"])
            .args(&args)
            .args(["--data-dir", data])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("imageTagMutability") || err.contains("must be one of"),
            "{err}"
        );
    }
}
