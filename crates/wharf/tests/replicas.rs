//! Two `wharf serve` processes on one PostgreSQL database and one S3 bucket behave as
//! one registry: what one accepts the other serves at once, an upload may hop between
//! them chunk by chunk, racing tag moves stay atomic, and credentials and registry
//! tokens issued by one are honoured by the other.

mod common;
mod oci;

use common::{Engines, Server};
use oci::{mt, random_bytes, sha256, Image, Reg};
use reqwest::Method;

/// Two replicas on fresh shared engines, with a client for each.
fn pair() -> (Server, Server, Reg, Reg) {
    let engines = Engines::shared();
    let a = Server::start_on(engines.clone(), &[]);
    let b = Server::start_on(engines, &[]);
    let (ra, rb) = (Reg::new(&a.url), Reg::new(&b.url));
    (a, b, ra, rb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_through_one_replica_is_served_by_the_other() {
    let (a, b, ra, rb) = pair();
    let img = Image::random(2, 300_000);
    ra.push_image("team/app", "v1", &img).await;

    let m = rb
        .get_manifest("team/app", "v1", Some(mt::OCI_MANIFEST))
        .await;
    m.expect(200);
    assert_eq!(&m.body[..], &img.manifest[..]);
    for blob in img.blobs() {
        rb.assert_blob("team/app", blob).await;
    }
    assert_eq!(rb.tags("team/app").await, ["v1"]);
    let described = common::aws_admin(
        &b,
        &["ecr", "describe-images", "--repository-name", "team/app"],
    );
    assert_eq!(
        described["imageDetails"][0]["imageDigest"], img.digest,
        "{described}"
    );

    // A delete through the other replica is seen at once.
    rb.delete(&format!("/v2/team/app/manifests/{}", img.digest))
        .await
        .expect(202);
    ra.get_manifest("team/app", "v1", Some(mt::OCI_MANIFEST))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    common::aws_admin(
        &a,
        &["ecr", "create-repository", "--repository-name", "made/on-a"],
    );
    let repos = common::aws_admin(&b, &["ecr", "describe-repositories"]);
    let names: Vec<&str> = repos["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repositoryName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"made/on-a"), "{repos}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunked_upload_alternates_between_replicas() {
    let (_a, _b, ra, rb) = pair();
    const MIB: usize = 1 << 20;
    // Sizes below, at and across the 8 MiB part size, and single bytes.
    let sizes = [
        3 * MIB,
        6 * MIB,
        1,
        9 * MIB,
        100_000,
        1,
        8 * MIB,
        17 * MIB + 5,
    ];
    let data = random_bytes(sizes.iter().sum());
    let digest = sha256(&data);
    let (_, loc) = ra.start_upload("hop/blob").await;
    let path = loc.path().to_string();
    let query = loc.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut offset = 0;
    for (i, size) in sizes.iter().enumerate() {
        let reg = if i % 2 == 0 { &rb } else { &ra };
        let chunk = data[offset..offset + size].to_vec();
        let r = reg
            .send(
                reg.at(Method::PATCH, &format!("{path}{query}"))
                    .header("content-type", mt::OCTET)
                    .header("content-range", format!("{}-{}", offset, offset + size - 1))
                    .body(chunk),
            )
            .await;
        r.expect(202);
        offset += size;
        r.assert_header("range", &format!("0-{}", offset - 1));
        // The other replica reports the same progress.
        let other = if i % 2 == 0 { &ra } else { &rb };
        let status = other.get(&format!("{path}{query}")).await;
        status.expect(204);
        status.assert_header("range", &format!("0-{}", offset - 1));
    }
    // A chunk that does not start where the upload ends is refused on either replica.
    let r = ra
        .send(
            ra.at(Method::PATCH, &format!("{path}{query}"))
                .header("content-type", mt::OCTET)
                .header("content-range", "0-0")
                .body(vec![0u8]),
        )
        .await;
    r.expect(416);
    let sep = if query.is_empty() { '?' } else { '&' };
    let r = ra
        .send(
            ra.at(Method::PUT, &format!("{path}{query}{sep}digest={digest}"))
                .body(Vec::<u8>::new()),
        )
        .await;
    r.expect(201);
    rb.assert_blob("hop/blob", &data).await;
    ra.assert_blob("hop/blob", &data).await;
}

/// Many pushes of different manifests to one tag through both replicas at once: every
/// push is acknowledged, and afterwards both replicas agree on one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tag_moves_through_two_replicas_stay_consistent() {
    let (_a, _b, ra, rb) = pair();
    let images: Vec<Image> = (0..12).map(|_| Image::random(1, 1000)).collect();
    for img in &images {
        for blob in img.blobs() {
            ra.push_blob("race/app", blob).await;
        }
    }
    let pushes = images.iter().enumerate().map(|(i, img)| {
        let reg = if i % 2 == 0 { ra.clone() } else { rb.clone() };
        let img = img.clone();
        tokio::spawn(async move {
            reg.put_manifest("race/app", "latest", &img.media_type, &img.manifest)
                .await
                .status
                .as_u16()
        })
    });
    for status in futures::future::join_all(pushes).await {
        assert_eq!(status.unwrap(), 201);
    }
    let on_a = ra
        .head_manifest("race/app", "latest", Some(mt::OCI_MANIFEST))
        .await;
    let on_b = rb
        .head_manifest("race/app", "latest", Some(mt::OCI_MANIFEST))
        .await;
    let (da, db) = (
        on_a.must_header("docker-content-digest"),
        on_b.must_header("docker-content-digest"),
    );
    assert_eq!(da, db, "the replicas disagree about the tag");
    assert!(
        images.iter().any(|i| i.digest == da),
        "{da} was never pushed"
    );
    // Every manifest stays reachable by digest.
    for img in &images {
        rb.get_manifest("race/app", &img.digest, Some(mt::OCI_MANIFEST))
            .await
            .expect(200);
    }
}

/// With immutable tags, of two different manifests pushed to one new tag through the
/// two replicas at the same moment, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_immutable_tag_goes_to_exactly_one_of_two_racing_pushes() {
    let (a, _b, ra, rb) = pair();
    common::aws_admin(
        &a,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "frozen/app",
            "--image-tag-mutability",
            "IMMUTABLE",
        ],
    );
    for round in 0..8 {
        let (x, y) = (Image::random(1, 500), Image::random(1, 500));
        for blob in x.blobs().into_iter().chain(y.blobs()) {
            ra.push_blob("frozen/app", blob).await;
        }
        let tag = format!("v{round}");
        let (t1, t2) = (tag.clone(), tag.clone());
        let (rx, ry) = (ra.clone(), rb.clone());
        let (mx, my) = (x.clone(), y.clone());
        let first = tokio::spawn(async move {
            rx.put_manifest("frozen/app", &t1, &mx.media_type, &mx.manifest)
                .await
        });
        let second = tokio::spawn(async move {
            ry.put_manifest("frozen/app", &t2, &my.media_type, &my.manifest)
                .await
        });
        let (r1, r2) = (first.await.unwrap(), second.await.unwrap());
        let won: Vec<&oci::Resp> = [&r1, &r2]
            .into_iter()
            .filter(|r| r.status.as_u16() == 201)
            .collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {}\n{}",
            r1.describe(),
            r2.describe()
        );
        let lost = if r1.status.as_u16() == 201 { &r2 } else { &r1 };
        lost.expect_error(400, "TAG_INVALID");
        let winner = won[0].must_header("docker-content-digest");
        for reg in [&ra, &rb] {
            let h = reg
                .head_manifest("frozen/app", &tag, Some(mt::OCI_MANIFEST))
                .await;
            assert_eq!(h.must_header("docker-content-digest"), winner);
        }
    }
}

