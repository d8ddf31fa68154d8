//! Encryption at rest through the real server: `wharf keys` makes and rotates the key
//! file, a server started with it stores no plaintext on disk (blobs, staging areas),
//! serves every byte back (whole and ranged), and keeps serving blobs written before a
//! rotation.

mod common;
mod oci;

use oci::{mt, Image, Reg};
use reqwest::Method;
use std::path::Path;
use std::process::Command;

fn keys(args: &[&str], file: &Path) -> String {
    let out = Command::new(common::wharf_bin())
        .arg("keys")
        .args(args)
        .arg("--key-file")
        .arg(file)
        .env_remove("WHARF_ENCRYPTION_KEY_FILE")
        .output()
        .expect("wharf runs");
    assert!(
        out.status.success(),
        "wharf keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Panics if any file under `dir` contains a 32-byte window of `plain`.
fn assert_no_plaintext(dir: &Path, plain: &[u8], when: &str) {
    let windows: std::collections::HashSet<&[u8]> = plain.chunks_exact(32).collect();
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        if bytes.len() < 32 {
            continue;
        }
        for w in bytes.windows(32) {
            assert!(
                !windows.contains(w),
                "{when}: plaintext found in {}",
                f.display()
            );
        }
    }
}

/// A recognizable, non-repeating plaintext (so any 32-byte window identifies it).
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("wharf-plaintext-{i:010}|").into_bytes())
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_encrypted_at_rest_and_survive_key_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("master.keys");
    let listed = keys(&["generate"], &key_file);
    assert!(listed.contains("default"), "{listed}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let key_arg = key_file.to_str().unwrap().to_string();
    let mut srv = common::Server::start_on(
        common::Engines::local(),
        &["--encryption-key-file", &key_arg],
    );
    let reg = Reg::new(&srv.url);

    // A chunked upload left half done: its staging area holds no plaintext either.
    let layer = pattern(300_000);
    let (_, loc) = reg.start_upload("secret/app").await;
    let r = reg
        .send(
            reg.req(Method::PATCH, loc.clone())
                .header("content-type", mt::OCTET)
                .header("content-range", "0-99999")
                .body(layer[..100_000].to_vec()),
        )
        .await;
    r.expect(202);
    assert_no_plaintext(&srv.data_dir, &layer, "mid-upload");
    let loc = reg.resolve(&r.must_header("location"));
    let r = reg
        .send(
            reg.req(
                Method::PUT,
                Reg::with_query(&loc, "digest", &oci::sha256(&layer)),
            )
            .header("content-type", mt::OCTET)
            .body(layer[100_000..].to_vec()),
        )
        .await;
    r.expect(201);

    let config = pattern(5_000);
    let manifest = oci::to_bytes(&oci::oci_manifest(
        oci::desc(mt::OCI_CONFIG, &config),
        vec![oci::desc(mt::OCI_LAYER_GZ, &layer)],
    ));
    let img = Image::from_parts(config, vec![layer.clone()], manifest, mt::OCI_MANIFEST);
    reg.push_blob("secret/app", &img.config).await;
    reg.push_manifest("secret/app", "v1", &img.media_type, &img.manifest)
        .await;
    assert_no_plaintext(&srv.data_dir, &layer, "after the push");
    assert_no_plaintext(&srv.data_dir, &img.config, "after the push");

    reg.assert_blob("secret/app", &layer).await;
    let ranged = reg
        .send(
            reg.at(
                Method::GET,
                &format!("/v2/secret/app/blobs/{}", oci::sha256(&layer)),
            )
            .header("range", "bytes=65530-131080"),
        )
        .await;
    ranged.expect(206);
    assert_eq!(&ranged.body[..], &layer[65530..=131080]);

    // Rotate: new blobs use the new key version, old ones stay readable after a restart.
    let rotated = keys(&["rotate"], &key_file);
    assert_eq!(rotated.lines().count(), 2, "{rotated}");
    srv.restart();
    let reg = Reg::new(&srv.url);
    reg.assert_blob("secret/app", &layer).await;
    let newer = pattern(70_000);
    reg.push_blob("secret/app", &newer).await;
    reg.assert_blob("secret/app", &newer).await;
    assert_no_plaintext(&srv.data_dir, &newer, "after the rotation");
    assert_eq!(
        keys(&["list"], &key_file).lines().count(),
        2,
        "both versions are listed"
    );
}

