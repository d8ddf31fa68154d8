//! OCI distribution-spec conformance, content discovery: tags list with `n`/`last`
//! pagination and `Link: <...>; rel="next"`, `_catalog` pagination, and the referrers
//! API (`GET /v2/<name>/referrers/<digest>`, `artifactType` filtering with
//! `OCI-Filters-Applied`, empty lists for unknown subjects and repositories).
//!
//! Each test starts its own `wharf serve` on a fresh data directory.

mod common;
mod oci;

use oci::{
    desc, mt, next_link, oci_index, oci_manifest, random_bytes, sha256, tags_of, to_bytes, Image,
    Reg,
};
use serde_json::{json, Value};

fn start() -> (common::Server, Reg) {
    let srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    (srv, reg)
}

/// Follows `Link: rel="next"` from `first`, asserting each page has at most `n` items
/// (read by `items`), and returns all items in order plus the number of pages.
async fn follow_pages(
    reg: &Reg,
    first: &str,
    n: usize,
    items: fn(&oci::Resp) -> Vec<String>,
) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut url = reg.url(first);
    loop {
        let r = reg.send(reg.req(reqwest::Method::GET, url.clone())).await;
        r.expect(200);
        pages += 1;
        assert!(pages < 100, "pagination does not end:\n{}", r.describe());
        let page = items(&r);
        assert!(page.len() <= n, "page larger than n={n}:\n{}", r.describe());
        all.extend(page.iter().cloned());
        match next_link(&r) {
            Some(link) => {
                assert_eq!(
                    page.len(),
                    n,
                    "a page with a next Link must be full:\n{}",
                    r.describe()
                );
                url = reg.resolve(&link);
            }
            None => break,
        }
    }
    (all, pages)
}

fn repositories_of(r: &oci::Resp) -> Vec<String> {
    let v = r.json();
    match &v["repositories"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|t| t.as_str().expect("repository is a string").to_string())
            .collect(),
        _ => panic!("repositories is not an array:\n{}", r.describe()),
    }
}

// ---------------------------------------------------------------------------------
// Tags

#[tokio::test]
async fn tags_list_and_pagination() {
    let (_srv, reg) = start();
    let repo = "disc/tags";
    let img = Image::random(1, 64);
    for b in img.blobs() {
        reg.push_blob(repo, b).await;
    }
    // Pushed out of order; listed in lexical order.
    let mut expected: Vec<String> = (0..10).map(|i| format!("tag-{i:02}")).collect();
    for i in [7, 2, 9, 0, 5, 1, 8, 3, 6, 4] {
        reg.push_manifest(repo, &expected[i], mt::OCI_MANIFEST, &img.manifest)
            .await;
    }
    expected.sort();

    let r = reg.get(&format!("/v2/{repo}/tags/list")).await;
    r.expect(200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "tags list is JSON:\n{}",
        r.describe()
    );
    assert_eq!(r.json()["name"], repo, "{}", r.describe());
    assert_eq!(tags_of(&r), expected);
    r.assert_no_header("link");

    // n limits, Link points to the rest.
    let r = reg.get(&format!("/v2/{repo}/tags/list?n=4")).await;
    r.expect(200);
    assert_eq!(tags_of(&r), expected[..4]);
    let link =
        next_link(&r).unwrap_or_else(|| panic!("missing Link rel=\"next\":\n{}", r.describe()));
    let next = reg.resolve(&link);
    assert_eq!(
        next.path(),
        format!("/v2/{repo}/tags/list"),
        "Link must point to the tags list:\n{}",
        r.describe()
    );
    let (all, pages) = follow_pages(&reg, &format!("/v2/{repo}/tags/list?n=4"), 4, tags_of).await;
    assert_eq!(all, expected);
    assert_eq!(pages, 3);

    // n = 0: empty, no Link.
    let r = reg.get(&format!("/v2/{repo}/tags/list?n=0")).await;
    r.expect(200);
    assert!(tags_of(&r).is_empty(), "{}", r.describe());
    r.assert_no_header("link");

    // last without n: everything after it.
    let r = reg.get(&format!("/v2/{repo}/tags/list?last=tag-04")).await;
    r.expect(200);
    assert_eq!(tags_of(&r), expected[5..]);
    r.assert_no_header("link");

    // last with n (the conformance suite's n = half, last = the half's last tag).
    let r = reg.get(&format!("/v2/{repo}/tags/list?n=5")).await;
    let first_half = tags_of(&r);
    assert_eq!(first_half, expected[..5]);
    let r = reg
        .get(&format!("/v2/{repo}/tags/list?n=5&last={}", first_half[4]))
        .await;
    r.expect(200);
    assert_eq!(tags_of(&r), expected[5..]);
    let r = reg
        .get(&format!("/v2/{repo}/tags/list?n=3&last=tag-04"))
        .await;
    r.expect(200);
    assert_eq!(tags_of(&r), expected[5..8]);
    assert!(
        next_link(&r).is_some(),
        "more tags remain:\n{}",
        r.describe()
    );

    // n larger than the list, last past the end.
    let r = reg.get(&format!("/v2/{repo}/tags/list?n=1000")).await;
    assert_eq!(tags_of(&r), expected);
    r.assert_no_header("link");
    let r = reg.get(&format!("/v2/{repo}/tags/list?last=zzz")).await;
    r.expect(200);
    assert!(tags_of(&r).is_empty());

    // Every listed tag resolves.
    for t in &expected {
        let g = reg.get_manifest(repo, t, Some(mt::OCI_MANIFEST)).await;
        g.expect(200);
        g.assert_header("docker-content-digest", &img.digest);
    }
}

