//! OCI distribution-spec conformance, manifest side: push by tag and by digest, pull
//! and HEAD with their headers, sha512, image indexes (nested, empty), Docker schema 2
//! manifests and manifest lists, Accept negotiation, artifacts with `subject` and the
//! `OCI-Subject` header, non-distributable layers, unknown fields, byte-exact serving,
//! size limits, and every manifest error code.
//!
//! Each test starts its own `wharf serve` on a fresh data directory.

mod common;
mod oci;

use oci::{
    desc, desc_with, mt, oci_index, oci_manifest, random_bytes, sha256, sha512, to_bytes, Image,
    Reg,
};
use reqwest::Method;
use serde_json::{json, Value};
use wharf_oci::Algorithm;

fn start() -> (common::Server, Reg) {
    let srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    (srv, reg)
}

/// Asserts a successful manifest GET (or HEAD when `head`): status, exact body,
/// Content-Type, Content-Length and Docker-Content-Digest.
#[track_caller]
fn assert_manifest(r: &oci::Resp, body: &[u8], media_type: &str, digest: &str, head: bool) {
    r.expect(200);
    r.assert_header("content-type", media_type);
    r.assert_header("content-length", &body.len().to_string());
    r.assert_header("docker-content-digest", digest);
    if head {
        assert!(
            r.body.is_empty(),
            "HEAD must not have a body:\n{}",
            r.describe()
        );
    } else {
        assert!(
            r.body == body,
            "manifest bytes differ from what was pushed:\n{}",
            r.describe()
        );
    }
}

/// Pushes the blobs of an image whose manifest the test builds itself.
async fn push_blobs(reg: &Reg, repo: &str, blobs: &[&[u8]]) {
    for b in blobs {
        reg.push_blob(repo, b).await;
    }
}

// ---------------------------------------------------------------------------------
// Push and pull