/// A registry token from one replica, and an IAM user's key made through the other,
/// work on both: the token secret and the IAM data live in the shared database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_from_one_replica_work_on_the_other() {
    let (a, b, _ra, _rb) = pair();
    let token = common::aws_admin(&a, &["ecr", "get-login-password"]);
    let token = token.as_str().expect("a token").to_string();
    let basic = |user: &str, secret: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
        )
    };
    let client = reqwest::Client::new();
    let r = client
        .get(b.at("/v2/"))
        .header("authorization", basic("AWS", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "token from replica A refused by replica B");

    common::aws_admin(&b, &["iam", "create-user", "--user-name", "ci"]);
    common::aws_admin(
        &b,
        &[
            "iam",
            "attach-user-policy",
            "--user-name",
            "ci",
            "--policy-arn",
            "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        ],
    );
    let key = common::aws_admin(&b, &["iam", "create-access-key", "--user-name", "ci"]);
    let (id, secret) = (
        key["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let listed = common::aws_cli(&a, &id, &secret, &["ecr", "describe-repositories"])
        .expect("a key made on replica B works on replica A");
    assert!(listed["repositories"].is_array(), "{listed}");
    let refused = common::aws_cli(
        &a,
        &id,
        &secret,
        &["ecr", "create-repository", "--repository-name", "nope"],
    )
    .expect_err("read-only user created a repository");
    assert!(refused.contains("AccessDenied"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_replicas_report_ready() {
    let (a, b, _ra, _rb) = pair();
    let client = reqwest::Client::new();
    for srv in [&a, &b] {
        let live = client.get(srv.at("/healthz")).send().await.unwrap();
        assert_eq!(live.status(), 200);
        let ready = client.get(srv.at("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready", "{body}");
        assert_eq!(body["metadata"], "ok", "{body}");
        assert_eq!(body["blobs"], "ok", "{body}");
    }
}

/// `/readyz` names the engine a replica cannot reach, with 503, while `/healthz` still
/// answers: here the database goes away under a running replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_names_the_engine_that_fails() {
    let engines = Engines::shared();
    let db_url = engines.metadata.clone().expect("a database");
    let srv = Server::start_on(engines, &[]);
    let client = reqwest::Client::new();
    let ready = client.get(srv.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Drop the database (and its connections) from the cluster's maintenance database.
    let (cluster, name) = db_url
        .rsplit_once('/')
        .expect("URL ends in the database name");
    let out = std::process::Command::new("psql")
        .arg(format!("{cluster}/postgres"))
        .args(["-qc", &format!("DROP DATABASE {name} WITH (FORCE)")])
        .output()
        .expect("psql runs (Debian's postgresql)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ready = client.get(srv.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["blobs"], "ok", "{body}");
    let why = body["metadata"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("error: ") && why.contains("database"),
        "{body}"
    );
    let live = client.get(srv.at("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200);
}

/// With `redirect=true` on the bucket, blob GETs answer 307 to a presigned URL of the
/// bucket (which serves the bytes, ranges too) and GetDownloadUrlForLayer hands out
/// such a URL, as ECR does with S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_can_be_redirected_to_the_bucket() {
    let mut engines = Engines::shared();
    let blobs = engines.blobs.take().expect("a bucket");
    engines.blobs = Some(format!("{blobs}&redirect=true"));
    let srv = Server::start_on(engines, &[]);
    let reg = Reg::new(&srv.url);
    let data = random_bytes(200_000);
    let digest = reg.push_blob("redir/app", &data).await;

    let r = reg.get(&format!("/v2/redir/app/blobs/{digest}")).await;
    r.expect(307);
    r.assert_header("docker-content-digest", &digest);
    let location = r.must_header("location");
    assert!(
        !location.starts_with(&srv.url),
        "the redirect stays on the registry: {location}"
    );
    let plain = reqwest::Client::new();
    let direct = plain.get(&location).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(&direct.bytes().await.unwrap()[..], &data[..]);
    let ranged = plain
        .get(&location)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &data[1000..2000]);
    // HEAD is answered by the registry itself.
    let h = reg.head(&format!("/v2/redir/app/blobs/{digest}")).await;
    h.expect(200);
    h.assert_header("content-length", &data.len().to_string());
    // A blob the repository does not hold is still 404, not a redirect.
    reg.get(&format!("/v2/redir/app/blobs/{}", sha256(b"absent")))
        .await
        .expect_error(404, "BLOB_UNKNOWN");

    let url = common::aws_admin(
        &srv,
        &[
            "ecr",
            "get-download-url-for-layer",
            "--repository-name",
            "redir/app",
            "--layer-digest",
            &digest,
        ],
    );
    let download = url["downloadUrl"]
        .as_str()
        .expect("downloadUrl")
        .to_string();
    assert!(!download.starts_with(&srv.url), "{download}");
    let fetched = plain.get(&download).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(&fetched.bytes().await.unwrap()[..], &data[..]);
}

/// Replicas started at the same moment on fresh engines with one configured
/// administrator key all come up (they race to create the key, the schema, the user).
#[test]
fn replicas_starting_together_all_come_up() {
    let engines = Engines::shared();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let e = engines.clone();
            std::thread::spawn(move || Server::start_on(e, &[]))
        })
        .collect();
    let servers: Vec<Server> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    for srv in &servers {
        let listed = common::aws_admin(srv, &["ecr", "describe-repositories"]);
        assert!(listed["repositories"].is_array(), "{listed}");
    }
}