#[tokio::test]
async fn tags_list_of_repository_without_tags_and_of_unknown_repository() {
    let (_srv, reg) = start();
    reg.push_blob("disc/untagged", b"only a blob").await;
    let img = Image::random(1, 16);
    reg.push_image("disc/untagged", &img.digest, &img).await;
    let r = reg.get("/v2/disc/untagged/tags/list").await;
    r.expect(200);
    assert_eq!(r.json()["name"], "disc/untagged");
    assert!(tags_of(&r).is_empty(), "{}", r.describe());
    reg.get("/v2/disc/nothing-here/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

// ---------------------------------------------------------------------------------
// Catalog

#[tokio::test]
async fn catalog_lists_repositories_with_pagination() {
    let (_srv, reg) = start();
    let mut repos = vec![
        "cat/a".to_string(),
        "cat/b".to_string(),
        "cat/c/d".to_string(),
        "cat-e".to_string(),
        "zeta".to_string(),
    ];
    for r in &repos[..4] {
        reg.push_blob(r, r.as_bytes()).await;
    }
    // A repository created by a manifest push (and its blobs).
    reg.push_image("zeta", "latest", &Image::random(1, 8)).await;
    repos.sort();

    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{}",
        r.describe()
    );
    assert_eq!(repositories_of(&r), repos);
    r.assert_no_header("link");

    let r = reg.get("/v2/_catalog?n=2").await;
    r.expect(200);
    assert_eq!(repositories_of(&r), repos[..2]);
    let link = next_link(&r).unwrap_or_else(|| panic!("missing Link:\n{}", r.describe()));
    assert_eq!(reg.resolve(&link).path(), "/v2/_catalog");
    let (all, pages) = follow_pages(&reg, "/v2/_catalog?n=2", 2, repositories_of).await;
    assert_eq!(all, repos);
    assert_eq!(pages, 3);

    let r = reg.get(&format!("/v2/_catalog?last={}", repos[1])).await;
    r.expect(200);
    assert_eq!(repositories_of(&r), repos[2..]);
    let r = reg.get("/v2/_catalog?n=0").await;
    r.expect(200);
    assert!(repositories_of(&r).is_empty());
    r.assert_no_header("link");
}

#[tokio::test]
async fn catalog_of_empty_registry() {
    let (_srv, reg) = start();
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert!(repositories_of(&r).is_empty(), "{}", r.describe());
}

// ---------------------------------------------------------------------------------
// Referrers

/// Asserts a referrers response: 200, index Content-Type, a valid index body. Returns
/// its `manifests`.
#[track_caller]
fn referrers_of(r: &oci::Resp) -> Vec<Value> {
    r.expect(200);
    r.assert_header("content-type", mt::OCI_INDEX);
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2, "{}", r.describe());
    assert_eq!(v["mediaType"], mt::OCI_INDEX, "{}", r.describe());
    v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests must be an array:\n{}", r.describe()))
        .clone()
}

