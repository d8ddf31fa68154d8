//! Crash consistency: concurrent pushes, `kill -9` partway, restart, and check that
//! every acknowledged push is intact and nothing visible is corrupt.
//!
//! Each cycle runs 16 concurrent pushes (1–4 random blobs of 100 KiB–4 MiB each, some
//! uploaded in chunks, some sharing a blob with other pushes, then a manifest PUT with a
//! tag). A push is acknowledged when its manifest PUT returned 201. The server is
//! killed with SIGKILL once a random number of pushes were acknowledged or after a
//! random delay, then restarted on the same data directory. After the restart:
//!
//! - every acknowledged push (of this and all earlier cycles): the tag resolves to the
//!   same manifest digest, the manifest bytes hash to it, and every blob it references
//!   downloads and hashes to its digest;
//! - every unacknowledged push: whatever is served verifies (a visible tag serves the
//!   manifest that was pushed and all of its blobs; a visible blob hashes to its
//!   digest), and an interrupted upload session is either gone (404
//!   BLOB_UPLOAD_UNKNOWN) or resumable (204 with a sane `Range`);
//! - the registry still accepts a new push.

mod common;
mod oci;

use oci::{desc, mt, oci_manifest, sha256, to_bytes, Reg, Rng};
use reqwest::{Method, Url};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PUSHES: usize = 16;
const CYCLES: usize = 3;
const CHUNK: usize = 1024 * 1024;

/// One planned push.
struct Plan {
    repo: String,
    tag: String,
    /// (digest, bytes, upload in chunks)
    blobs: Vec<(String, Vec<u8>, bool)>,
    manifest: Vec<u8>,
    digest: String,
}

/// What is kept of a push for verification after its bytes are dropped.
#[derive(Clone)]
struct Record {
    repo: String,
    tag: String,
    blobs: Vec<(String, usize)>,
    manifest: Vec<u8>,
    digest: String,
    acked: bool,
    /// The upload session that was in flight when the push stopped, with the size of
    /// the blob it was uploading.
    open_session: Option<(Url, usize)>,
}

/// Why a push stopped early.
enum Stop {
    /// The connection failed (expected once the server is killed).
    Transport(#[allow(dead_code)] String),
    /// The server answered something unexpected (a bug unless caused by the kill).
    Status(String),
}

fn crash_client(base: &str) -> Reg {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&common::admin_basic()).unwrap(),
    );
    let c = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    Reg {
        c,
        base: Url::parse(base).unwrap(),
    }
}

fn make_plans(rng: &mut Rng, cycle: usize) -> Vec<Plan> {
    let shared_size = rng.range(100 * 1024, 600 * 1024) as usize;
    let shared = rng.bytes(shared_size);
    let shared_digest = sha256(&shared);
    (0..PUSHES)
        .map(|i| {
            let n = rng.range(1, 4) as usize;
            let mut blobs: Vec<(String, Vec<u8>, bool)> = (0..n)
                .map(|_| {
                    let size = rng.range(100 * 1024, 4 * 1024 * 1024) as usize;
                    let data = rng.bytes(size);
                    let chunked = rng.range(0, 2) == 0;
                    (sha256(&data), data, chunked)
                })
                .collect();
            if rng.range(0, 3) == 0 {
                blobs.push((shared_digest.clone(), shared.clone(), rng.range(0, 1) == 0));
            }
            let config = serde_json::to_vec(&serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "author": format!("crash cycle {cycle} push {i} {}", rng.next_u64()),
                "rootfs": {"type": "layers", "diff_ids": []}
            }))
            .unwrap();
            let m = oci_manifest(
                desc(mt::OCI_CONFIG, &config),
                blobs
                    .iter()
                    .map(|(_, b, _)| desc(mt::OCI_LAYER, b))
                    .collect(),
            );
            blobs.insert(0, (sha256(&config), config, false));
            let manifest = to_bytes(&m);
            Plan {
                repo: format!("crash/c{cycle}-p{i:02}"),
                tag: format!("t{cycle}-{i}"),
                blobs,
                digest: sha256(&manifest),
                manifest,
            }
        })
        .collect()
}

async fn send(reg: &Reg, rb: reqwest::RequestBuilder) -> Result<oci::Resp, Stop> {
    reg.try_send(rb)
        .await
        .map_err(|e| Stop::Transport(format!("{e:?}")))
}

fn expect(r: &oci::Resp, status: u16) -> Result<(), Stop> {
    if r.status.as_u16() == status {
        Ok(())
    } else {
        Err(Stop::Status(r.describe()))
    }
}

fn location(reg: &Reg, r: &oci::Resp) -> Result<Url, Stop> {
    let loc = r
        .header("location")
        .ok_or_else(|| Stop::Status(format!("no Location:\n{}", r.describe())))?;
    Ok(reg.resolve(&loc))
}

