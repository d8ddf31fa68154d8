//! OCI distribution-spec conformance, blob side: the base endpoint, blob pulls (full,
//! HEAD, ranges), every upload flavour (monolithic POST, POST+PUT, streamed PATCH,
//! chunked PATCH with Content-Range, final chunk in the PUT), upload status and cancel,
//! cross-repository mounts, bad digests, sha512, empty blobs, blob delete, and that
//! upload sessions survive a restart.
//!
//! Each test starts its own `wharf serve` on a fresh data directory.

mod common;
mod oci;

use bytes::Bytes;
use oci::{mt, random_bytes, sha256, sha512, Reg};
use reqwest::Method;
use wharf_oci::Algorithm;

fn start() -> (common::Server, Reg) {
    let srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    (srv, reg)
}

/// Asserts the headers every upload-session response (202/204) carries: a `Location`
/// inside `/v2/<repo>/blobs/uploads/` that contains the `Docker-Upload-UUID`.
#[track_caller]
fn assert_session_headers(reg: &Reg, r: &oci::Resp, repo: &str) -> reqwest::Url {
    let loc = reg.resolve(&r.must_header("location"));
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    assert!(
        loc.path().starts_with(&prefix) && loc.path().len() > prefix.len(),
        "upload Location must be {prefix}<id>:\n{}",
        r.describe()
    );
    let uuid = r.must_header("docker-upload-uuid");
    assert!(
        !uuid.is_empty(),
        "empty Docker-Upload-UUID:\n{}",
        r.describe()
    );
    assert!(
        loc.as_str().contains(&uuid),
        "upload Location must contain the session id {uuid}:\n{}",
        r.describe()
    );
    loc
}

/// Asserts a 201 blob-created response: Location `/v2/<repo>/blobs/<digest>` and
/// `Docker-Content-Digest: <digest>`.
#[track_caller]
fn assert_blob_created(reg: &Reg, r: &oci::Resp, repo: &str, digest: &str) {
    r.expect(201);
    r.assert_header("docker-content-digest", digest);
    let loc = reg.resolve(&r.must_header("location"));
    assert_eq!(
        loc.path(),
        format!("/v2/{repo}/blobs/{digest}"),
        "blob Location:\n{}",
        r.describe()
    );
}

/// `OCI-Chunk-Min-Length` of a POST response (0 when absent).
fn chunk_min(r: &oci::Resp) -> usize {
    r.header("oci-chunk-min-length")
        .map(|v| v.parse().expect("OCI-Chunk-Min-Length is a number"))
        .unwrap_or(0)
}

async fn patch_chunk(reg: &Reg, loc: &reqwest::Url, data: &[u8], start: usize) -> oci::Resp {
    reg.send(
        reg.req(Method::PATCH, loc.clone())
            .header("content-type", mt::OCTET)
            .header(
                "content-range",
                format!("{}-{}", start, start + data.len() - 1),
            )
            .body(data.to_vec()),
    )
    .await
}

// ---------------------------------------------------------------------------------
// Base endpoint

#[tokio::test]
async fn base_endpoint_answers_200_with_api_version() {
    let (_srv, reg) = start();
    let r = reg.get("/v2/").await;
    r.expect(200);
    r.assert_header("docker-distribution-api-version", "registry/2.0");
    let h = reg.head("/v2/").await;
    h.expect(200);
}

// ---------------------------------------------------------------------------------
// Pull blobs