/// The referrer entry a manifest should produce.
struct Expected {
    digest: String,
    size: usize,
    media_type: &'static str,
    artifact_type: Option<&'static str>,
    annotations: Value,
}

#[track_caller]
fn assert_entries(r: &oci::Resp, entries: &[Value], expected: &[&Expected]) {
    assert_eq!(
        entries.len(),
        expected.len(),
        "referrer count:\n{}",
        r.describe()
    );
    for e in expected {
        let got = entries
            .iter()
            .find(|m| m["digest"] == e.digest.as_str())
            .unwrap_or_else(|| panic!("referrer {} missing:\n{}", e.digest, r.describe()));
        assert_eq!(got["mediaType"], e.media_type, "{}", r.describe());
        assert_eq!(got["size"], e.size, "{}", r.describe());
        match e.artifact_type {
            Some(at) => assert_eq!(got["artifactType"], at, "{}", r.describe()),
            None => assert!(
                got["artifactType"].is_null() || got["artifactType"] == "",
                "no artifactType expected:\n{}",
                r.describe()
            ),
        }
        if let Some(want) = e.annotations.as_object() {
            for (k, v) in want {
                assert_eq!(
                    &got["annotations"][k],
                    v,
                    "annotation {k}:\n{}",
                    r.describe()
                );
            }
        }
    }
}

#[tokio::test]
async fn referrers_list_and_artifact_type_filter() {
    let (_srv, reg) = start();
    let repo = "disc/referrers";
    let subject = Image::random(1, 256);
    reg.push_image(repo, "image", &subject).await;
    reg.push_blob(repo, b"{}").await;
    let sd = &subject.digest;

    // (1) artifactType field, empty config, pushed by digest.
    let layer_a = random_bytes(100);
    reg.push_blob(repo, &layer_a).await;
    let mut m1 = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::ART_A, &layer_a)]);
    m1["artifactType"] = json!(mt::ART_A);
    m1["subject"] = subject.descriptor();
    m1["annotations"] =
        json!({"org.opencontainers.conformance": "hello conformance test", "org.example.one": "1"});
    let b1 = to_bytes(&m1);
    let r = reg
        .put_manifest(repo, &sha256(&b1), mt::OCI_MANIFEST, &b1)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", sd);

    // (2) config media type as the artifact type, pushed by tag.
    let cfg2 = random_bytes(40);
    reg.push_blob(repo, &cfg2).await;
    let mut m2 = oci_manifest(desc(mt::ART_B, &cfg2), vec![]);
    m2["subject"] = subject.descriptor();
    m2["annotations"] = json!({"org.example.two": "2"});
    let b2 = to_bytes(&m2);
    let r = reg
        .put_manifest(repo, "tagged-artifact", mt::OCI_MANIFEST, &b2)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", sd);

    // (3) a second ART_A artifact, octet-stream layer.
    let layer_c = random_bytes(77);
    reg.push_blob(repo, &layer_c).await;
    let mut m3 = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::OCTET, &layer_c)]);
    m3["artifactType"] = json!(mt::ART_A);
    m3["subject"] = subject.descriptor();
    let b3 = to_bytes(&m3);
    reg.put_manifest(repo, &sha256(&b3), mt::OCI_MANIFEST, &b3)
        .await
        .expect(201);

    // (4) an index referrer with an artifactType.
    let mut i4 = oci_index(vec![]);
    i4["artifactType"] = json!(mt::ART_B);
    i4["subject"] = subject.descriptor();
    i4["annotations"] = json!({"org.example.four": "4"});
    let b4 = to_bytes(&i4);
    reg.put_manifest(repo, &sha256(&b4), mt::OCI_INDEX, &b4)
        .await
        .expect(201);

    // (5) an index referrer without an artifactType.
    let mut i5 = oci_index(vec![]);
    i5["subject"] = subject.descriptor();
    let b5 = to_bytes(&i5);
    reg.put_manifest(repo, &sha256(&b5), mt::OCI_INDEX, &b5)
        .await
        .expect(201);

    // Not a referrer: same repository, no subject.
    reg.push_image(repo, "other", &Image::random(1, 10)).await;

    let e1 = Expected {
        digest: sha256(&b1),
        size: b1.len(),
        media_type: mt::OCI_MANIFEST,
        artifact_type: Some(mt::ART_A),
        annotations: m1["annotations"].clone(),
    };
    let e2 = Expected {
        digest: sha256(&b2),
        size: b2.len(),
        media_type: mt::OCI_MANIFEST,
        artifact_type: Some(mt::ART_B),
        annotations: m2["annotations"].clone(),
    };
    let e3 = Expected {
        digest: sha256(&b3),
        size: b3.len(),
        media_type: mt::OCI_MANIFEST,
        artifact_type: Some(mt::ART_A),
        annotations: Value::Null,
    };
    let e4 = Expected {
        digest: sha256(&b4),
        size: b4.len(),
        media_type: mt::OCI_INDEX,
        artifact_type: Some(mt::ART_B),
        annotations: i4["annotations"].clone(),
    };
    let e5 = Expected {
        digest: sha256(&b5),
        size: b5.len(),
        media_type: mt::OCI_INDEX,
        artifact_type: None,
        annotations: Value::Null,
    };

    let path = format!("/v2/{repo}/referrers/{sd}");
    let r = reg.get(&path).await;
    let entries = referrers_of(&r);
    assert_entries(&r, &entries, &[&e1, &e2, &e3, &e4, &e5]);
    r.assert_no_header("oci-filters-applied");

    let r = reg.get(&format!("{path}?artifactType={}", mt::ART_A)).await;
    let entries = referrers_of(&r);
    r.assert_header("oci-filters-applied", "artifactType");
    assert_entries(&r, &entries, &[&e1, &e3]);

    let r = reg.get(&format!("{path}?artifactType={}", mt::ART_B)).await;
    let entries = referrers_of(&r);
    r.assert_header("oci-filters-applied", "artifactType");
    assert_entries(&r, &entries, &[&e2, &e4]);

    let r = reg
        .get(&format!("{path}?artifactType=application/vnd.example.none"))
        .await;
    let entries = referrers_of(&r);
    r.assert_header("oci-filters-applied", "artifactType");
    assert!(entries.is_empty(), "{}", r.describe());

    // Deleting a referrer removes it from the list.
    reg.delete(&format!("/v2/{repo}/manifests/{}", e3.digest))
        .await
        .expect(202);
    let r = reg.get(&path).await;
    let entries = referrers_of(&r);
    assert_entries(&r, &entries, &[&e1, &e2, &e4, &e5]);
}

