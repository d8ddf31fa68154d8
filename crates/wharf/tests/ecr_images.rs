//! ECR's image, policy and tagging operations through the real AWS CLI, on the same
//! state `/v2/` reads and writes.

mod common;

use common::{aws_admin, aws_admin_err, aws_cli, basic, curl, push};
use serde_json::Value;

fn admin() -> String {
    basic(common::ADMIN_KEY, common::ADMIN_SECRET)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn images_listed_described_fetched_retagged_and_deleted() {
    let srv = common::Server::start();
    let created = aws_admin(
        &srv,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "shop/api",
            "--tags",
            "Key=team,Value=payments",
        ],
    );
    let arn = created["repository"]["repositoryArn"]
        .as_str()
        .unwrap()
        .to_string();
    let tags = aws_admin(
        &srv,
        &["ecr", "list-tags-for-resource", "--resource-arn", &arn],
    );
    assert_eq!(tags["tags"][0]["Key"], "team");
    aws_admin(
        &srv,
        &[
            "ecr",
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=env,Value=prod",
        ],
    );
    aws_admin(
        &srv,
        &[
            "ecr",
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ],
    );
    let tags = aws_admin(
        &srv,
        &["ecr", "list-tags-for-resource", "--resource-arn", &arn],
    );
    assert_eq!(
        tags["tags"],
        serde_json::json!([{"Key": "env", "Value": "prod"}])
    );

    let (status, text) = push(&srv, &admin(), None, "shop/api", "v1");
    assert_eq!(status, 201, "{text}");
    let listed = aws_admin(
        &srv,
        &["ecr", "list-images", "--repository-name", "shop/api"],
    );
    let ids = listed["imageIds"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{listed}");
    assert_eq!(ids[0]["imageTag"], "v1");
    let digest = ids[0]["imageDigest"].as_str().unwrap().to_string();

    let described = aws_admin(
        &srv,
        &[
            "ecr",
            "describe-images",
            "--repository-name",
            "shop/api",
            "--image-ids",
            "imageTag=v1",
        ],
    );
    let d = &described["imageDetails"][0];
    assert_eq!(d["imageDigest"], digest.as_str());
    assert_eq!(strs(&d["imageTags"]), ["v1"]);
    assert_eq!(
        d["imageManifestMediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(d["imageSizeInBytes"].as_u64().unwrap() > 0, "{d}");
    assert!(d["imagePushedAt"].as_f64().is_some(), "{d}");
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "describe-images",
            "--repository-name",
            "shop/api",
            "--image-ids",
            "imageTag=nope",
        ],
    );
    assert!(
        err.contains("ImageNotFoundException") && err.contains("nope"),
        "{err}"
    );

    // Retag: BatchGetImage's manifest put back under a new tag (ECR's documented way).
    let got = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-get-image",
            "--repository-name",
            "shop/api",
            "--image-ids",
            "imageTag=v1",
        ],
    );
    let manifest = got["images"][0]["imageManifest"]
        .as_str()
        .unwrap()
        .to_string();
    let put = aws_admin(
        &srv,
        &[
            "ecr",
            "put-image",
            "--repository-name",
            "shop/api",
            "--image-tag",
            "stable",
            "--image-manifest",
            &manifest,
        ],
    );
    assert_eq!(put["image"]["imageId"]["imageDigest"], digest.as_str());
    let (status, text) = curl(&["-H", &admin(), &srv.at("/v2/shop/api/manifests/stable")]);
    assert_eq!(status, 200, "{text}");
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "put-image",
            "--repository-name",
            "shop/api",
            "--image-tag",
            "stable",
            "--image-manifest",
            &manifest,
        ],
    );
    assert!(err.contains("ImageAlreadyExistsException"), "{err}");
    let missing = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-get-image",
            "--repository-name",
            "shop/api",
            "--image-ids",
            "imageTag=gone",
        ],
    );
    assert_eq!(missing["failures"][0]["failureCode"], "ImageNotFound");

    // A pull is recorded (written in batches every few seconds).
    let (status, _) = curl(&["-H", &admin(), &srv.at("/v2/shop/api/manifests/v1")]);
    assert_eq!(status, 200);
    let mut pulled = Value::Null;
    for _ in 0..40 {
        let d = aws_admin(
            &srv,
            &["ecr", "describe-images", "--repository-name", "shop/api"],
        );
        pulled = d["imageDetails"][0]["lastRecordedPullTime"].clone();
        if !pulled.is_null() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        pulled.as_f64().is_some(),
        "lastRecordedPullTime never appeared"
    );

    // Layers: present and absent.
    let cfg = wharf_oci::Algorithm::Sha256
        .digest(br#"{"repo":"shop/api"}"#)
        .to_string();
    let zero = format!("sha256:{}", "0".repeat(64));
    let layers = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-check-layer-availability",
            "--repository-name",
            "shop/api",
            "--layer-digests",
            &cfg,
            &zero,
        ],
    );
    assert_eq!(layers["layers"][0]["layerAvailability"], "AVAILABLE");
    assert_eq!(layers["failures"][0]["failureCode"], "MissingLayerDigest");

    // Immutable tags hold on the API path too.
    aws_admin(
        &srv,
        &[
            "ecr",
            "put-image-tag-mutability",
            "--repository-name",
            "shop/api",
            "--image-tag-mutability",
            "IMMUTABLE",
        ],
    );
    let other = manifest.replacen("\"layers\"", "\"annotations\":{\"x\":\"y\"},\"layers\"", 1);
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "put-image",
            "--repository-name",
            "shop/api",
            "--image-tag",
            "v1",
            "--image-manifest",
            &other,
        ],
    );
    assert!(
        err.contains("ImageTagAlreadyExistsException") && err.contains("v1"),
        "{err}"
    );
    aws_admin(
        &srv,
        &[
            "ecr",
            "put-image-tag-mutability",
            "--repository-name",
            "shop/api",
            "--image-tag-mutability",
            "MUTABLE",
        ],
    );

    // Deleting one of two tags keeps the image; deleting the last tag deletes it.
    let del = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-delete-image",
            "--repository-name",
            "shop/api",
            "--image-ids",
            "imageTag=stable",
        ],
    );
    assert_eq!(del["imageIds"][0]["imageTag"], "stable");
    let (status, _) = curl(&[
        "-H",
        &admin(),
        &srv.at(&format!("/v2/shop/api/manifests/{digest}")),
    ]);
    assert_eq!(status, 200, "the image keeps its other tag");
    aws_admin(
        &srv,
        &[
            "ecr",
            "batch-delete-image",
            "--repository-name",
            "shop/api",
            "--image-ids",
            "imageTag=v1",
        ],
    );
    let (status, _) = curl(&[
        "-H",
        &admin(),
        &srv.at(&format!("/v2/shop/api/manifests/{digest}")),
    ]);
    assert_eq!(status, 404, "the last tag took the image with it");
    let left = aws_admin(
        &srv,
        &["ecr", "list-images", "--repository-name", "shop/api"],
    );
    assert!(left["imageIds"].as_array().unwrap().is_empty(), "{left}");
}