#[tokio::test]
async fn blob_head_and_get_of_missing_blob_are_404() {
    let (_srv, reg) = start();
    let repo = "conf/pull";
    // Make the repository exist so the blob, not the name, is what is unknown.
    reg.push_blob(repo, b"something else").await;
    let dummy = sha256(b"hello world");
    reg.head(&format!("/v2/{repo}/blobs/{dummy}"))
        .await
        .expect(404);
    reg.get(&format!("/v2/{repo}/blobs/{dummy}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // A repository that was never pushed to: still a 404.
    reg.head(&format!("/v2/conf/never/blobs/{dummy}"))
        .await
        .expect(404);
    reg.get(&format!("/v2/conf/never/blobs/{dummy}"))
        .await
        .expect_error_in(404, &["NAME_UNKNOWN", "BLOB_UNKNOWN"]);
}

#[tokio::test]
async fn blob_head_and_get_of_existing_blob() {
    let (_srv, reg) = start();
    let repo = "conf/pull";
    let data = random_bytes(2048);
    let d = reg.push_blob(repo, &data).await;
    assert_eq!(d, sha256(&data));
    reg.assert_blob(repo, &data).await;
}

#[tokio::test]
async fn blob_range_reads() {
    let (_srv, reg) = start();
    let repo = "conf/range";
    let blob = random_bytes(2048);
    let d = reg.push_blob(repo, &blob).await;
    let path = format!("/v2/{repo}/blobs/{d}");
    let ok_cases: &[(&str, usize, usize)] = &[
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
        ("bytes=0-0", 0, 0),
        ("bytes=0-2047", 0, 2047),
    ];
    for &(range, first, last) in ok_cases {
        let r = reg
            .send(reg.at(Method::GET, &path).header("range", range))
            .await;
        r.expect(206);
        assert!(
            r.body == blob[first..=last],
            "{range}: wrong bytes:\n{}",
            r.describe()
        );
        r.assert_header("content-length", &(last - first + 1).to_string());
        let cr = r.must_header("content-range");
        assert!(
            cr == format!("bytes {first}-{last}/2048") || cr == format!("bytes {first}-{last}/*"),
            "{range}: Content-Range {cr:?}:\n{}",
            r.describe()
        );
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-"] {
        let r = reg
            .send(reg.at(Method::GET, &path).header("range", range))
            .await;
        r.expect(416);
    }
    // No Range: the whole blob.
    let r = reg.get(&path).await;
    r.expect(200);
    assert!(r.body == blob);
}

// ---------------------------------------------------------------------------------
// Monolithic uploads

#[tokio::test]
async fn monolithic_post_then_put_sha256() {
    let (_srv, reg) = start();
    let repo = "conf/mono";
    let data = oci::config_blob();
    let d = sha256(&data);
    let r = reg
        .send(
            reg.at(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .body(Vec::<u8>::new()),
        )
        .await;
    r.expect(202);
    let loc = assert_session_headers(&reg, &r, repo);
    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .header("content-type", mt::OCTET)
                .body(data.clone()),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    // The returned Location serves the blob.
    let g = reg
        .send(reg.req(Method::GET, reg.resolve(&put.must_header("location"))))
        .await;
    g.expect(200);
    assert!(g.body == data);
    reg.assert_blob(repo, &data).await;
    // The session is gone once completed.
    reg.send(reg.req(Method::GET, loc))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn monolithic_post_then_put_sha512() {
    let (_srv, reg) = start();
    let repo = "conf/mono512";
    let data = random_bytes(512);
    let d = sha512(&data);
    let (_, loc) = reg.start_upload(repo).await;
    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .header("content-type", mt::OCTET)
                .body(data.clone()),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    reg.assert_blob_digest(repo, &d, &data).await;
    // The same bytes are not known under their sha256 digest unless pushed so.
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256(&data)))
        .await
        .expect(404);
}

#[tokio::test]
async fn monolithic_single_post_with_digest() {
    let (_srv, reg) = start();
    let repo = "conf/single-post";
    for (alg, data) in [
        (Algorithm::Sha256, oci::config_blob()),
        (Algorithm::Sha512, random_bytes(700)),
    ] {
        let d = oci::digest_with(alg, &data);
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
        assert_blob_created(&reg, &r, repo, &d);
        reg.assert_blob_digest(repo, &d, &data).await;
    }
}

#[tokio::test]
async fn pushing_an_existing_blob_again_succeeds() {
    let (_srv, reg) = start();
    let repo = "conf/again";
    let data = random_bytes(333);
    reg.push_blob(repo, &data).await;
    reg.push_blob(repo, &data).await;
    reg.assert_blob(repo, &data).await;
}

#[tokio::test]
async fn empty_blob_and_empty_json_blob() {
    let (_srv, reg) = start();
    let repo = "conf/empty";
    let d = reg.push_blob(repo, b"").await;
    assert_eq!(d, oci::EMPTY_SHA256);
    reg.assert_blob(repo, b"").await;
    let d = reg.push_blob(repo, b"{}").await;
    assert_eq!(d, oci::EMPTY_JSON_SHA256);
    reg.assert_blob(repo, b"{}").await;
    // Single-POST of the empty blob too.
    let repo2 = "conf/empty2";
    let url = Reg::with_query(
        &reg.url(&format!("/v2/{repo2}/blobs/uploads/")),
        "digest",
        oci::EMPTY_SHA256,
    );
    let r = reg
        .send(
            reg.req(Method::POST, url)
                .header("content-type", mt::OCTET)
                .body(Vec::<u8>::new()),
        )
        .await;
    assert_blob_created(&reg, &r, repo2, oci::EMPTY_SHA256);
    reg.assert_blob(repo2, b"").await;
}

// ---------------------------------------------------------------------------------
// Streamed uploads

#[tokio::test]
async fn streamed_patch_then_put() {
    let (_srv, reg) = start();
    let repo = "conf/stream";
    let data = b"NBA Jam on my NBA toast".to_vec();
    let d = sha256(&data);
    let (_, loc) = reg.start_upload(repo).await;
    let p = reg
        .send(
            reg.req(Method::PATCH, loc.clone())
                .header("content-type", mt::OCTET)
                .body(data.clone()),
        )
        .await;
    p.expect(202);
    let loc2 = assert_session_headers(&reg, &p, repo);
    p.assert_header("range", &format!("0-{}", data.len() - 1));
    // Close with an empty PUT.
    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc2, "digest", &d))
                .header("content-type", mt::OCTET)
                .header("content-length", "0"),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    reg.assert_blob(repo, &data).await;
}