#[tokio::test]
async fn referrers_of_unknown_subject_and_unknown_repository_are_empty() {
    let (_srv, reg) = start();
    let repo = "disc/ref-empty";
    reg.push_image(repo, "x", &Image::random(1, 10)).await;
    let dummy = sha256(b"hello world");
    let r = reg.get(&format!("/v2/{repo}/referrers/{dummy}")).await;
    assert!(referrers_of(&r).is_empty(), "{}", r.describe());
    // With a filter too.
    let r = reg
        .get(&format!(
            "/v2/{repo}/referrers/{dummy}?artifactType={}",
            mt::ART_A
        ))
        .await;
    assert!(referrers_of(&r).is_empty(), "{}", r.describe());
    // A malformed digest is a 400 (the spec's rule for invalid referrers requests).
    reg.get(&format!("/v2/{repo}/referrers/sha256:nope"))
        .await
        .expect_error(400, "DIGEST_INVALID");
    // A repository that does not exist: the conformance suite asks before any push and
    // expects an empty index; the spec says a registry supporting referrers MUST NOT
    // answer 404 (clients take a 404 as "no referrers API" and fall back to tags).
    let r = reg
        .get(&format!(
            "/v2/disc/no-such-repo/referrers/{}",
            sha256(&random_bytes(32))
        ))
        .await;
    assert!(referrers_of(&r).is_empty(), "{}", r.describe());
}

