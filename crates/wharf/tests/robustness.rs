//! Edge cases around the spec: repository names that contain the API's own path words,
//! concurrent pushes of the same blob and the same tag, racing chunks on one upload
//! session, large blobs, and odd query parameters. None of them may produce a 500 or a
//! corrupt blob.
//!
//! Each test starts its own `wharf serve` on a fresh data directory.

mod common;
mod oci;

use bytes::Bytes;
use oci::{mt, next_link, random_bytes, sha256, tags_of, Image, Reg};
use reqwest::Method;

fn start() -> (common::Server, Reg) {
    let srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    (srv, reg)
}

#[tokio::test]
async fn repository_names_containing_api_path_words() {
    let (_srv, reg) = start();
    let names = [
        "ns/blobs",
        "blobs/uploads",
        "ns/manifests",
        "manifests/x",
        "ns/tags",
        "tags/list",
        "ns/referrers",
        "v2/app",
        "ns/blobs/uploads/manifests/tags/list",
    ];
    for name in names {
        let img = Image::random(1, 100);
        reg.push_image(name, "latest", &img).await;
        let g = reg
            .get_manifest(name, "latest", Some(mt::OCI_MANIFEST))
            .await;
        g.expect(200);
        assert!(g.body == img.manifest, "{name}: {}", g.describe());
        for b in img.blobs() {
            reg.assert_blob(name, b).await;
        }
        assert_eq!(reg.tags(name).await, ["latest"], "{name}");
        // Chunked upload into such a repository.
        let (_, loc) = reg.start_upload(name).await;
        assert!(
            loc.path()
                .starts_with(&format!("/v2/{name}/blobs/uploads/")),
            "{name}: {loc}"
        );
        let data = random_bytes(1000);
        let p = reg
            .send(
                reg.req(Method::PATCH, loc)
                    .header("content-range", "0-999")
                    .header("content-type", mt::OCTET)
                    .body(data.clone()),
            )
            .await;
        p.expect(202);
        let loc = reg.resolve(&p.must_header("location"));
        reg.send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &sha256(&data)))
                .body(Vec::<u8>::new()),
        )
        .await
        .expect(201);
        reg.assert_blob(name, &data).await;
        let r = reg
            .get(&format!("/v2/{name}/referrers/{}", img.digest))
            .await;
        r.expect(200);
        reg.delete(&format!("/v2/{name}/manifests/latest"))
            .await
            .expect(202);
    }
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    let mut listed: Vec<String> = r.json()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
}