#[tokio::test]
async fn streamed_patch_with_chunked_transfer_encoding() {
    let (_srv, reg) = start();
    let repo = "conf/stream-te";
    let parts: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(64 * 1024 + i * 7)).collect();
    let whole: Vec<u8> = parts.concat();
    let d = sha512(&whole);
    let (_, loc) = reg.start_upload(repo).await;
    let stream = futures::stream::iter(
        parts
            .into_iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from(p))),
    );
    let p = reg
        .send(
            reg.req(Method::PATCH, loc)
                .header("content-type", mt::OCTET)
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    p.expect(202);
    let loc2 = assert_session_headers(&reg, &p, repo);
    p.assert_header("range", &format!("0-{}", whole.len() - 1));
    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc2, "digest", &d))
                .body(Vec::<u8>::new()),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    reg.assert_blob_digest(repo, &d, &whole).await;
}

// ---------------------------------------------------------------------------------
// Chunked uploads

#[tokio::test]
async fn chunked_upload_status_retry_and_close() {
    let (_srv, reg) = start();
    let repo = "conf/chunked";
    let (post, loc) = reg.start_upload(repo).await;
    assert_session_headers(&reg, &post, repo);
    let min = chunk_min(&post);
    let mut blob = b"Hello, how are you today?".to_vec();
    if min > 3 {
        blob = random_bytes(min * 2 - 2);
    }
    let split = min.max(3);
    let (c1, c2) = blob.split_at(split);
    let d = sha256(&blob);

    let p1 = patch_chunk(&reg, &loc, c1, 0).await;
    p1.expect(202);
    let loc1 = assert_session_headers(&reg, &p1, repo);
    p1.assert_header("range", &format!("0-{}", c1.len() - 1));

    // Sending the first chunk again is out of order.
    patch_chunk(&reg, &loc, c1, 0).await.expect(416);

    // The session is still there and reports what it holds.
    let s = reg.send(reg.req(Method::GET, loc.clone())).await;
    s.expect(204);
    let loc_s = assert_session_headers(&reg, &s, repo);
    s.assert_header("range", &format!("0-{}", c1.len() - 1));
    assert!(s.body.is_empty());

    let p2 = patch_chunk(&reg, &loc_s, c2, c1.len()).await;
    p2.expect(202);
    let loc2 = assert_session_headers(&reg, &p2, repo);
    p2.assert_header("range", &format!("0-{}", blob.len() - 1));
    let _ = loc1;

    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc2, "digest", &d))
                .header("content-type", mt::OCTET)
                .header("content-length", "0"),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    reg.assert_blob(repo, &blob).await;
}