#[test]
fn a_missing_key_file_stops_the_server_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(common::wharf_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--encryption-key-file")
        .arg(tmp.path().join("nope.keys"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.keys"), "{err}");
}

/// The same on PostgreSQL + S3: the bucket holds no plaintext (objects and the parts of
/// open multipart uploads, as files of the private S3 server), and pulls decrypt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_in_s3_are_encrypted_at_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("master.keys");
    keys(&["generate"], &key_file);
    let key_arg = key_file.to_str().unwrap().to_string();
    let engines = common::Engines::shared();
    let srv = common::Server::start_on(engines.clone(), &["--encryption-key-file", &key_arg]);
    let reg = Reg::new(&srv.url);
    let layer = pattern(9 << 20);
    let digest = reg.push_blob("secret/s3", &layer).await;
    reg.assert_blob("secret/s3", &layer).await;
    let ranged = reg
        .send(
            reg.at(Method::GET, &format!("/v2/secret/s3/blobs/{digest}"))
                .header("range", "bytes=8388000-8389000"),
        )
        .await;
    ranged.expect(206);
    assert_eq!(&ranged.body[..], &layer[8_388_000..=8_389_000]);
    // Raw bytes: every object of the bucket, read straight from the S3 server.
    let objects = common::list_bucket(&engines);
    assert!(!objects.is_empty(), "nothing in the bucket");
    let windows: std::collections::HashSet<&[u8]> = layer.chunks_exact(32).collect();
    for (key, bytes) in &objects {
        assert!(
            !bytes.windows(32).any(|w| windows.contains(w)),
            "plaintext found in object {key}"
        );
    }
}

/// The master key ids blob `digest`'s envelope wraps its data key under, read from
/// where the server's engines keep it.
fn envelope_keys(srv: &common::Server, digest: &str) -> Vec<String> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = if srv.engines.blobs.is_some() {
        let suffix = format!("{hex}.envelope");
        common::list_bucket(&srv.engines)
            .into_iter()
            .find(|(k, _)| k.ends_with(&suffix))
            .unwrap_or_else(|| panic!("no envelope of {digest} in the bucket"))
            .1
    } else {
        let path = srv
            .data_dir
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(format!("{hex}.envelope"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let envelope = wharf_crypt::Envelope::from_bytes(&bytes).expect("an envelope");
    let mut ids: Vec<String> = envelope.key_ids().into_iter().map(String::from).collect();
    ids.sort();
    ids
}

/// ECR `KMS` repositories: a `kmsKey` must be a key of the key file; their blobs are
/// wrapped under that key alone; the same content pushed to or mounted into a
/// repository with another key gets a wrap for that key too; after a rotation of the
/// named key, `wharf keys rewrap` lets the old version be deleted from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_repositories_encrypt_under_their_own_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("master.keys");
    keys(&["generate"], &key_file);
    keys(&["add", "alias/team-a"], &key_file);
    let key_arg = key_file.to_str().unwrap().to_string();
    let mut srv = common::Server::start_on(
        common::Engines::from_env(),
        &["--encryption-key-file", &key_arg],
    );

    let err = common::aws_admin_err(
        &srv,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "kms/nope",
            "--encryption-configuration",
            "encryptionType=KMS,kmsKey=alias/unknown",
        ],
    );
    assert!(err.contains("KmsException"), "{err}");
    assert!(
        err.contains("alias/unknown") && err.contains("default, alias/team-a"),
        "{err}"
    );
    let repo = common::aws_admin(
        &srv,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "kms/app",
            "--encryption-configuration",
            "encryptionType=KMS,kmsKey=alias/team-a",
        ],
    );
    assert_eq!(
        repo["repository"]["encryptionConfiguration"]["kmsKey"],
        "alias/team-a"
    );

    let reg = Reg::new(&srv.url);
    let layer = pattern(200_000);
    let digest = reg.push_blob("kms/app", &layer).await;
    assert_eq!(envelope_keys(&srv, &digest), ["alias/team-a"]);
    // The same content pushed to a repository with the default key.
    reg.push_blob("plain/app", &layer).await;
    assert_eq!(envelope_keys(&srv, &digest), ["alias/team-a", "default"]);

    // Mounted from the KMS repository into a default-key one.
    let other = pattern(90_000);
    let other_digest = reg.push_blob("kms/app", &other).await;
    assert_eq!(envelope_keys(&srv, &other_digest), ["alias/team-a"]);
    let r = reg
        .send(reg.at(
            Method::POST,
            &format!("/v2/plain/mounted/blobs/uploads/?mount={other_digest}&from=kms/app"),
        ))
        .await;
    r.expect(201);
    assert_eq!(
        envelope_keys(&srv, &other_digest),
        ["alias/team-a", "default"]
    );
    reg.assert_blob("plain/mounted", &other).await;

    // Rotate the named key, re-wrap, delete its old version: still readable.
    keys(&["rotate", "--key", "alias/team-a"], &key_file);
    let out = srv
        .command()
        .args(["keys", "rewrap", "--key-file", &key_arg])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("2 re-wrapped"), "{said}");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let mut seen = false;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            if !l.starts_with("alias/team-a ") {
                return true;
            }
            let first = !seen;
            seen = true;
            first
        })
        .collect();
    assert_eq!(kept.len() + 1, text.lines().count(), "one old line removed");
    std::fs::write(&key_file, kept.join("\n") + "\n").unwrap();
    srv.restart();
    let reg = Reg::new(&srv.url);
    reg.assert_blob("kms/app", &layer).await;
    reg.assert_blob("kms/app", &other).await;
    reg.assert_blob("plain/app", &layer).await;
    // A second run finds nothing left to do.
    let out = srv
        .command()
        .args(["keys", "rewrap", "--key-file", &key_arg])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0 re-wrapped"));
}