#[tokio::test]
async fn referrers_with_missing_subject_and_repository_scope() {
    let (_srv, reg) = start();
    let repo = "disc/ref-missing";
    reg.push_blob(repo, b"{}").await;
    let layer = random_bytes(64);
    reg.push_blob(repo, &layer).await;
    let missing = sha256(b"missing content");
    let mut m = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::ART_A, &layer)]);
    m["artifactType"] = json!(mt::ART_A);
    m["subject"] = json!({"mediaType": mt::OCI_MANIFEST, "digest": missing, "size": 123});
    m["annotations"] = json!({"org.opencontainers.conformance": "hello conformance test"});
    let body = to_bytes(&m);
    let r = reg
        .put_manifest(repo, "tagged-artifact", mt::OCI_MANIFEST, &body)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &missing);
    let r = reg.get(&format!("/v2/{repo}/referrers/{missing}")).await;
    let entries = referrers_of(&r);
    assert_entries(
        &r,
        &entries,
        &[&Expected {
            digest: sha256(&body),
            size: body.len(),
            media_type: mt::OCI_MANIFEST,
            artifact_type: Some(mt::ART_A),
            annotations: m["annotations"].clone(),
        }],
    );
    // Another repository sees no referrers for that subject.
    reg.push_blob("disc/ref-elsewhere", b"exists").await;
    let r = reg
        .get(&format!("/v2/disc/ref-elsewhere/referrers/{missing}"))
        .await;
    assert!(referrers_of(&r).is_empty(), "{}", r.describe());
    // Pushing the subject later keeps the referrer.
    let subject_config = oci::config_blob();
    reg.push_blob(repo, &subject_config).await;
    let r = reg.get(&format!("/v2/{repo}/referrers/{missing}")).await;
    assert_eq!(referrers_of(&r).len(), 1);
}

#[tokio::test]
async fn referrers_of_an_index_subject() {
    let (_srv, reg) = start();
    let repo = "disc/ref-index";
    let img = Image::random(1, 32);
    reg.push_image(repo, &img.digest, &img).await;
    let mut child = img.descriptor();
    child["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let index = to_bytes(&oci_index(vec![child]));
    let idx = reg
        .push_manifest(repo, "index", mt::OCI_INDEX, &index)
        .await;
    reg.push_blob(repo, b"{}").await;
    let mut sig = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![desc(mt::OCI_EMPTY, b"{}")]);
    sig["artifactType"] = json!("application/vnd.example.signature");
    sig["subject"] = json!({"mediaType": mt::OCI_INDEX, "digest": idx, "size": index.len()});
    let body = to_bytes(&sig);
    let r = reg
        .put_manifest(repo, &sha256(&body), mt::OCI_MANIFEST, &body)
        .await;
    r.expect(201);
    r.assert_header("oci-subject", &idx);
    let r = reg.get(&format!("/v2/{repo}/referrers/{idx}")).await;
    let entries = referrers_of(&r);
    assert_eq!(entries.len(), 1, "{}", r.describe());
    assert_eq!(entries[0]["digest"], sha256(&body));
    assert_eq!(
        entries[0]["artifactType"],
        "application/vnd.example.signature"
    );
    // The child image has no referrers.
    let r = reg
        .get(&format!("/v2/{repo}/referrers/{}", img.digest))
        .await;
    assert!(referrers_of(&r).is_empty());
}

#[tokio::test]
async fn referrers_filter_with_plus_in_the_artifact_type() {
    let (_srv, reg) = start();
    let repo = "disc/ref-plus";
    reg.push_blob(repo, b"{}").await;
    let subject = sha256(b"a subject");
    let mut bodies = Vec::new();
    for at in [
        "application/vnd.example.sbom+json",
        "application/vnd.example.sbom json",
    ] {
        let mut m = oci_manifest(desc(mt::OCI_EMPTY, b"{}"), vec![]);
        m["artifactType"] = json!(at);
        m["subject"] = json!({"mediaType": mt::OCI_MANIFEST, "digest": subject, "size": 1});
        let b = to_bytes(&m);
        reg.put_manifest(repo, &sha256(&b), mt::OCI_MANIFEST, &b)
            .await
            .expect(201);
        bodies.push(b);
    }
    // `+` must be sent percent-encoded (%2B); it must not be confused with a space.
    let url = Reg::with_query(
        &reg.url(&format!("/v2/{repo}/referrers/{subject}")),
        "artifactType",
        "application/vnd.example.sbom+json",
    );
    let r = reg.send(reg.req(reqwest::Method::GET, url)).await;
    let entries = referrers_of(&r);
    r.assert_header("oci-filters-applied", "artifactType");
    assert_eq!(entries.len(), 1, "{}", r.describe());
    assert_eq!(entries[0]["digest"], sha256(&bodies[0]));
}