#[tokio::test]
async fn chunked_out_of_order_first_chunk_is_416_and_session_recovers() {
    let (_srv, reg) = start();
    let repo = "conf/ooo";
    let (post, loc) = reg.start_upload(repo).await;
    let min = chunk_min(&post).max(3);
    let blob = random_bytes(min * 2 + 5);
    let (c1, c2) = blob.split_at(min);
    // Second chunk first.
    patch_chunk(&reg, &loc, c2, c1.len()).await.expect(416);
    // Nothing was taken: the status still shows an empty session.
    let s = reg.send(reg.req(Method::GET, loc.clone())).await;
    s.expect(204);
    let range = s.must_header("range");
    assert!(
        range.starts_with("0-"),
        "Range {range:?}:\n{}",
        s.describe()
    );
    let loc = assert_session_headers(&reg, &s, repo);
    // Recover: send the chunks in order.
    let p1 = patch_chunk(&reg, &loc, c1, 0).await;
    p1.expect(202);
    let loc = reg.resolve(&p1.must_header("location"));
    let p2 = patch_chunk(&reg, &loc, c2, c1.len()).await;
    p2.expect(202);
    let loc = reg.resolve(&p2.must_header("location"));
    // Skipping ahead is also out of order.
    patch_chunk(&reg, &loc, b"xyz", blob.len() + 10)
        .await
        .expect(416);
    let d = sha256(&blob);
    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .body(Vec::<u8>::new()),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    reg.assert_blob(repo, &blob).await;
}

#[tokio::test]
async fn chunked_final_chunk_in_put() {
    let (_srv, reg) = start();
    let repo = "conf/put-chunk";
    let (post, loc) = reg.start_upload(repo).await;
    let min = chunk_min(&post).max(3);
    let mut blob = b"Hello, how are you today?".to_vec();
    if min > 3 {
        blob = random_bytes(min * 2 - 2);
    }
    let (c1, c2) = blob.split_at(min);
    let d = sha256(&blob);
    let p1 = patch_chunk(&reg, &loc, c1, 0).await;
    p1.expect(202);
    let loc = reg.resolve(&p1.must_header("location"));
    // A final chunk that does not continue where the session ends is out of order.
    let bad = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .header("content-type", mt::OCTET)
                .header("content-range", format!("{}-{}", c1.len() + 1, blob.len()))
                .body(c2.to_vec()),
        )
        .await;
    bad.expect(416);
    // The session survived the refused PUT and still holds the first chunk.
    let s = reg.send(reg.req(Method::GET, loc.clone())).await;
    s.expect(204);
    s.assert_header("range", &format!("0-{}", c1.len() - 1));
    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .header("content-type", mt::OCTET)
                .header("content-range", format!("{}-{}", c1.len(), blob.len() - 1))
                .body(c2.to_vec()),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    // A completed session is gone.
    reg.send(reg.req(Method::GET, loc))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.assert_blob(repo, &blob).await;
}