#[tokio::test]
async fn longest_repository_name_is_256_characters() {
    let (_srv, reg) = start();
    let ok = format!("{}/{}", "a".repeat(127), "b".repeat(128));
    assert_eq!(ok.len(), 256);
    reg.push_image(&ok, "v1", &Image::random(1, 10)).await;
    assert_eq!(reg.tags(&ok).await, ["v1"]);
    let too_long = format!("{ok}c");
    reg.send(
        reg.at(Method::POST, &format!("/v2/{too_long}/blobs/uploads/"))
            .body(Vec::<u8>::new()),
    )
    .await
    .expect_error(400, "NAME_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_of_the_same_blob() {
    let (_srv, reg) = start();
    let data = Bytes::from(random_bytes(3 * 1024 * 1024 + 11));
    let d = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (reg, data, d) = (reg.clone(), data.clone(), d.clone());
        // Half into one repository, half into their own.
        let repo = if i % 2 == 0 {
            "race/shared".to_string()
        } else {
            format!("race/own-{i}")
        };
        tasks.push(tokio::spawn(async move {
            let (_, loc) = reg.start_upload(&repo).await;
            let r = if i % 3 == 0 {
                // chunked
                let mut loc = loc;
                let mut off = 0;
                for c in data.chunks(1024 * 1024) {
                    let p = reg
                        .send(
                            reg.req(Method::PATCH, loc.clone())
                                .header("content-range", format!("{}-{}", off, off + c.len() - 1))
                                .header("content-type", mt::OCTET)
                                .body(c.to_vec()),
                        )
                        .await;
                    p.expect(202);
                    loc = reg.resolve(&p.must_header("location"));
                    off += c.len();
                }
                reg.send(
                    reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                        .body(Vec::<u8>::new()),
                )
                .await
            } else {
                reg.send(
                    reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                        .header("content-type", mt::OCTET)
                        .body(data.to_vec()),
                )
                .await
            };
            r.expect(201);
            r.assert_header("docker-content-digest", &d);
            repo
        }));
    }
    for t in tasks {
        let repo = t.await.unwrap();
        reg.assert_blob(&repo, &data).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_to_the_same_tag() {
    let (_srv, reg) = start();
    let repo = "race/tag";
    let images: Vec<Image> = (0..8).map(|_| Image::random(1, 4096)).collect();
    for img in &images {
        for b in img.blobs() {
            reg.push_blob(repo, b).await;
        }
    }
    let mut tasks = Vec::new();
    for img in images.clone() {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            let r = reg
                .put_manifest(repo, "latest", mt::OCI_MANIFEST, &img.manifest)
                .await;
            r.expect(201);
            r.assert_header("docker-content-digest", &img.digest);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let g = reg
        .get_manifest(repo, "latest", Some(mt::OCI_MANIFEST))
        .await;
    g.expect(200);
    let winner = images
        .iter()
        .find(|i| i.manifest[..] == g.body[..])
        .unwrap_or_else(|| {
            panic!(
                "the tag serves none of the pushed manifests:\n{}",
                g.describe()
            )
        });
    g.assert_header("docker-content-digest", &winner.digest);
    assert_eq!(reg.tags(repo).await, ["latest"]);
    for img in &images {
        reg.get_manifest(repo, &img.digest, Some(mt::OCI_MANIFEST))
            .await
            .expect(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_chunks_on_one_session_do_not_corrupt_it() {
    let (_srv, reg) = start();
    let repo = "race/session";
    for round in 0..5 {
        let (_, loc) = reg.start_upload(repo).await;
        let a = Bytes::from(random_bytes(2 * 1024 * 1024));
        let b = Bytes::from(random_bytes(2 * 1024 * 1024));
        let send = |data: Bytes| {
            let (reg, loc) = (reg.clone(), loc.clone());
            tokio::spawn(async move {
                reg.send(
                    reg.req(Method::PATCH, loc)
                        .header("content-range", format!("0-{}", data.len() - 1))
                        .header("content-type", mt::OCTET)
                        .body(data.to_vec()),
                )
                .await
            })
        };
        let (ta, tb) = (send(a.clone()), send(b.clone()));
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let ok: Vec<&oci::Resp> = [&ra, &rb].into_iter().filter(|r| r.status == 202).collect();
        assert_eq!(
            ok.len(),
            1,
            "round {round}: exactly one of two chunks claiming bytes 0.. may be accepted:\n{}\n{}",
            ra.describe(),
            rb.describe()
        );
        let loser = if ra.status == 202 { &rb } else { &ra };
        assert!(
            loser.status == 416 || loser.status == 409,
            "round {round}: the other chunk must be refused (416):\n{}",
            loser.describe()
        );
        let winner = if ra.status == 202 { &a } else { &b };
        let s = reg.send(reg.req(Method::GET, loc.clone())).await;
        s.expect(204);
        s.assert_header("range", &format!("0-{}", winner.len() - 1));
        let put = reg
            .send(
                reg.req(
                    Method::PUT,
                    Reg::with_query(&loc, "digest", &sha256(winner)),
                )
                .body(Vec::<u8>::new()),
            )
            .await;
        put.expect(201);
        reg.assert_blob(repo, winner).await;
    }
}

#[tokio::test]
async fn two_streamed_patches_append() {
    let (_srv, reg) = start();
    let repo = "edge/stream2";
    let a = random_bytes(5000);
    let b = random_bytes(7000);
    let (_, loc) = reg.start_upload(repo).await;
    let p = reg
        .send(
            reg.req(Method::PATCH, loc)
                .header("content-type", mt::OCTET)
                .body(a.clone()),
        )
        .await;
    p.expect(202);
    p.assert_header("range", "0-4999");
    let loc = reg.resolve(&p.must_header("location"));
    let p = reg
        .send(
            reg.req(Method::PATCH, loc)
                .header("content-type", mt::OCTET)
                .body(b.clone()),
        )
        .await;
    p.expect(202);
    p.assert_header("range", "0-11999");
    let loc = reg.resolve(&p.must_header("location"));
    let whole = [a, b].concat();
    reg.send(
        reg.req(
            Method::PUT,
            Reg::with_query(&loc, "digest", &sha256(&whole)),
        )
        .body(Vec::<u8>::new()),
    )
    .await
    .expect(201);
    reg.assert_blob(repo, &whole).await;
}

#[tokio::test]
async fn large_blob_monolithic_and_streamed() {
    let (_srv, reg) = start();
    let repo = "edge/large";
    let data = Bytes::from(random_bytes(48 * 1024 * 1024 + 3));
    let d = sha256(&data);
    reg.push_blob(repo, &data).await;
    let g = reg.get(&format!("/v2/{repo}/blobs/{d}")).await;
    g.expect(200);
    assert_eq!(g.body.len(), data.len());
    assert_eq!(sha256(&g.body), d);
    // Streamed with chunked transfer encoding into another repository.
    let (_, loc) = reg.start_upload("edge/large2").await;
    let parts: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(1024 * 1024 + 7)
        .map(|c| Ok(data.slice_ref(c)))
        .collect();
    let p = reg
        .send(
            reg.req(Method::PATCH, loc)
                .header("content-type", mt::OCTET)
                .body(reqwest::Body::wrap_stream(futures::stream::iter(parts))),
        )
        .await;
    p.expect(202);
    p.assert_header("range", &format!("0-{}", data.len() - 1));
    let loc = reg.resolve(&p.must_header("location"));
    reg.send(
        reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
            .body(Vec::<u8>::new()),
    )
    .await
    .expect(201);
    let r = reg
        .send(
            reg.at(Method::GET, &format!("/v2/edge/large2/blobs/{d}"))
                .header("range", format!("bytes={}-", data.len() - 100)),
        )
        .await;
    r.expect(206);
    assert!(r.body == data[data.len() - 100..]);
}

#[tokio::test]
async fn odd_parameters_never_cause_a_500() {
    let (_srv, reg) = start();
    let repo = "edge/params";
    let img = Image::random(1, 10);
    reg.push_image(repo, "a", &img).await;
    reg.push_manifest(repo, "b", mt::OCI_MANIFEST, &img.manifest)
        .await;
    for q in [
        "n=abc",
        "n=-1",
        "n=",
        "last=",
        "n=1&n=2",
        "n=99999999999999999999",
    ] {
        let r = reg.get(&format!("/v2/{repo}/tags/list?{q}")).await;
        assert!(
            r.status == 200 || r.status == 400,
            "tags/list?{q} must be 200 or 400:\n{}",
            r.describe()
        );
        if r.status == 200 {
            let _ = tags_of(&r);
            let _ = next_link(&r);
        }
        let r = reg.get(&format!("/v2/_catalog?{q}")).await;
        assert!(
            r.status == 200 || r.status == 400,
            "_catalog?{q} must be 200 or 400:\n{}",
            r.describe()
        );
    }
    // Mount parameters that make no sense.
    for q in [
        "mount=sha256:nope&from=edge/params".to_string(),
        format!("mount={}&from=Bad..Name", sha256(&img.config)),
        "mount=&from=".to_string(),
    ] {
        let r = reg
            .send(
                reg.at(Method::POST, &format!("/v2/edge/target/blobs/uploads/?{q}"))
                    .body(Vec::<u8>::new()),
            )
            .await;
        assert!(
            r.status == 202 || r.status == 400,
            "mount with ?{q} must be 202 (a session) or 400:\n{}",
            r.describe()
        );
    }
    // A manifest PUT whose Content-Type carries parameters, and one without any.
    let img2 = Image::random(1, 10);
    for b in img2.blobs() {
        reg.push_blob(repo, b).await;
    }
    reg.push_manifest(
        repo,
        "params",
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        &img2.manifest,
    )
    .await;
    let g = reg
        .get_manifest(repo, "params", Some(mt::OCI_MANIFEST))
        .await;
    g.expect(200);
    g.assert_header("content-type", mt::OCI_MANIFEST);
    let img3 = Image::random(1, 10);
    for b in img3.blobs() {
        reg.push_blob(repo, b).await;
    }
    let r = reg
        .send(
            reg.at(Method::PUT, &format!("/v2/{repo}/manifests/no-ct"))
                .body(img3.manifest.clone()),
        )
        .await;
    r.expect(201);
    let g = reg.get_manifest(repo, "no-ct", None).await;
    g.expect(200);
    g.assert_header("content-type", mt::OCI_MANIFEST);
    assert!(g.body == img3.manifest);
}

#[tokio::test]
async fn range_edge_cases() {
    let (_srv, reg) = start();
    let repo = "edge/range";
    let d = reg.push_blob(repo, b"").await;
    let r = reg
        .send(
            reg.at(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
                .header("range", "bytes=0-"),
        )
        .await;
    assert!(
        r.status == 416 || (r.status == 200 && r.body.is_empty()),
        "a range of an empty blob is unsatisfiable (416) or ignored (200):\n{}",
        r.describe()
    );
    let data = random_bytes(100);
    let d = reg.push_blob(repo, &data).await;
    let r = reg
        .send(
            reg.at(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
                .header("range", "bytes=-1000"),
        )
        .await;
    // A suffix longer than the blob is the whole blob.
    r.expect(206);
    assert!(r.body == data);
    r.assert_header("content-range", "bytes 0-99/100");
    let r = reg
        .send(
            reg.at(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
                .header("range", "bytes=99-99"),
        )
        .await;
    r.expect(206);
    assert!(r.body == data[99..]);
    // HEAD with a range: no body either way.
    let r = reg
        .send(
            reg.at(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"))
                .header("range", "bytes=0-9"),
        )
        .await;
    assert!(r.status == 200 || r.status == 206, "{}", r.describe());
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn mount_from_the_same_repository_and_repeated_single_post() {
    let (_srv, reg) = start();
    let repo = "edge/self";
    let data = random_bytes(321);
    let d = reg.push_blob(repo, &data).await;
    let r = reg
        .send(
            reg.at(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={repo}"),
            )
            .body(Vec::<u8>::new()),
        )
        .await;
    r.expect(201);
    r.assert_header("docker-content-digest", &d);
    for _ in 0..2 {
        let url = Reg::with_query(
            &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
            "digest",
            &d,
        );
        let r = reg
            .send(
                reg.req(Method::POST, url)
                    .header("content-type", mt::OCTET)
                    .body(data.clone()),
            )
            .await;
        r.expect(201);
        r.assert_header("docker-content-digest", &d);
    }
    reg.assert_blob(repo, &data).await;
}

#[tokio::test]
async fn closing_put_may_carry_the_last_bytes_without_content_range() {
    let (_srv, reg) = start();
    let repo = "edge/put-tail";
    let a = random_bytes(100);
    let b = random_bytes(50);
    let (_, loc) = reg.start_upload(repo).await;
    let p = reg
        .send(
            reg.req(Method::PATCH, loc)
                .header("content-range", "0-99")
                .header("content-type", mt::OCTET)
                .body(a.clone()),
        )
        .await;
    p.expect(202);
    let loc = reg.resolve(&p.must_header("location"));
    let whole = [a, b.clone()].concat();
    let d = sha256(&whole);
    let r = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .header("content-type", mt::OCTET)
                .body(b),
        )
        .await;
    r.expect(201);
    r.assert_header("docker-content-digest", &d);
    reg.assert_blob(repo, &whole).await;
}

#[tokio::test]
async fn single_post_with_chunked_transfer_encoding() {
    let (_srv, reg) = start();
    let repo = "edge/post-te";
    let data = random_bytes(300_000);
    let d = sha256(&data);
    let url = Reg::with_query(
        &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
        "digest",
        &d,
    );
    let parts: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(40_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = reg
        .send(
            reg.req(Method::POST, url)
                .header("content-type", mt::OCTET)
                .body(reqwest::Body::wrap_stream(futures::stream::iter(parts))),
        )
        .await;
    r.expect(201);
    r.assert_header("docker-content-digest", &d);
    reg.assert_blob(repo, &data).await;
}

#[tokio::test]
async fn tags_are_case_sensitive() {
    let (_srv, reg) = start();
    let repo = "edge/case";
    let a = Image::random(1, 10);
    let b = Image::random(1, 10);
    reg.push_image(repo, "Latest", &a).await;
    reg.push_image(repo, "latest", &b).await;
    let g = reg
        .get_manifest(repo, "Latest", Some(mt::OCI_MANIFEST))
        .await;
    g.assert_header("docker-content-digest", &a.digest);
    let g = reg
        .get_manifest(repo, "latest", Some(mt::OCI_MANIFEST))
        .await;
    g.assert_header("docker-content-digest", &b.digest);
    let mut tags = reg.tags(repo).await;
    tags.sort();
    assert_eq!(tags, ["Latest", "latest"]);
}