#[test]
fn repository_policies_open_a_repository_to_another_account() {
    let srv = common::Server::start();
    let (b_key, b_secret) = common::create_account(&srv, "111122223333");
    let b = basic(&b_key, &b_secret);
    let (status, text) = push(&srv, &admin(), None, "base/os", "v1");
    assert_eq!(status, 201, "{text}");
    let a_host = format!("{}.dkr.ecr.us-east-1.localhost", common::ACCOUNT);
    let host = format!("Host: {a_host}");
    let pull = |auth: &str| curl(&["-H", auth, "-H", &host, &srv.at("/v2/base/os/manifests/v1")]);

    let (status, text) = pull(&b);
    assert_eq!(status, 403, "{text}");

    // An invalid policy is refused with the reason.
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "set-repository-policy",
            "--repository-name",
            "base/os",
            "--policy-text",
            r#"{"Statement":[{"Effect":"allow","Principal":"*","Action":"ecr:*"}]}"#,
        ],
    );
    assert!(
        err.contains("InvalidParameterException") && err.contains("Effect"),
        "{err}"
    );

    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"PullFromB","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"]}]}"#;
    aws_admin(
        &srv,
        &[
            "ecr",
            "set-repository-policy",
            "--repository-name",
            "base/os",
            "--policy-text",
            policy,
        ],
    );
    let got = aws_admin(
        &srv,
        &[
            "ecr",
            "get-repository-policy",
            "--repository-name",
            "base/os",
        ],
    );
    assert!(got["policyText"].as_str().unwrap().contains("PullFromB"));

    // B's administrator pulls (its AdministratorAccess plus the grant to its account)…
    let (status, text) = pull(&b);
    assert_eq!(status, 200, "{text}");
    // …and through the API with registryId.
    let described = aws_cli(
        &srv,
        &b_key,
        &b_secret,
        &[
            "ecr",
            "batch-get-image",
            "--registry-id",
            common::ACCOUNT,
            "--repository-name",
            "base/os",
            "--image-ids",
            "imageTag=v1",
        ],
    )
    .unwrap();
    assert_eq!(
        described["images"].as_array().unwrap().len(),
        1,
        "{described}"
    );
    // …but may not push there: nothing grants it.
    let (status, text) = push(&srv, &b, Some(&a_host), "base/os", "evil");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("ecr:InitiateLayerUpload") || text.contains("ecr:PutImage"),
        "{text}"
    );

    // An explicit Deny beats even the owner's AdministratorAccess, and says which statement.
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoDeletes","Effect":"Deny","Principal":"*","Action":"ecr:BatchDeleteImage"}]}"#;
    aws_admin(
        &srv,
        &[
            "ecr",
            "set-repository-policy",
            "--repository-name",
            "base/os",
            "--policy-text",
            deny,
        ],
    );
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "batch-delete-image",
            "--repository-name",
            "base/os",
            "--image-ids",
            "imageTag=v1",
        ],
    );
    assert!(
        err.contains("AccessDeniedException")
            && err.contains("NoDeletes")
            && err.contains("ecr:BatchDeleteImage"),
        "{err}"
    );
    let (status, _) = pull(&b);
    assert_eq!(status, 403, "the grant to B is gone with the old policy");

    let deleted = aws_admin(
        &srv,
        &[
            "ecr",
            "delete-repository-policy",
            "--repository-name",
            "base/os",
        ],
    );
    assert!(deleted["policyText"]
        .as_str()
        .unwrap()
        .contains("NoDeletes"));
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "get-repository-policy",
            "--repository-name",
            "base/os",
        ],
    );
    assert!(err.contains("RepositoryPolicyNotFoundException"), "{err}");

    // Anonymous pulls only where a policy grants them to everyone.
    let anonymous = || curl(&[&srv.at("/v2/base/os/manifests/v1")]);
    assert_eq!(anonymous().0, 401);
    let public = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Public","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
    aws_admin(
        &srv,
        &[
            "ecr",
            "set-repository-policy",
            "--repository-name",
            "base/os",
            "--policy-text",
            public,
        ],
    );
    let (status, text) = anonymous();
    assert_eq!(status, 200, "{text}");
    let (status, text) = curl(&[&srv.at("/v2/base/os/tags/list")]);
    assert_eq!(status, 401, "listing is not granted: {text}");
}