#[tokio::test]
async fn chunked_multi_chunk_sha256_and_sha512() {
    let (_srv, reg) = start();
    let repo = "conf/multi";
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        for put_last in [false, true] {
            let (post, mut loc) = reg.start_upload(repo).await;
            let chunk = chunk_min(&post).max(256 * 1024);
            let blob = random_bytes(chunk * 3 - 5);
            let d = oci::digest_with(alg, &blob);
            let chunks: Vec<&[u8]> = blob.chunks(chunk).collect();
            let mut offset = 0;
            for (i, c) in chunks.iter().enumerate() {
                let last = i == chunks.len() - 1;
                if last && put_last {
                    let put = reg
                        .send(
                            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                                .header("content-type", mt::OCTET)
                                .header(
                                    "content-range",
                                    format!("{}-{}", offset, offset + c.len() - 1),
                                )
                                .body(c.to_vec()),
                        )
                        .await;
                    assert_blob_created(&reg, &put, repo, &d);
                } else {
                    let p = patch_chunk(&reg, &loc, c, offset).await;
                    p.expect(202);
                    p.assert_header("range", &format!("0-{}", offset + c.len() - 1));
                    loc = assert_session_headers(&reg, &p, repo);
                }
                offset += c.len();
            }
            if !put_last {
                let put = reg
                    .send(
                        reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                            .body(Vec::<u8>::new()),
                    )
                    .await;
                assert_blob_created(&reg, &put, repo, &d);
            }
            reg.assert_blob_digest(repo, &d, &blob).await;
        }
    }
}

#[tokio::test]
async fn patch_with_mismatched_content_range_and_length_is_rejected() {
    let (_srv, reg) = start();
    let repo = "conf/size";
    let (_, loc) = reg.start_upload(repo).await;
    // Content-Range announces 10 bytes, the body has 5.
    let r = reg
        .send(
            reg.req(Method::PATCH, loc.clone())
                .header("content-type", mt::OCTET)
                .header("content-range", "0-9")
                .body(b"12345".to_vec()),
        )
        .await;
    // PATCH failures are 404 or 416 in the spec's endpoint table; 400 is also sane.
    assert!(
        r.status.as_u16() == 400 || r.status.as_u16() == 416,
        "Content-Range/Content-Length mismatch must be 400 or 416:\n{}",
        r.describe()
    );
    r.expect_error_in(r.status.as_u16(), &["SIZE_INVALID", "BLOB_UPLOAD_INVALID"]);
    // Nothing was staged.
    let s = reg.send(reg.req(Method::GET, loc.clone())).await;
    s.expect(204);
    // A malformed Content-Range is not accepted either.
    let r = reg
        .send(
            reg.req(Method::PATCH, loc)
                .header("content-type", mt::OCTET)
                .header("content-range", "bytes=zero-four")
                .body(b"12345".to_vec()),
        )
        .await;
    assert!(
        r.status.as_u16() == 400 || r.status.as_u16() == 416,
        "malformed Content-Range must be 400 or 416:\n{}",
        r.describe()
    );
}

// ---------------------------------------------------------------------------------
// Upload status, cancel, unknown sessions

#[tokio::test]
async fn cancel_upload_then_session_is_unknown() {
    let (_srv, reg) = start();
    let repo = "conf/cancel";
    let (_, loc) = reg.start_upload(repo).await;
    let p = patch_chunk(&reg, &loc, b"some bytes", 0).await;
    p.expect(202);
    let loc = reg.resolve(&p.must_header("location"));
    let del = reg
        .send(
            reg.req(Method::DELETE, loc.clone())
                .header("content-length", "0"),
        )
        .await;
    del.expect(204);
    reg.send(reg.req(Method::GET, loc.clone()))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    patch_chunk(&reg, &loc, b"more", 10)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(
        reg.req(
            Method::PUT,
            Reg::with_query(&loc, "digest", &sha256(b"some bytes")),
        )
        .body(Vec::<u8>::new()),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(reg.req(Method::DELETE, loc))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // Nothing became a blob.
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256(b"some bytes")))
        .await
        .expect(404);
}