#[tokio::test]
async fn push_by_tag_then_pull_by_tag_and_digest() {
    let (_srv, reg) = start();
    let repo = "man/basic";
    let img = Image::random(2, 2048);
    push_blobs(&reg, repo, &img.blobs()).await;
    let r = reg
        .put_manifest(repo, "tagtest0", mt::OCI_MANIFEST, &img.manifest)
        .await;
    r.expect(201);
    r.assert_header("docker-content-digest", &img.digest);
    r.assert_no_header("oci-subject");
    let loc = reg.resolve(&r.must_header("location"));
    let g = reg
        .send(reg.req(Method::GET, loc).header("accept", mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &img.manifest, mt::OCI_MANIFEST, &img.digest, false);

    for reference in ["tagtest0", img.digest.as_str()] {
        let g = reg
            .get_manifest(repo, reference, Some(mt::OCI_MANIFEST))
            .await;
        assert_manifest(&g, &img.manifest, mt::OCI_MANIFEST, &img.digest, false);
        let h = reg
            .head_manifest(repo, reference, Some(mt::OCI_MANIFEST))
            .await;
        assert_manifest(&h, &img.manifest, mt::OCI_MANIFEST, &img.digest, true);
        // Two Accept headers, as the conformance suite sends them.
        let g = reg
            .send(
                reg.at(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
                    .header("accept", mt::OCI_INDEX)
                    .header("accept", mt::OCI_MANIFEST),
            )
            .await;
        assert_manifest(&g, &img.manifest, mt::OCI_MANIFEST, &img.digest, false);
    }
    // The same manifest under more tags: 201 every time.
    for i in 0..4 {
        reg.push_manifest(repo, &format!("test{i}"), mt::OCI_MANIFEST, &img.manifest)
            .await;
    }
    let mut tags = reg.tags(repo).await;
    tags.sort();
    assert_eq!(tags, ["tagtest0", "test0", "test1", "test2", "test3"]);
    // Layers are pullable.
    for b in img.blobs() {
        reg.assert_blob(repo, b).await;
    }
}

#[tokio::test]
async fn push_by_digest() {
    let (_srv, reg) = start();
    let repo = "man/by-digest";
    let img = Image::random(1, 100);
    push_blobs(&reg, repo, &img.blobs()).await;
    let d = reg
        .push_manifest(repo, &img.digest, mt::OCI_MANIFEST, &img.manifest)
        .await;
    assert_eq!(d, img.digest);
    let g = reg
        .get_manifest(repo, &img.digest, Some(mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &img.manifest, mt::OCI_MANIFEST, &img.digest, false);
    // Pushing by digest creates no tag.
    assert!(reg.tags(repo).await.is_empty());
    // And again (idempotent).
    reg.push_manifest(repo, &img.digest, mt::OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn manifest_without_layers() {
    let (_srv, reg) = start();
    let repo = "man/no-layers";
    let config = oci::config_blob();
    reg.push_blob(repo, &config).await;
    let body = to_bytes(&oci_manifest(desc(mt::OCI_CONFIG, &config), vec![]));
    reg.push_manifest(repo, "no-layers", mt::OCI_MANIFEST, &body)
        .await;
    let g = reg
        .get_manifest(repo, "no-layers", Some(mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &body, mt::OCI_MANIFEST, &sha256(&body), false);
}

#[tokio::test]
async fn retagging_moves_the_tag() {
    let (_srv, reg) = start();
    let repo = "man/retag";
    let a = Image::random(1, 64);
    let b = Image::random(1, 64);
    reg.push_image(repo, "latest", &a).await;
    reg.push_image(repo, "latest", &b).await;
    let g = reg
        .get_manifest(repo, "latest", Some(mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &b.manifest, mt::OCI_MANIFEST, &b.digest, false);
    // The old manifest stays reachable by digest.
    let g = reg
        .get_manifest(repo, &a.digest, Some(mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &a.manifest, mt::OCI_MANIFEST, &a.digest, false);
    assert_eq!(reg.tags(repo).await, ["latest"]);
}

#[tokio::test]
async fn manifest_bytes_are_served_exactly_as_pushed() {
    let (_srv, reg) = start();
    let repo = "man/bytes";
    let config = oci::config_blob();
    let layer = random_bytes(300);
    push_blobs(&reg, repo, &[&config, &layer]).await;
    let body = format!(
        "{{\n\t\"schemaVersion\" :  2 ,\r\n  \"mediaType\":\"{}\",\"config\":{{ \"size\": {}, \"digest\" : \"{}\" ,\"mediaType\": \"{}\"}},\n\n   \"layers\" : [ {{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}   }} ] ,\"annotations\" :{{\"k\":\"\\u00e9t\\u00e9 \\/ slash \\\"q\\\"\", \"z\": \"\u{2603}\"}}   }}\n\n",
        mt::OCI_MANIFEST,
        config.len(),
        sha256(&config),
        mt::OCI_CONFIG,
        mt::OCI_LAYER,
        sha256(&layer),
        layer.len()
    )
    .into_bytes();
    let d = sha256(&body);
    reg.push_manifest(repo, "odd", mt::OCI_MANIFEST, &body)
        .await;
    for reference in ["odd", d.as_str()] {
        let g = reg
            .get_manifest(repo, reference, Some(mt::OCI_MANIFEST))
            .await;
        assert_manifest(&g, &body, mt::OCI_MANIFEST, &d, false);
    }
    // Pushed by digest, with a key order a serializer would never produce.
    let body2 = format!(
        "{{\"layers\":[],\"config\":{{\"size\":{},\"mediaType\":\"{}\",\"digest\":\"{}\"}},\"schemaVersion\":2}}",
        config.len(),
        mt::OCI_CONFIG,
        sha256(&config)
    )
    .into_bytes();
    let d2 = sha256(&body2);
    reg.push_manifest(repo, &d2, mt::OCI_MANIFEST, &body2).await;
    let g = reg.get_manifest(repo, &d2, Some(mt::OCI_MANIFEST)).await;
    assert_manifest(&g, &body2, mt::OCI_MANIFEST, &d2, false);
}

#[tokio::test]
async fn unknown_fields_and_descriptor_data_are_kept() {
    let (_srv, reg) = start();
    let repo = "man/custom";
    let config = oci::config_blob();
    let layer = random_bytes(100);
    push_blobs(&reg, repo, &[&config, &layer]).await;
    let mut cfg = desc(mt::OCI_CONFIG, &config);
    cfg["data"] = json!(null);
    cfg["newUnspecifiedField"] = json!("c29tZSBkYXRh");
    let mut l = desc(mt::OCI_LAYER, &layer);
    l["annotations"] = json!({"org.opencontainers.image.title": "layer.tar"});
    l["newUnspecifiedField"] = json!({"nested": [1, 2, 3]});
    let mut m = oci_manifest(cfg, vec![l]);
    m["annotations"] = json!({"org.example.custom": "yes"});
    m["unknownTopLevel"] = json!({"a": true, "b": null});
    let body = to_bytes(&m);
    reg.push_manifest(repo, "custom", mt::OCI_MANIFEST, &body)
        .await;
    let g = reg
        .get_manifest(repo, "custom", Some(mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &body, mt::OCI_MANIFEST, &sha256(&body), false);

    // Descriptor `data` carrying the (base64) content.
    let small = b"{}".to_vec();
    reg.push_blob(repo, &small).await;
    let mut cfg = desc(mt::OCI_EMPTY, &small);
    cfg["data"] = json!("e30=");
    let body = to_bytes(&oci_manifest(cfg, vec![]));
    reg.push_manifest(repo, "data-field", mt::OCI_MANIFEST, &body)
        .await;
}

// ---------------------------------------------------------------------------------
// sha512

#[tokio::test]
async fn sha512_manifests_and_index_by_digest() {
    let (_srv, reg) = start();
    let repo = "man/sha512";
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = oci::config_blob();
        let layer = random_bytes(1000);
        reg.push_blob_with(repo, &config, Algorithm::Sha512).await;
        reg.push_blob_with(repo, &layer, Algorithm::Sha512).await;
        let body = to_bytes(&oci_manifest(
            desc_with(Algorithm::Sha512, mt::OCI_CONFIG, &config),
            vec![desc_with(Algorithm::Sha512, mt::OCI_LAYER_GZ, &layer)],
        ));
        let d = sha512(&body);
        let r = reg.put_manifest(repo, &d, mt::OCI_MANIFEST, &body).await;
        r.expect(201);
        r.assert_header("docker-content-digest", &d);
        let g = reg.get_manifest(repo, &d, Some(mt::OCI_MANIFEST)).await;
        assert_manifest(&g, &body, mt::OCI_MANIFEST, &d, false);
        let h = reg.head_manifest(repo, &d, Some(mt::OCI_MANIFEST)).await;
        assert_manifest(&h, &body, mt::OCI_MANIFEST, &d, true);
        let mut dsc = desc_with(Algorithm::Sha512, mt::OCI_MANIFEST, &body);
        dsc["platform"] = json!({"os": "linux", "architecture": arch});
        children.push(dsc);
    }
    let index = to_bytes(&oci_index(children));
    let d = sha512(&index);
    let r = reg.put_manifest(repo, &d, mt::OCI_INDEX, &index).await;
    r.expect(201);
    r.assert_header("docker-content-digest", &d);
    let g = reg.get_manifest(repo, &d, Some(mt::OCI_INDEX)).await;
    assert_manifest(&g, &index, mt::OCI_INDEX, &d, false);
    // A sha512 reference that does not match the body.
    let r = reg
        .put_manifest(repo, &sha512(b"something else"), mt::OCI_INDEX, &index)
        .await;
    r.expect_error(400, "DIGEST_INVALID");
}

// ---------------------------------------------------------------------------------
// Indexes

#[tokio::test]
async fn oci_image_index_nested_and_empty() {
    let (_srv, reg) = start();
    let repo = "man/index";
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let img = Image::random(2, 512);
        push_blobs(&reg, repo, &img.blobs()).await;
        reg.push_manifest(repo, &img.digest, mt::OCI_MANIFEST, &img.manifest)
            .await;
        let mut dsc = img.descriptor();
        dsc["platform"] = json!({"os": "linux", "architecture": arch});
        children.push(dsc);
    }
    let index = to_bytes(&oci_index(children.clone()));
    let d = reg
        .push_manifest(repo, "multi", mt::OCI_INDEX, &index)
        .await;
    for reference in ["multi", d.as_str()] {
        let g = reg
            .send(
                reg.at(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
                    .header("accept", mt::OCI_INDEX)
                    .header("accept", mt::OCI_MANIFEST),
            )
            .await;
        assert_manifest(&g, &index, mt::OCI_INDEX, &d, false);
        let h = reg
            .head_manifest(repo, reference, Some(mt::OCI_INDEX))
            .await;
        assert_manifest(&h, &index, mt::OCI_INDEX, &d, true);
    }
    // An index of indexes.
    let index2 = to_bytes(&oci_index(children.iter().rev().cloned().collect()));
    let d2 = reg
        .push_manifest(repo, &sha256(&index2), mt::OCI_INDEX, &index2)
        .await;
    let nested = to_bytes(&oci_index(vec![
        json!({"mediaType": mt::OCI_INDEX, "digest": d, "size": index.len()}),
        json!({"mediaType": mt::OCI_INDEX, "digest": d2, "size": index2.len()}),
    ]));
    reg.push_manifest(repo, "index-of-index", mt::OCI_INDEX, &nested)
        .await;
    // An empty index.
    let empty = to_bytes(&oci_index(vec![]));
    reg.push_manifest(repo, "empty-index", mt::OCI_INDEX, &empty)
        .await;
    let g = reg
        .get_manifest(repo, "empty-index", Some(mt::OCI_INDEX))
        .await;
    assert_manifest(&g, &empty, mt::OCI_INDEX, &sha256(&empty), false);
    // Asking only for image manifests does not get the index.
    let r = reg
        .get_manifest(repo, "multi", Some(mt::OCI_MANIFEST))
        .await;
    r.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn index_referencing_a_manifest_not_in_the_repository_is_refused() {
    let (_srv, reg) = start();
    let img = Image::random(1, 64);
    reg.push_image("man/idx-a", &img.digest, &img).await;
    let index = to_bytes(&oci_index(vec![img.descriptor()]));
    // Not in this repository (only in man/idx-a), and not anywhere.
    reg.push_blob("man/idx-b", b"exists").await;
    for repo in ["man/idx-b", "man/idx-a"] {
        let missing = Image::random(1, 64);
        let body = if repo == "man/idx-b" {
            index.clone()
        } else {
            to_bytes(&oci_index(vec![img.descriptor(), missing.descriptor()]))
        };
        let r = reg.put_manifest(repo, "multi", mt::OCI_INDEX, &body).await;
        r.expect_error_in(400, &["MANIFEST_BLOB_UNKNOWN", "MANIFEST_UNKNOWN"]);
        let want = if repo == "man/idx-b" {
            &img.digest
        } else {
            &missing.digest
        };
        assert!(
            r.error_message().contains(want.as_str()),
            "the error must name the missing manifest {want}:\n{}",
            r.describe()
        );
        reg.get_manifest(repo, "multi", None)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
}

// ---------------------------------------------------------------------------------
// Docker schema 2

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let (_srv, reg) = start();
    let repo = "man/docker";
    let config = oci::config_blob();
    let layer = random_bytes(700);
    push_blobs(&reg, repo, &[&config, &layer]).await;
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": mt::DOCKER_MANIFEST,
        "config": desc(mt::DOCKER_CONFIG, &config),
        "layers": [desc(mt::DOCKER_LAYER, &layer)],
    }));
    let md = reg
        .push_manifest(repo, "v2", mt::DOCKER_MANIFEST, &manifest)
        .await;
    let all = format!(
        "{}, {}, {}, {}",
        mt::DOCKER_MANIFEST,
        mt::DOCKER_LIST,
        mt::OCI_MANIFEST,
        mt::OCI_INDEX
    );
    for accept in [mt::DOCKER_MANIFEST, all.as_str()] {
        let g = reg.get_manifest(repo, "v2", Some(accept)).await;
        assert_manifest(&g, &manifest, mt::DOCKER_MANIFEST, &md, false);
        let h = reg.head_manifest(repo, &md, Some(accept)).await;
        assert_manifest(&h, &manifest, mt::DOCKER_MANIFEST, &md, true);
    }
    let list = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": mt::DOCKER_LIST,
        "manifests": [{
            "mediaType": mt::DOCKER_MANIFEST,
            "digest": md,
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"}
        }]
    }));
    let ld = reg
        .push_manifest(repo, "list", mt::DOCKER_LIST, &list)
        .await;
    for accept in [mt::DOCKER_LIST, all.as_str()] {
        let g = reg.get_manifest(repo, "list", Some(accept)).await;
        assert_manifest(&g, &list, mt::DOCKER_LIST, &ld, false);
    }
    // A Docker manifest is not served to a client that only takes OCI.
    let r = reg.get_manifest(repo, "v2", Some(mt::OCI_MANIFEST)).await;
    r.expect_error(404, "MANIFEST_UNKNOWN");
    assert!(
        r.error_message().contains(mt::DOCKER_MANIFEST),
        "message must name the stored media type:\n{}",
        r.describe()
    );
}

// ---------------------------------------------------------------------------------
// Accept negotiation

#[tokio::test]
async fn accept_negotiation() {
    let (_srv, reg) = start();
    let repo = "man/accept";
    let img = Image::random(1, 128);
    reg.push_image(repo, "latest", &img).await;
    let ok = [
        None,
        Some("*/*"),
        Some(mt::OCI_MANIFEST),
        Some("application/vnd.docker.distribution.manifest.v2+json;q=0.9, application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.oci.image.manifest.v1+json; q=0.5"),
        Some("application/*"),
    ];
    for accept in ok {
        for reference in ["latest", img.digest.as_str()] {
            let g = reg.get_manifest(repo, reference, accept).await;
            assert_manifest(&g, &img.manifest, mt::OCI_MANIFEST, &img.digest, false);
        }
    }
    let refused = [
        mt::DOCKER_MANIFEST,
        mt::OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
    ];
    for accept in refused {
        for reference in ["latest", img.digest.as_str()] {
            let r = reg.get_manifest(repo, reference, Some(accept)).await;
            r.expect_error(404, "MANIFEST_UNKNOWN");
            assert!(
                r.error_message().contains(mt::OCI_MANIFEST),
                "the message must name the stored media type {}:\n{}",
                mt::OCI_MANIFEST,
                r.describe()
            );
            reg.head_manifest(repo, reference, Some(accept))
                .await
                .expect(404);
        }
    }
}

// ---------------------------------------------------------------------------------
// Artifacts and subject

#[tokio::test]
async fn artifacts_with_subject_get_oci_subject_header() {
    let (_srv, reg) = start();
    let repo = "man/artifacts";
    let subject = Image::random(1, 256);
    reg.push_image(repo, "image", &subject).await;
    reg.push_blob(repo, b"{}").await;

    // artifactType set, empty config, one artifact layer.
    let layer = random_bytes(200);
    reg.push_blob(repo, &layer).await;
    let mut a = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::ART_A, &layer)]);
    a["artifactType"] = json!(mt::ART_A);
    a["subject"] = subject.descriptor();
    a["annotations"] = json!({"org.opencontainers.conformance": "hello"});
    let a = to_bytes(&a);
    let r = reg
        .put_manifest(repo, &sha256(&a), mt::OCI_MANIFEST, &a)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &subject.digest);
    r.assert_header("docker-content-digest", &sha256(&a));

    // No artifactType: the config media type is the artifact type.
    let cfg = random_bytes(50);
    reg.push_blob(repo, &cfg).await;
    let mut b = oci_manifest(desc(mt::ART_B, &cfg), vec![]);
    b["subject"] = subject.descriptor();
    let b = to_bytes(&b);
    let r = reg
        .put_manifest(repo, "tagged-artifact", mt::OCI_MANIFEST, &b)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &subject.digest);

    // An artifact whose only layer is the empty descriptor.
    let mut c = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::OCI_EMPTY, b"{}")]);
    c["artifactType"] = json!(mt::ART_A);
    c["subject"] = subject.descriptor();
    let c = to_bytes(&c);
    let r = reg
        .put_manifest(repo, &sha256(&c), mt::OCI_MANIFEST, &c)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &subject.digest);

    // A subject that does not exist (yet) is fine.
    let missing =
        json!({"mediaType": mt::OCI_MANIFEST, "digest": sha256(b"missing content"), "size": 123});
    let mut e = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::ART_A, &layer)]);
    e["artifactType"] = json!(mt::ART_A);
    e["subject"] = missing.clone();
    let e = to_bytes(&e);
    let r = reg
        .put_manifest(repo, &sha256(&e), mt::OCI_MANIFEST, &e)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &sha256(b"missing content"));

    // An index with a subject.
    let mut idx = oci_index(vec![]);
    idx["artifactType"] = json!(mt::ART_B);
    idx["subject"] = subject.descriptor();
    let idx = to_bytes(&idx);
    let r = reg
        .put_manifest(repo, &sha256(&idx), mt::OCI_INDEX, &idx)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &subject.digest);

    // They are all served as pushed.
    for (body, media) in [
        (&a, mt::OCI_MANIFEST),
        (&b, mt::OCI_MANIFEST),
        (&c, mt::OCI_MANIFEST),
        (&e, mt::OCI_MANIFEST),
        (&idx, mt::OCI_INDEX),
    ] {
        let g = reg.get_manifest(repo, &sha256(body), Some(media)).await;
        assert_manifest(&g, body, media, &sha256(body), false);
    }
}

