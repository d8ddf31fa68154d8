//! OCI distribution-spec conformance, content management (delete tag, delete manifest,
//! delete blob) and Wharf's repository contract: create-on-push by default,
//! `--no-create-on-push` with `wharf repo create/list/delete`, and durability of pushed
//! content across restarts.
//!
//! Each test starts its own `wharf serve` on a fresh data directory.

mod common;
mod oci;

use oci::{mt, random_bytes, sha256, Image, Reg};
use reqwest::Method;
use std::process::Output;

fn start() -> (common::Server, Reg) {
    let srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    (srv, reg)
}

/// Runs `wharf repo <args> --data-dir <dir>`.
fn wharf_repo(srv: &common::Server, args: &[&str]) -> Output {
    srv.command()
        .arg("repo")
        .args(args)
        .output()
        .expect("run wharf repo")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "wharf repo failed:\n{}",
        describe(out)
    );
}

#[track_caller]
fn assert_fails(out: &Output) {
    assert!(
        !out.status.success(),
        "wharf repo should fail:\n{}",
        describe(out)
    );
    assert!(
        !out.stderr.is_empty() || !out.stdout.is_empty(),
        "a failing command must say why:\n{}",
        describe(out)
    );
}

fn listed(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------
// Deletes

#[tokio::test]
async fn delete_tag_keeps_the_manifest_and_other_tags() {
    let (_srv, reg) = start();
    let repo = "mgmt/tags";
    let img = Image::random(1, 128);
    reg.push_image(repo, "tagtest0", &img).await;
    reg.push_manifest(repo, "keep", mt::OCI_MANIFEST, &img.manifest)
        .await;
    let before = reg.tags(repo).await.len();

    reg.delete(&format!("/v2/{repo}/manifests/tagtest0"))
        .await
        .expect(202);
    // The delete is immediate.
    reg.head_manifest(repo, "tagtest0", None).await.expect(404);
    reg.get_manifest(repo, "tagtest0", None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    let tags = reg.tags(repo).await;
    assert!(tags.len() < before);
    assert_eq!(tags, ["keep"]);
    // The manifest and the other tag remain.
    reg.get_manifest(repo, &img.digest, Some(mt::OCI_MANIFEST))
        .await
        .expect(200);
    reg.get_manifest(repo, "keep", Some(mt::OCI_MANIFEST))
        .await
        .expect(200);
    // Deleting it again, or a tag that never existed.
    reg.delete(&format!("/v2/{repo}/manifests/tagtest0"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete(&format!("/v2/{repo}/manifests/never-was"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_manifest_by_digest_removes_its_tags() {
    let (_srv, reg) = start();
    let repo = "mgmt/manifests";
    let img = Image::random(2, 256);
    reg.push_image(repo, "a", &img).await;
    reg.push_manifest(repo, "b", mt::OCI_MANIFEST, &img.manifest)
        .await;
    let other = Image::random(1, 32);
    reg.push_image(repo, "other", &other).await;

    reg.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
        .await
        .expect(202);
    reg.get_manifest(repo, &img.digest, None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest(repo, &img.digest, None).await.expect(404);
    for t in ["a", "b"] {
        reg.get_manifest(repo, t, None)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    assert_eq!(reg.tags(repo).await, ["other"]);
    reg.delete(&format!("/v2/{repo}/manifests/{}", img.digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete(&format!("/v2/{repo}/manifests/{}", sha256(b"never pushed")))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // Its blobs are still readable through their own links, and the manifest can be
    // pushed again.
    for b in img.blobs() {
        reg.assert_blob(repo, b).await;
    }
    reg.push_manifest(repo, "again", mt::OCI_MANIFEST, &img.manifest)
        .await;
    // The other manifest was untouched.
    reg.get_manifest(repo, "other", Some(mt::OCI_MANIFEST))
        .await
        .expect(200);
}

#[tokio::test]
async fn deletes_in_unknown_repository_are_404() {
    let (_srv, reg) = start();
    let r = reg.delete("/v2/mgmt/none/manifests/latest").await;
    r.expect_error_in(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    let r = reg
        .delete(&format!("/v2/mgmt/none/manifests/{}", sha256(b"x")))
        .await;
    r.expect_error_in(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    let r = reg
        .delete(&format!("/v2/mgmt/none/blobs/{}", sha256(b"x")))
        .await;
    r.expect_error_in(404, &["NAME_UNKNOWN", "BLOB_UNKNOWN"]);
}

#[tokio::test]
async fn delete_blob_then_manifest_push_needs_it_again() {
    let (_srv, reg) = start();
    let repo = "mgmt/blobs";
    let img = Image::random(1, 300);
    for b in img.blobs() {
        reg.push_blob(repo, b).await;
    }
    let layer = sha256(&img.layers[0]);
    reg.delete(&format!("/v2/{repo}/blobs/{layer}"))
        .await
        .expect(202);
    reg.get(&format!("/v2/{repo}/blobs/{layer}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let r = reg
        .put_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert!(r.error_message().contains(&layer), "{}", r.describe());
    reg.push_blob(repo, &img.layers[0]).await;
    reg.push_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
        .await;
}

// ---------------------------------------------------------------------------------
// Repositories

#[tokio::test]
async fn create_on_push_is_the_default() {
    let (srv, reg) = start();
    let img = Image::random(1, 50);
    reg.push_image("fresh/app", "1.0", &img).await;
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert_eq!(r.json()["repositories"], serde_json::json!(["fresh/app"]));
    let out = wharf_repo(&srv, &["list"]);
    assert_ok(&out);
    assert_eq!(listed(&out), ["fresh/app"], "{}", describe(&out));
}

#[tokio::test]
async fn no_create_on_push_refuses_unknown_repositories_until_created() {
    let srv = common::Server::start_with(&["--no-create-on-push"]);
    let reg = Reg::new(&srv.url);
    let repo = "team/app";
    let img = Image::random(1, 200);

    // Every way of pushing to a missing repository is refused with NAME_UNKNOWN.
    reg.send(
        reg.at(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .body(Vec::<u8>::new()),
    )
    .await
    .expect_error(404, "NAME_UNKNOWN");
    let url = Reg::with_query(
        &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
        "digest",
        &sha256(&img.config),
    );
    reg.send(reg.req(Method::POST, url).body(img.config.clone()))
        .await
        .expect_error(404, "NAME_UNKNOWN");
    reg.put_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(404, "NAME_UNKNOWN");
    reg.get(&format!("/v2/{repo}/tags/list"))
        .await
        .expect_error(404, "NAME_UNKNOWN");
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert!(r.json()["repositories"]
        .as_array()
        .is_none_or(|a| a.is_empty()));

    // Create it with the CLI while the server runs.
    let out = wharf_repo(&srv, &["create", repo]);
    assert_ok(&out);
    assert_fails(&wharf_repo(&srv, &["create", repo]));
    assert_fails(&wharf_repo(&srv, &["create", "Bad/Name"]));
    let out = wharf_repo(&srv, &["list"]);
    assert_ok(&out);
    assert_eq!(listed(&out), [repo], "{}", describe(&out));

    // Now the push works, and the repository shows up in the catalog and tags list.
    reg.push_image(repo, "latest", &img).await;
    assert_eq!(reg.tags(repo).await, ["latest"]);
    let r = reg.get("/v2/_catalog").await;
    assert_eq!(r.json()["repositories"], serde_json::json!([repo]));

    // Mounting into a missing repository is refused too, even from an existing one.
    let url = reg.url(&format!(
        "/v2/team/other/blobs/uploads/?mount={}&from={repo}",
        sha256(&img.config)
    ));
    reg.send(reg.req(Method::POST, url).body(Vec::<u8>::new()))
        .await
        .expect_error(404, "NAME_UNKNOWN");

    // An empty repository is deleted without --force; a non-empty one needs it.
    assert_ok(&wharf_repo(&srv, &["create", "team/empty"]));
    assert_ok(&wharf_repo(&srv, &["delete", "team/empty"]));
    assert_fails(&wharf_repo(&srv, &["delete", repo]));
    reg.get_manifest(repo, "latest", Some(mt::OCI_MANIFEST))
        .await
        .expect(200);
    assert_ok(&wharf_repo(&srv, &["delete", repo, "--force"]));
    let out = wharf_repo(&srv, &["list"]);
    assert_ok(&out);
    assert!(listed(&out).is_empty(), "{}", describe(&out));
    assert_fails(&wharf_repo(&srv, &["delete", repo, "--force"]));

    // Gone for the server too: pulls and pushes fail again.
    reg.get_manifest(repo, "latest", None)
        .await
        .expect_error_in(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    reg.get(&format!("/v2/{repo}/tags/list"))
        .await
        .expect_error(404, "NAME_UNKNOWN");
    reg.send(
        reg.at(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .body(Vec::<u8>::new()),
    )
    .await
    .expect_error(404, "NAME_UNKNOWN");
    reg.put_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn force_deleting_a_repository_forgets_its_content() {
    let (srv, reg) = start();
    let repo = "gone/app";
    let img = Image::random(1, 64);
    reg.push_image(repo, "v1", &img).await;
    assert_ok(&wharf_repo(&srv, &["delete", repo, "--force"]));
    // With create-on-push the name is free again, but nothing old is visible.
    reg.get_manifest(repo, "v1", None).await.expect(404);
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256(&img.config)))
        .await
        .expect(404);
    reg.push_image(repo, "v2", &img).await;
    assert_eq!(reg.tags(repo).await, ["v2"]);
}

// ---------------------------------------------------------------------------------
// Durability

#[tokio::test]
async fn pushed_content_survives_restart_and_sigkill() {
    let mut srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    let repo = "durable/app";
    let img = Image::random(3, 100 * 1024);
    reg.push_image(repo, "v1", &img).await;
    let extra = random_bytes(5000);
    reg.push_blob(repo, &extra).await;
    srv.restart(); // SIGKILL, then start again on the same data directory
    let reg = Reg::new(&srv.url);
    let g = reg.get_manifest(repo, "v1", Some(mt::OCI_MANIFEST)).await;
    g.expect(200);
    assert!(g.body == img.manifest);
    g.assert_header("docker-content-digest", &img.digest);
    for b in img.blobs() {
        reg.assert_blob(repo, b).await;
    }
    reg.assert_blob(repo, &extra).await;
    assert_eq!(reg.tags(repo).await, ["v1"]);
}