#[tokio::test]
async fn unknown_upload_session_is_404_blob_upload_unknown() {
    let (_srv, reg) = start();
    let repo = "conf/unknown-upload";
    reg.push_blob(repo, b"make the repo exist").await;
    let path = format!("/v2/{repo}/blobs/uploads/3fa85f64-5717-4562-b3fc-2c963f66afa6");
    reg.get(&path)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(
        reg.at(Method::PATCH, &path)
            .header("content-type", mt::OCTET)
            .body(b"abc".to_vec()),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let put_url = Reg::with_query(&reg.url(&path), "digest", &sha256(b"abc"));
    reg.send(reg.req(Method::PUT, put_url).body(b"abc".to_vec()))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&path)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_session_belongs_to_its_repository() {
    let (_srv, reg) = start();
    let (_, loc) = reg.start_upload("conf/owner").await;
    reg.push_blob("conf/other", b"exists").await;
    // Replay the session id under another repository.
    let id = loc.path().rsplit('/').next().unwrap().to_string();
    let mut other = reg.url(&format!("/v2/conf/other/blobs/uploads/{id}"));
    other.set_query(loc.query());
    reg.send(reg.req(Method::GET, other))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

// ---------------------------------------------------------------------------------
// Bad digests: 400 DIGEST_INVALID, never 500, nothing stored

#[tokio::test]
async fn bad_digest_is_400_digest_invalid_for_every_upload_method() {
    let (_srv, reg) = start();
    let repo = "conf/baddigest";
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let good = random_bytes(4096);
        let claimed = oci::digest_with(alg, &good);
        let mut sent = good.clone();
        sent.extend_from_slice(b"oh no");
        let actual = oci::digest_with(alg, &sent);

        // single POST
        let url = Reg::with_query(
            &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
            "digest",
            &claimed,
        );
        reg.send(
            reg.req(Method::POST, url)
                .header("content-type", mt::OCTET)
                .body(sent.clone()),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");

        // POST + PUT
        let (_, loc) = reg.start_upload(repo).await;
        reg.send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &claimed))
                .header("content-type", mt::OCTET)
                .body(sent.clone()),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");

        // streamed PATCH + PUT
        let (_, loc) = reg.start_upload(repo).await;
        let p = reg
            .send(
                reg.req(Method::PATCH, loc)
                    .header("content-type", mt::OCTET)
                    .body(sent.clone()),
            )
            .await;
        p.expect(202);
        let loc = reg.resolve(&p.must_header("location"));
        reg.send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &claimed))
                .body(Vec::<u8>::new()),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");

        // chunked PATCH + PUT with the final chunk
        let (_, loc) = reg.start_upload(repo).await;
        let half = sent.len() / 2;
        let p = patch_chunk(&reg, &loc, &sent[..half], 0).await;
        p.expect(202);
        let loc = reg.resolve(&p.must_header("location"));
        reg.send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &claimed))
                .header("content-type", mt::OCTET)
                .header("content-range", format!("{}-{}", half, sent.len() - 1))
                .body(sent[half..].to_vec()),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");

        // Neither digest became readable.
        for d in [&claimed, &actual] {
            reg.head(&format!("/v2/{repo}/blobs/{d}")).await.expect(404);
        }
    }
}

#[tokio::test]
async fn malformed_digests_are_400_digest_invalid() {
    let (_srv, reg) = start();
    let repo = "conf/malformed";
    reg.push_blob(repo, b"exists").await;
    let bad = [
        "sha256:totallywrong",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
        "sha512:abcd",
    ];
    for d in bad {
        // single POST
        let url = Reg::with_query(&reg.url(&format!("/v2/{repo}/blobs/uploads/")), "digest", d);
        reg.send(reg.req(Method::POST, url).body(b"data".to_vec()))
            .await
            .expect_error(400, "DIGEST_INVALID");
        // PUT to a session
        let (_, loc) = reg.start_upload(repo).await;
        reg.send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", d))
                .body(b"data".to_vec()),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        // blob GET by a malformed digest: never a 500
        let r = reg.get(&format!("/v2/{repo}/blobs/{d}")).await;
        if r.status.as_u16() == 400 {
            r.expect_error(400, "DIGEST_INVALID");
        } else {
            r.expect_error(404, "BLOB_UNKNOWN");
        }
    }
    // PUT closing a session without any digest.
    let (_, loc) = reg.start_upload(repo).await;
    reg.send(reg.req(Method::PUT, loc).body(b"data".to_vec()))
        .await
        .expect_error(400, "DIGEST_INVALID");
}

// ---------------------------------------------------------------------------------
// Cross-repository mounts and repository isolation