#[tokio::test]
async fn non_distributable_layers_need_not_be_pushed() {
    let (_srv, reg) = start();
    let repo = "man/nondist";
    let config = oci::config_blob();
    let normal = random_bytes(400);
    push_blobs(&reg, repo, &[&config, &normal]).await;
    let nd1 = sha256(&random_bytes(256));
    let nd2 = sha256(&random_bytes(256));
    let hex1 = nd1.trim_start_matches("sha256:").to_string();
    let hex2 = nd2.trim_start_matches("sha256:").to_string();
    let body = to_bytes(&oci_manifest(
        desc(mt::OCI_CONFIG, &config),
        vec![
            json!({"mediaType": mt::OCI_LAYER_ND_GZ, "digest": nd1, "size": 123456,
                   "urls": [format!("https://store.example.com/blobs/sha256/{hex1}")]}),
            json!({"mediaType": mt::OCI_LAYER_ND, "digest": nd2, "size": 12345,
                   "urls": [format!("https://store.example.com/blobs/sha256/{hex2}")]}),
            desc(mt::OCI_LAYER_GZ, &normal),
        ],
    ));
    let d = reg
        .push_manifest(repo, "non-distributable-image", mt::OCI_MANIFEST, &body)
        .await;
    let g = reg
        .get_manifest(repo, "non-distributable-image", Some(mt::OCI_MANIFEST))
        .await;
    assert_manifest(&g, &body, mt::OCI_MANIFEST, &d, false);
    // The foreign layers were not made readable.
    reg.head(&format!("/v2/{repo}/blobs/{nd1}"))
        .await
        .expect(404);

    // Docker foreign layers likewise.
    let foreign = sha256(&random_bytes(64));
    let docker = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": mt::DOCKER_MANIFEST,
        "config": desc(mt::DOCKER_CONFIG, &config),
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
             "digest": foreign, "size": 99999,
             "urls": ["https://mcr.example.com/layer"]},
            desc(mt::DOCKER_LAYER, &normal),
        ],
    }));
    reg.push_manifest(repo, "foreign", mt::DOCKER_MANIFEST, &docker)
        .await;
}