/// Runs one push; Ok once the manifest PUT answered 201 (acknowledged).
async fn push(
    reg: &Reg,
    plan: &Plan,
    session: &Mutex<Option<(Url, usize)>>,
    acks: &AtomicUsize,
) -> Result<(), Stop> {
    for (digest, data, chunked) in &plan.blobs {
        let r = send(
            reg,
            reg.at(Method::POST, &format!("/v2/{}/blobs/uploads/", plan.repo))
                .body(Vec::<u8>::new()),
        )
        .await?;
        expect(&r, 202)?;
        let mut loc = location(reg, &r)?;
        *session.lock().unwrap() = Some((loc.clone(), data.len()));
        let last_chunk: &[u8] = if *chunked {
            let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
            let mut offset = 0;
            for c in &chunks[..chunks.len() - 1] {
                let r = send(
                    reg,
                    reg.req(Method::PATCH, loc.clone())
                        .header("content-type", mt::OCTET)
                        .header(
                            "content-range",
                            format!("{}-{}", offset, offset + c.len() - 1),
                        )
                        .body(c.to_vec()),
                )
                .await?;
                expect(&r, 202)?;
                loc = location(reg, &r)?;
                *session.lock().unwrap() = Some((loc.clone(), data.len()));
                offset += c.len();
            }
            chunks[chunks.len() - 1]
        } else {
            data
        };
        let offset = data.len() - last_chunk.len();
        let mut rb = reg
            .req(Method::PUT, Reg::with_query(&loc, "digest", digest))
            .header("content-type", mt::OCTET);
        if *chunked {
            rb = rb.header("content-range", format!("{}-{}", offset, data.len() - 1));
        }
        let r = send(reg, rb.body(last_chunk.to_vec())).await?;
        expect(&r, 201)?;
        *session.lock().unwrap() = None;
    }
    let r = send(
        reg,
        reg.at(
            Method::PUT,
            &format!("/v2/{}/manifests/{}", plan.repo, plan.tag),
        )
        .header("content-type", mt::OCI_MANIFEST)
        .body(plan.manifest.clone()),
    )
    .await?;
    expect(&r, 201)?;
    acks.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Downloads blob `digest` from `repo`: Ok(None) if 404, Ok(Some(())) if it is there
/// and verifies, Err on anything else.
async fn check_blob(
    reg: &Reg,
    repo: &str,
    digest: &str,
    size: usize,
) -> Result<Option<()>, String> {
    let r = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    match r.status.as_u16() {
        404 => {
            r.expect_error(404, "BLOB_UNKNOWN");
            Ok(None)
        }
        200 => {
            if sha256(&r.body) != digest || r.body.len() != size {
                return Err(format!(
                    "blob {digest} in {repo} is corrupt: {} bytes hashing to {}",
                    r.body.len(),
                    sha256(&r.body)
                ));
            }
            if let Some(h) = r.header("docker-content-digest") {
                if h != digest {
                    return Err(format!(
                        "blob {digest} served with Docker-Content-Digest {h}"
                    ));
                }
            }
            Ok(Some(()))
        }
        _ => Err(format!(
            "unexpected answer for blob {digest}:\n{}",
            r.describe()
        )),
    }
}

/// Verifies every record after a restart; returns the problems found.
async fn verify(reg: &Reg, records: &[Record]) -> Vec<String> {
    let mut problems = Vec::new();
    for rec in records {
        let g = reg
            .get_manifest(&rec.repo, &rec.tag, Some(mt::OCI_MANIFEST))
            .await;
        let visible = match g.status.as_u16() {
            200 => {
                if g.body != rec.manifest {
                    problems.push(format!(
                        "{}:{} serves other bytes (acked: {}):\n{}",
                        rec.repo,
                        rec.tag,
                        rec.acked,
                        g.describe()
                    ));
                }
                if sha256(&g.body) != rec.digest {
                    problems.push(format!(
                        "{}:{} body does not hash to {}",
                        rec.repo, rec.tag, rec.digest
                    ));
                }
                if g.header("docker-content-digest").as_deref() != Some(rec.digest.as_str()) {
                    problems.push(format!(
                        "{}:{} Docker-Content-Digest is not {}:\n{}",
                        rec.repo,
                        rec.tag,
                        rec.digest,
                        g.describe()
                    ));
                }
                let d = reg
                    .get_manifest(&rec.repo, &rec.digest, Some(mt::OCI_MANIFEST))
                    .await;
                if d.status.as_u16() != 200 || d.body != rec.manifest {
                    problems.push(format!("{} by digest:\n{}", rec.repo, d.describe()));
                }
                true
            }
            404 => {
                if rec.acked {
                    problems.push(format!(
                        "acknowledged push {}:{} ({}) is lost:\n{}",
                        rec.repo,
                        rec.tag,
                        rec.digest,
                        g.describe()
                    ));
                }
                false
            }
            _ => {
                problems.push(format!("{}:{}:\n{}", rec.repo, rec.tag, g.describe()));
                false
            }
        };
        for (digest, size) in &rec.blobs {
            match check_blob(reg, &rec.repo, digest, *size).await {
                Ok(Some(())) => {}
                Ok(None) if visible || rec.acked => problems.push(format!(
                    "{}:{} (acked: {}) is visible but its blob {digest} is missing",
                    rec.repo, rec.tag, rec.acked
                )),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        if let Some((loc, size)) = &rec.open_session {
            let s = reg.send(reg.req(Method::GET, loc.clone())).await;
            match s.status.as_u16() {
                404 => {
                    let codes = s.error_codes();
                    if codes.first().map(String::as_str) != Some("BLOB_UPLOAD_UNKNOWN") {
                        problems.push(format!("interrupted session:\n{}", s.describe()));
                    }
                }
                204 => {
                    let range = s.header("range").unwrap_or_default();
                    let end = range.strip_prefix("0-").and_then(|e| e.parse::<i64>().ok());
                    match end {
                        Some(end) if end < *size as i64 => {}
                        _ => problems.push(format!(
                            "interrupted session reports a bad Range (blob of {size} bytes):\n{}",
                            s.describe()
                        )),
                    }
                }
                _ => problems.push(format!("interrupted session:\n{}", s.describe())),
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_kill_9() {
    let mut srv = common::Server::start();
    let mut rng = Rng::new(oci::seed());
    let mut records: Vec<Record> = Vec::new();
    let mut report = Vec::new();
    for cycle in 0..CYCLES {
        let reg = crash_client(&srv.url);
        let plans: Vec<Arc<Plan>> = make_plans(&mut rng, cycle)
            .into_iter()
            .map(Arc::new)
            .collect();
        let acks = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        let mut sessions = Vec::new();
        for plan in &plans {
            let (reg, plan, acks) = (reg.clone(), plan.clone(), acks.clone());
            let session = Arc::new(Mutex::new(None));
            sessions.push(session.clone());
            handles.push(tokio::spawn(async move {
                push(&reg, &plan, &session, &acks).await
            }));
        }
        // Kill once enough pushes were acknowledged, or after a while.
        let target = rng.range(2, 10) as usize;
        let deadline = Instant::now() + Duration::from_millis(rng.range(300, 4000));
        loop {
            if acks.load(Ordering::SeqCst) >= target
                || Instant::now() >= deadline
                || handles.iter().all(|h| h.is_finished())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        srv.kill9();
        let killed_at_acks = acks.load(Ordering::SeqCst);

        let mut unexpected = Vec::new();
        let mut acked_count = 0;
        for (i, h) in handles.into_iter().enumerate() {
            let res = tokio::time::timeout(Duration::from_secs(120), h)
                .await
                .expect("push task ended after the kill")
                .expect("push task did not panic");
            let acked = match res {
                Ok(()) => true,
                Err(Stop::Transport(_)) => false,
                Err(Stop::Status(s)) => {
                    unexpected.push(format!("push {i}: {s}"));
                    false
                }
            };
            acked_count += usize::from(acked);
            let plan = &plans[i];
            records.push(Record {
                repo: plan.repo.clone(),
                tag: plan.tag.clone(),
                blobs: plan
                    .blobs
                    .iter()
                    .map(|(d, b, _)| (d.clone(), b.len()))
                    .collect(),
                manifest: plan.manifest.clone(),
                digest: plan.digest.clone(),
                acked,
                open_session: if acked {
                    None
                } else {
                    sessions[i].lock().unwrap().clone()
                },
            });
        }
        drop(plans);
        report.push(format!(
            "cycle {cycle}: {acked_count}/{PUSHES} acknowledged (kill after {killed_at_acks} acks)"
        ));
        assert!(
            unexpected.is_empty(),
            "the server answered pushes with unexpected statuses before the kill:\n{}",
            unexpected.join("\n")
        );

        srv.restart();
        let reg = crash_client(&srv.url);
        let problems = verify(&reg, &records).await;
        assert!(
            problems.is_empty(),
            "after kill -9 in cycle {cycle} ({}):\n{}",
            report.join("; "),
            problems.join("\n")
        );
        // The registry still takes pushes after the crash.
        let img = oci::Image::random(2, 64 * 1024);
        reg.push_image(&format!("crash/after-c{cycle}"), "ok", &img)
            .await;
    }
    eprintln!("{}", report.join("\n"));
    let total_acked = records.iter().filter(|r| r.acked).count();
    eprintln!("{total_acked} acknowledged pushes verified across {CYCLES} kill -9 cycles");
}