#[tokio::test]
async fn cross_repository_mount() {
    let (_srv, reg) = start();
    let data = random_bytes(1500);
    let d = reg.push_blob("mount/source", &data).await;
    // The target cannot read it before the mount.
    reg.push_blob("mount/target", b"target exists").await;
    reg.get(&format!("/v2/mount/target/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let url = reg.url(&format!(
        "/v2/mount/target/blobs/uploads/?mount={d}&from=mount/source"
    ));
    let r = reg
        .send(reg.req(Method::POST, url).body(Vec::<u8>::new()))
        .await;
    assert_blob_created(&reg, &r, "mount/target", &d);
    reg.assert_blob_digest("mount/target", &d, &data).await;
    // Mounting into a brand-new repository creates it (create-on-push).
    let url = reg.url(&format!(
        "/v2/mount/fresh/blobs/uploads/?mount={d}&from=mount/source"
    ));
    let r = reg
        .send(reg.req(Method::POST, url).body(Vec::<u8>::new()))
        .await;
    assert_blob_created(&reg, &r, "mount/fresh", &d);
    reg.assert_blob_digest("mount/fresh", &d, &data).await;
    // sha512 blobs mount too.
    let data512 = random_bytes(900);
    let d512 = reg
        .push_blob_with("mount/source", &data512, Algorithm::Sha512)
        .await;
    let url = reg.url(&format!(
        "/v2/mount/target/blobs/uploads/?mount={d512}&from=mount/source"
    ));
    let r = reg
        .send(reg.req(Method::POST, url).body(Vec::<u8>::new()))
        .await;
    assert_blob_created(&reg, &r, "mount/target", &d512);
    reg.assert_blob_digest("mount/target", &d512, &data512)
        .await;
}

#[tokio::test]
async fn mount_without_from_or_from_a_repo_lacking_the_blob_opens_a_session() {
    let (_srv, reg) = start();
    let data = random_bytes(800);
    let d = reg.push_blob("mount2/source", &data).await;
    reg.push_blob("mount2/empty", b"other content").await;
    let cases = [
        format!("/v2/mount2/target/blobs/uploads/?mount={d}"),
        format!("/v2/mount2/target/blobs/uploads/?mount={d}&from=mount2/empty"),
        format!("/v2/mount2/target/blobs/uploads/?mount={d}&from=mount2/nonexistent"),
        format!(
            "/v2/mount2/target/blobs/uploads/?mount={}&from=mount2/source",
            sha256(b"hello world")
        ),
    ];
    for path in cases {
        let r = reg
            .send(reg.at(Method::POST, &path).body(Vec::<u8>::new()))
            .await;
        r.expect(202);
        let loc = assert_session_headers(&reg, &r, "mount2/target");
        // The target did not gain read access.
        reg.head(&format!("/v2/mount2/target/blobs/{d}"))
            .await
            .expect(404);
        // The session works as a normal upload.
        let put = reg
            .send(
                reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                    .header("content-type", mt::OCTET)
                    .body(data.clone()),
            )
            .await;
        assert_blob_created(&reg, &put, "mount2/target", &d);
        reg.assert_blob_digest("mount2/target", &d, &data).await;
        reg.delete(&format!("/v2/mount2/target/blobs/{d}"))
            .await
            .expect(202);
    }
}