#[test]
fn registry_policy_and_description() {
    let srv = common::Server::start();
    let reg = aws_admin(&srv, &["ecr", "describe-registry"]);
    assert_eq!(reg["registryId"], common::ACCOUNT);
    let err = aws_admin_err(&srv, &["ecr", "get-registry-policy"]);
    assert!(err.contains("RegistryPolicyNotFoundException"), "{err}");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Replicate","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":["ecr:CreateRepository","ecr:ReplicateImage"],"Resource":"arn:aws:ecr:us-east-1:000000000000:repository/*"}]}"#;
    aws_admin(
        &srv,
        &["ecr", "put-registry-policy", "--policy-text", policy],
    );
    let got = aws_admin(&srv, &["ecr", "get-registry-policy"]);
    assert!(got["policyText"].as_str().unwrap().contains("Replicate"));
    aws_admin(&srv, &["ecr", "delete-registry-policy"]);
    assert!(aws_cli(
        &srv,
        common::ADMIN_KEY,
        common::ADMIN_SECRET,
        &["ecr", "get-registry-policy"]
    )
    .is_err());
}

/// Uploads `data` through ECR's layer API in parts of `part` bytes; returns the
/// CompleteLayerUpload output or the CLI's error.
fn upload_layer(
    srv: &common::Server,
    dir: &std::path::Path,
    repo: &str,
    data: &[u8],
    part: usize,
    digest: &str,
) -> Result<Value, String> {
    let init = aws_admin(
        srv,
        &["ecr", "initiate-layer-upload", "--repository-name", repo],
    );
    let id = init["uploadId"].as_str().unwrap().to_string();
    assert!(init["partSize"].as_u64().unwrap() > 0);
    for (i, chunk) in data.chunks(part).enumerate() {
        let first = i * part;
        let path = dir.join(format!("part-{i}"));
        std::fs::write(&path, chunk).unwrap();
        let out = aws_admin(
            srv,
            &[
                "ecr",
                "upload-layer-part",
                "--repository-name",
                repo,
                "--upload-id",
                &id,
                "--part-first-byte",
                &first.to_string(),
                "--part-last-byte",
                &(first + chunk.len() - 1).to_string(),
                "--layer-part-blob",
                &format!("fileb://{}", path.display()),
            ],
        );
        assert_eq!(
            out["lastByteReceived"].as_u64().unwrap() as usize,
            first + chunk.len() - 1
        );
    }
    aws_cli(
        srv,
        common::ADMIN_KEY,
        common::ADMIN_SECRET,
        &[
            "ecr",
            "complete-layer-upload",
            "--repository-name",
            repo,
            "--upload-id",
            &id,
            "--layer-digests",
            digest,
        ],
    )
}

#[test]
fn layer_api_uploads_and_download_urls() {
    let srv = common::Server::start();
    let tmp = tempfile::tempdir().unwrap();
    aws_admin(
        &srv,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "layers/app",
        ],
    );
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let layer_digest = wharf_oci::Algorithm::Sha256.digest(&layer).to_string();
    let done = upload_layer(
        &srv,
        tmp.path(),
        "layers/app",
        &layer,
        100_000,
        &layer_digest,
    )
    .unwrap();
    assert_eq!(done["layerDigest"], layer_digest.as_str());
    let again = upload_layer(
        &srv,
        tmp.path(),
        "layers/app",
        &layer,
        300_000,
        &layer_digest,
    )
    .unwrap_err();
    assert!(again.contains("LayerAlreadyExistsException"), "{again}");
    let wrong = format!("sha256:{}", "1".repeat(64));
    let bad =
        upload_layer(&srv, tmp.path(), "layers/app", b"other bytes", 100, &wrong).unwrap_err();
    assert!(
        bad.contains("InvalidLayerException") && bad.contains(&wrong),
        "{bad}"
    );

    // A part that does not continue the upload is refused, saying where to resume.
    let init = aws_admin(
        &srv,
        &[
            "ecr",
            "initiate-layer-upload",
            "--repository-name",
            "layers/app",
        ],
    );
    let id = init["uploadId"].as_str().unwrap();
    let part = tmp.path().join("gap");
    std::fs::write(&part, b"xyz").unwrap();
    let err = aws_admin_err(
        &srv,
        &[
            "ecr",
            "upload-layer-part",
            "--repository-name",
            "layers/app",
            "--upload-id",
            id,
            "--part-first-byte",
            "10",
            "--part-last-byte",
            "12",
            "--layer-part-blob",
            &format!("fileb://{}", part.display()),
        ],
    );
    assert!(
        err.contains("InvalidLayerPartException") && err.contains("byte 0"),
        "{err}"
    );

    // A config through the layer API too, then the manifest with PutImage.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = wharf_oci::Algorithm::Sha256.digest(config).to_string();
    upload_layer(&srv, tmp.path(), "layers/app", config, 1000, &config_digest).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    aws_admin(
        &srv,
        &[
            "ecr",
            "put-image",
            "--repository-name",
            "layers/app",
            "--image-tag",
            "v1",
            "--image-manifest",
            &manifest,
        ],
    );
    let described = aws_admin(
        &srv,
        &["ecr", "describe-images", "--repository-name", "layers/app"],
    );
    assert_eq!(
        described["imageDetails"][0]["imageSizeInBytes"]
            .as_u64()
            .unwrap() as usize,
        layer.len() + config.len()
    );

    // The download URL works without other credentials and serves the exact bytes.
    let url = aws_admin(
        &srv,
        &[
            "ecr",
            "get-download-url-for-layer",
            "--repository-name",
            "layers/app",
            "--layer-digest",
            &layer_digest,
        ],
    );
    let url = url["downloadUrl"].as_str().unwrap().to_string();
    let out = std::process::Command::new("curl")
        .args(["-sf", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url} failed");
    assert!(out.stdout == layer, "downloaded bytes differ");
    // The token in it opens only that kind of request.
    let manifest_url = url.replace(&format!("blobs/{layer_digest}"), "manifests/v1");
    let (status, _) = curl(&[&manifest_url]);
    assert_eq!(status, 401);

    // An image an index lists cannot be deleted before the index (ECR's rule).
    let m_digest = wharf_oci::Algorithm::Sha256
        .digest(manifest.as_bytes())
        .to_string();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        manifest.len()
    );
    let put = aws_admin(
        &srv,
        &[
            "ecr",
            "put-image",
            "--repository-name",
            "layers/app",
            "--image-tag",
            "multi",
            "--image-manifest",
            &index,
        ],
    );
    let index_digest = put["image"]["imageId"]["imageDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-delete-image",
            "--repository-name",
            "layers/app",
            "--image-ids",
            &format!("imageDigest={m_digest}"),
        ],
    );
    assert_eq!(
        refused["failures"][0]["failureCode"], "ImageReferencedByManifestList",
        "{refused}"
    );
    assert!(refused["failures"][0]["failureReason"]
        .as_str()
        .unwrap()
        .contains(&index_digest));
    let both = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-delete-image",
            "--repository-name",
            "layers/app",
            "--image-ids",
            &format!("imageDigest={index_digest}"),
        ],
    );
    assert!(both["failures"].as_array().unwrap().is_empty(), "{both}");
    let then = aws_admin(
        &srv,
        &[
            "ecr",
            "batch-delete-image",
            "--repository-name",
            "layers/app",
            "--image-ids",
            &format!("imageDigest={m_digest}"),
        ],
    );
    assert!(then["failures"].as_array().unwrap().is_empty(), "{then}");
}