// ---------------------------------------------------------------------------------
// Manifest errors

#[tokio::test]
async fn manifest_referencing_missing_blob_is_manifest_blob_unknown() {
    let (_srv, reg) = start();
    let repo = "man/missing-blob";
    let img = Image::random(2, 256);
    // Nothing pushed: the config is reported.
    let r = reg
        .put_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let missing: Vec<String> = img.blobs().iter().map(|b| sha256(b)).collect();
    assert!(
        missing
            .iter()
            .any(|d| r.error_message().contains(d.as_str())),
        "the message must name a missing blob:\n{}",
        r.describe()
    );
    // Config and first layer pushed: the second layer is reported.
    reg.push_blob(repo, &img.config).await;
    reg.push_blob(repo, &img.layers[0]).await;
    let r = reg
        .put_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let want = sha256(&img.layers[1]);
    assert!(
        r.error_message().contains(&want),
        "the message must name {want}:\n{}",
        r.describe()
    );
    reg.get_manifest(repo, "latest", None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get_manifest(repo, &img.digest, None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn blob_in_another_repository_does_not_satisfy_a_manifest() {
    let (_srv, reg) = start();
    let img = Image::random(1, 512);
    for b in img.blobs() {
        reg.push_blob("man/owner", b).await;
    }
    reg.push_blob("man/thief", b"thief exists").await;
    let r = reg
        .put_manifest("man/thief", "stolen", mt::OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let names_one = img
        .blobs()
        .iter()
        .any(|b| r.error_message().contains(&sha256(b)));
    assert!(
        names_one,
        "the message must name the missing digest:\n{}",
        r.describe()
    );
    // Mounting the blobs makes the same manifest acceptable.
    for b in img.blobs() {
        let url = reg.url(&format!(
            "/v2/man/thief/blobs/uploads/?mount={}&from=man/owner",
            sha256(b)
        ));
        reg.send(reg.req(Method::POST, url).body(Vec::<u8>::new()))
            .await
            .expect(201);
    }
    reg.push_manifest("man/thief", "stolen", mt::OCI_MANIFEST, &img.manifest)
        .await;
}

#[tokio::test]
async fn manifests_are_repository_scoped() {
    let (_srv, reg) = start();
    let img = Image::random(1, 64);
    reg.push_image("man/scope-a", "v1", &img).await;
    reg.push_blob("man/scope-b", b"b exists").await;
    reg.get_manifest("man/scope-b", &img.digest, None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get_manifest("man/scope-b", "v1", None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest("man/scope-b", &img.digest, None)
        .await
        .expect(404);
}

#[tokio::test]
async fn invalid_manifests_are_manifest_invalid() {
    let (_srv, reg) = start();
    let repo = "man/invalid";
    let config = oci::config_blob();
    reg.push_blob(repo, &config).await;
    let cfg = desc(mt::OCI_CONFIG, &config);
    let cases: Vec<(&str, &str, Vec<u8>, &[&str])> = vec![
        (
            "not json",
            mt::OCI_MANIFEST,
            b"blablabla".to_vec(),
            &["MANIFEST_INVALID"],
        ),
        (
            "json array",
            mt::OCI_MANIFEST,
            b"[]".to_vec(),
            &["MANIFEST_INVALID"],
        ),
        (
            "empty body",
            mt::OCI_MANIFEST,
            Vec::new(),
            &["MANIFEST_INVALID"],
        ),
        (
            "schema 1",
            mt::DOCKER_SCHEMA1,
            to_bytes(
                &json!({"schemaVersion": 1, "name": repo, "tag": "latest", "fsLayers": [], "history": []}),
            ),
            &["MANIFEST_INVALID"],
        ),
        (
            "schemaVersion 3",
            mt::OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 3, "mediaType": mt::OCI_MANIFEST, "config": cfg, "layers": []}),
            ),
            &["MANIFEST_INVALID"],
        ),
        (
            "mediaType differs from Content-Type",
            mt::OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": []})),
            &["MANIFEST_INVALID"],
        ),
        (
            "no config",
            mt::OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "layers": []})),
            &["MANIFEST_INVALID"],
        ),
        (
            "layers not an array",
            mt::OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "config": cfg, "layers": "nope"}),
            ),
            &["MANIFEST_INVALID"],
        ),
        (
            "descriptor without size",
            mt::OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
                "config": {"mediaType": mt::OCI_CONFIG, "digest": sha256(&config)}, "layers": []})),
            &["MANIFEST_INVALID"],
        ),
        (
            "malformed descriptor digest",
            mt::OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
                "config": {"mediaType": mt::OCI_CONFIG, "digest": "sha256:zz", "size": 2}, "layers": []})),
            &["MANIFEST_INVALID", "DIGEST_INVALID"],
        ),
        (
            "index without manifests",
            mt::OCI_INDEX,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX})),
            &["MANIFEST_INVALID"],
        ),
        (
            "unsupported media type",
            "application/vnd.example.thing+json",
            to_bytes(
                &json!({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json", "config": cfg, "layers": []}),
            ),
            &["MANIFEST_INVALID", "UNSUPPORTED"],
        ),
    ];
    for (what, ct, body, codes) in cases {
        let r = reg.put_manifest(repo, "bad", ct, &body).await;
        assert!(
            r.status.as_u16() == 400,
            "{what}: expected 400:\n{}",
            r.describe()
        );
        r.expect_error_in(400, codes);
    }
    reg.get_manifest(repo, "bad", None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    assert!(reg.tags(repo).await.is_empty());
}

#[tokio::test]
async fn digest_reference_must_match_the_body() {
    let (_srv, reg) = start();
    let repo = "man/digest-ref";
    let img = Image::random(1, 64);
    for b in img.blobs() {
        reg.push_blob(repo, b).await;
    }
    // The "bad digest image": the body gained two spaces after its digest was taken.
    let mut spaced = img.manifest.clone();
    spaced.extend_from_slice(b"  ");
    reg.put_manifest(repo, &img.digest, mt::OCI_MANIFEST, &spaced)
        .await
        .expect_error(400, "DIGEST_INVALID");
    reg.get_manifest(repo, &img.digest, None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get_manifest(repo, &sha256(&spaced), None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A well-formed digest of other content.
    reg.put_manifest(repo, &sha256(b"other"), mt::OCI_MANIFEST, &img.manifest)
        .await
        .expect_error(400, "DIGEST_INVALID");
    // A malformed digest as the reference.
    reg.put_manifest(
        repo,
        "sha256:baddigeststring",
        mt::OCI_MANIFEST,
        &img.manifest,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    let r = reg.get_manifest(repo, "sha256:baddigeststring", None).await;
    if r.status.as_u16() == 400 {
        r.expect_error(400, "DIGEST_INVALID");
    } else {
        r.expect_error(404, "MANIFEST_UNKNOWN");
    }
    // The conformance suite's error-code probe: bad reference and bad body.
    let r = reg
        .put_manifest(repo, "sha256:totallywrong", mt::OCI_MANIFEST, b"blablabla")
        .await;
    r.expect_error_in(400, &["DIGEST_INVALID", "MANIFEST_INVALID"]);
}

#[tokio::test]
async fn unknown_manifests_are_404_manifest_unknown() {
    let (_srv, reg) = start();
    let repo = "man/unknown";
    reg.push_image(repo, "present", &Image::random(1, 32)).await;
    let random_digest = sha256(&random_bytes(1024));
    for reference in [
        "missing-tag",
        random_digest.as_str(),
        ".INVALID_MANIFEST_NAME",
    ] {
        reg.get_manifest(repo, reference, Some(mt::OCI_MANIFEST))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        let h = reg
            .head_manifest(repo, reference, Some(mt::OCI_MANIFEST))
            .await;
        h.expect(404);
        assert!(h.body.is_empty());
    }
    // In a repository that was never pushed to.
    reg.get_manifest("man/never", "latest", None)
        .await
        .expect_error_in(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    reg.head_manifest("man/never", "latest", None)
        .await
        .expect(404);
}

#[tokio::test]
async fn invalid_tags_are_refused_on_push() {
    let (_srv, reg) = start();
    let repo = "man/bad-tags";
    let img = Image::random(1, 32);
    for b in img.blobs() {
        reg.push_blob(repo, b).await;
    }
    let long = "a".repeat(129);
    for tag in [".hidden", "-dash", long.as_str()] {
        let r = reg
            .put_manifest(repo, tag, mt::OCI_MANIFEST, &img.manifest)
            .await;
        r.expect_error_in(400, &["TAG_INVALID", "MANIFEST_INVALID", "NAME_INVALID"]);
    }
    // The longest valid tag works.
    let ok = "_".to_string() + &"a".repeat(127);
    reg.push_manifest(repo, &ok, mt::OCI_MANIFEST, &img.manifest)
        .await;
    assert_eq!(reg.tags(repo).await, [ok]);
}

// ---------------------------------------------------------------------------------
// Size limit

/// An image manifest padded with an annotation to exactly `size` bytes.
fn padded_manifest(config: &[u8], size: usize) -> Vec<u8> {
    let build = |pad: usize| {
        let mut m = oci_manifest(desc(mt::OCI_CONFIG, config), vec![]);
        m["annotations"] = json!({"pad": "A".repeat(pad)});
        to_bytes(&m)
    };
    let base = build(0).len();
    assert!(size >= base);
    let body = build(size - base);
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn manifest_size_limit_is_4_mib() {
    let (srv, reg) = start();
    let repo = "man/large";
    let config = oci::config_blob();
    reg.push_blob(repo, &config).await;

    // The conformance suite's "large manifest": 390 annotations of 10,000 bytes.
    let mut m = oci_manifest(desc(mt::OCI_CONFIG, &config), vec![]);
    let mut ann = serde_json::Map::new();
    for i in 0..390 {
        ann.insert(
            format!("large-annotation-{i}"),
            Value::String("A".repeat(10000)),
        );
    }
    m["annotations"] = Value::Object(ann);
    let large = to_bytes(&m);
    assert!(large.len() < 4 * 1024 * 1024);
    let d = reg
        .push_manifest(repo, "large-manifest", mt::OCI_MANIFEST, &large)
        .await;
    let g = reg.get_manifest(repo, &d, Some(mt::OCI_MANIFEST)).await;
    assert_manifest(&g, &large, mt::OCI_MANIFEST, &d, false);

    // Exactly 4 MiB is accepted.
    let exact = padded_manifest(&config, 4 * 1024 * 1024);
    reg.push_manifest(repo, "exactly-4mib", mt::OCI_MANIFEST, &exact)
        .await;

    // One byte more is refused with 413 and an error body, also when the body is
    // streamed without a Content-Length.
    let over = padded_manifest(&config, 4 * 1024 * 1024 + 1);
    let big = padded_manifest(&config, 6 * 1024 * 1024);
    for (what, body, streamed) in [
        ("4 MiB + 1 byte", &over, false),
        ("6 MiB", &big, false),
        ("6 MiB, chunked transfer encoding", &big, true),
    ] {
        // A raw client that reads while it writes: the server may answer before it
        // has read the body.
        let r = oci::raw_http(
            &srv.host,
            "PUT",
            &format!("/v2/{repo}/manifests/too-large"),
            &[("Content-Type", mt::OCI_MANIFEST)],
            body,
            streamed,
        )
        .await
        .unwrap_or_else(|e| panic!("PUT of a {what} manifest: {e}"));
        assert_eq!(r.status, 413, "{what}: {}", r.describe());
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{what}: {}",
            r.describe()
        );
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {}", r.describe()));
        assert_eq!(
            v["errors"][0]["code"],
            "SIZE_INVALID",
            "{what}: {}",
            r.describe()
        );
        assert!(
            v["errors"][0]["message"].is_string(),
            "{what}: {}",
            r.describe()
        );
    }
    reg.get_manifest(repo, "too-large", None)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}