#[tokio::test]
async fn blob_pushed_to_one_repository_is_not_readable_from_another() {
    let (_srv, reg) = start();
    let data = random_bytes(1024);
    let d = reg.push_blob("iso/a", &data).await;
    reg.push_blob("iso/b", b"b exists").await;
    reg.head(&format!("/v2/iso/b/blobs/{d}")).await.expect(404);
    reg.get(&format!("/v2/iso/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let r = reg
        .send(
            reg.at(Method::GET, &format!("/v2/iso/b/blobs/{d}"))
                .header("range", "bytes=0-9"),
        )
        .await;
    r.expect_error(404, "BLOB_UNKNOWN");
    reg.assert_blob("iso/a", &data).await;
}

// ---------------------------------------------------------------------------------
// Blob delete

#[tokio::test]
async fn delete_blob() {
    let (_srv, reg) = start();
    let data = random_bytes(600);
    let d = reg.push_blob("del/a", &data).await;
    let url = reg.url(&format!("/v2/del/b/blobs/uploads/?mount={d}&from=del/a"));
    reg.send(reg.req(Method::POST, url).body(Vec::<u8>::new()))
        .await
        .expect(201);
    reg.delete(&format!("/v2/del/a/blobs/{d}"))
        .await
        .expect(202);
    reg.head(&format!("/v2/del/a/blobs/{d}")).await.expect(404);
    reg.get(&format!("/v2/del/a/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.delete(&format!("/v2/del/a/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // The other repository keeps its link.
    reg.assert_blob("del/b", &data).await;
    // Pushing again brings it back.
    reg.push_blob("del/a", &data).await;
    reg.assert_blob("del/a", &data).await;
}

// ---------------------------------------------------------------------------------
// Durability of upload sessions

#[tokio::test]
async fn upload_session_survives_restart() {
    let mut srv = common::Server::start();
    let reg = Reg::new(&srv.url);
    let repo = "conf/restart";
    let (post, loc) = reg.start_upload(repo).await;
    let chunk = chunk_min(&post).max(100 * 1024);
    let blob = random_bytes(chunk * 2 + 17);
    let d = sha256(&blob);
    let p = patch_chunk(&reg, &loc, &blob[..chunk], 0).await;
    p.expect(202);
    let loc = reg.resolve(&p.must_header("location"));

    srv.restart();
    // A fresh client: the pooled connection died with the old process.
    let reg = Reg::new(&srv.url);

    // The session remembers its offset.
    let s = reg.send(reg.req(Method::GET, loc.clone())).await;
    s.expect(204);
    s.assert_header("range", &format!("0-{}", chunk - 1));
    let loc = reg.resolve(&s.must_header("location"));
    let p = patch_chunk(&reg, &loc, &blob[chunk..2 * chunk], chunk).await;
    p.expect(202);
    p.assert_header("range", &format!("0-{}", 2 * chunk - 1));
    let loc = reg.resolve(&p.must_header("location"));

    srv.restart();
    let reg = Reg::new(&srv.url);

    let put = reg
        .send(
            reg.req(Method::PUT, Reg::with_query(&loc, "digest", &d))
                .header("content-type", mt::OCTET)
                .header("content-range", format!("{}-{}", 2 * chunk, blob.len() - 1))
                .body(blob[2 * chunk..].to_vec()),
        )
        .await;
    assert_blob_created(&reg, &put, repo, &d);
    reg.assert_blob(repo, &blob).await;

    srv.restart();
    let reg = Reg::new(&srv.url);
    reg.assert_blob(repo, &blob).await;
}

// ---------------------------------------------------------------------------------
// Repository names

#[tokio::test]
async fn invalid_repository_names_are_400_name_invalid() {
    let (_srv, reg) = start();
    let bad = [
        "Upper/app",
        "x",
        "my..app",
        "-lead",
        "trail-",
        "a_-b/c",
        "team/A",
    ];
    for name in bad {
        reg.send(
            reg.at(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
                .body(Vec::<u8>::new()),
        )
        .await
        .expect_error(400, "NAME_INVALID");
        let img = oci::Image::random(0, 0);
        reg.put_manifest(name, "latest", mt::OCI_MANIFEST, &img.manifest)
            .await
            .expect_error(400, "NAME_INVALID");
        reg.get(&format!("/v2/{name}/tags/list"))
            .await
            .expect_error(400, "NAME_INVALID");
        reg.get(&format!("/v2/{name}/manifests/latest"))
            .await
            .expect_error(400, "NAME_INVALID");
        reg.get(&format!("/v2/{name}/blobs/{}", oci::EMPTY_SHA256))
            .await
            .expect_error(400, "NAME_INVALID");
    }
    // Valid names of several components work.
    for name in ["ab", "a.b_c/d__e", "x/y/z-1", "team/app--x"] {
        reg.push_blob(name, b"ok").await;
    }
}
