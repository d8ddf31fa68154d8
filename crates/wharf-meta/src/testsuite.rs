//! The test suite every [`MetadataStore`] backend must pass (DESIGN.md §5).
//!
//! Run [`run_all`] on a fresh, empty store; each part uses its own repository names
//! (distinct prefixes), so all parts share one store. The parts are public too, to run
//! or debug one alone. Failures panic with a message naming the step.
//!
//! Besides the trait's documentation, the suite pins these conventions:
//! - calls that create something in a repository (`link_blob`, `mount_blob`'s target,
//!   `create_upload`, `put_manifest`) and `delete_repository` fail with
//!   [`MetaError::RepositoryNotFound`] when it does not exist; lookups, lists and
//!   removals in a missing repository return `None`, empty or `false`;
//! - names and tags sort by byte order (as Rust's `str` does; PostgreSQL needs
//!   `COLLATE "C"`), cursors are exclusive and need not exist, `limit` 0 returns nothing;
//! - `stale_uploads(before)` is strict (`updated_at < before`); `touch_upload` of an
//!   unknown id changes nothing and succeeds;
//! - `put_manifest` checks `blobs` (first missing, in the order given, is reported)
//!   and `children` on every put, even when the manifest exists; a re-put keeps the
//!   first `pushed_at`; `previous_tag_target` is `None` when the tag was new or already
//!   pointed at this manifest;
//! - blob records (`blob_size`) outlive every link and repository: only garbage
//!   collection removes them;
//! - deleting a repository removes its manifests, tags, blob links and upload sessions;
//!   a repository recreated under the same name starts empty.
//!
//! [`MetaError::Backend`] cannot be provoked through the trait; backends test it
//! themselves.

use crate::{
    now_millis, ManifestRecord, MetaError, MetadataStore, Millis, NewManifest, PutOutcome,
    Reference, Referrer, Repository, TagMutability, TagPolicy, Upload,
};
use crate::{AccessKey, RepositorySettings};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use wharf_oci::{Algorithm, Digest};

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIG: &str = "application/vnd.example.signature";
const SBOM: &str = "application/vnd.example.sbom";
/// Allowed difference between a backend's clock and ours.
const SKEW: Millis = 60_000;

/// Runs every part of the suite on `store`, which should be empty.
pub async fn run_all(store: &dyn MetadataStore) {
    repositories(store).await;
    repository_listing(store).await;
    blobs(store).await;
    uploads(store).await;
    manifests(store).await;
    indexes(store).await;
    sha512(store).await;
    tags_and_deletion(store).await;
    referrers(store).await;
    repository_deletion(store).await;
    concurrency(store).await;
    tag_policies(store).await;
    access_keys(store).await;
    repository_settings(store).await;
    policies_and_resource_tags(store).await;
    images(store).await;
    server_secrets(store).await;
}

#[track_caller]
fn must<T>(r: Result<T, MetaError>, step: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{step}: unexpected error: {e}"),
    }
}

fn sha256(seed: &str) -> Digest {
    Algorithm::Sha256.digest(seed.as_bytes())
}

/// An image manifest with body `body` referencing `blobs`.
pub fn image(body: impl Into<Vec<u8>>, blobs: &[&Digest]) -> NewManifest {
    let body = Bytes::from(body.into());
    NewManifest {
        digest: Algorithm::Sha256.digest(&body),
        media_type: IMAGE.to_string(),
        body,
        artifact_type: None,
        annotations: None,
        subject: None,
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        children: Vec::new(),
    }
}

/// An index with body `body` over `children`.
fn index(body: &str, children: &[&Digest]) -> NewManifest {
    let body = Bytes::from(body.to_string());
    NewManifest {
        digest: Algorithm::Sha256.digest(&body),
        media_type: INDEX.to_string(),
        body,
        artifact_type: None,
        annotations: None,
        subject: None,
        blobs: Vec::new(),
        children: children.iter().map(|d| (*d).clone()).collect(),
    }
}

/// An artifact manifest of `artifact_type` (if any) whose subject is `subject`.
fn referrer(
    body: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
    blobs: &[&Digest],
) -> NewManifest {
    NewManifest {
        artifact_type: artifact_type.map(str::to_string),
        annotations: Some(format!(r#"{{"org.example.name":"{body}"}}"#)),
        subject: Some(subject.clone()),
        ..image(format!(r#"{{"artifact":"{body}"}}"#), blobs)
    }
}

#[track_caller]
fn assert_recent(at: Millis, since: Millis, step: &str) {
    let now = now_millis();
    assert!(
        at >= since - SKEW && at <= now + SKEW,
        "{step}: timestamp {at} is not between {since} and {now} (±{SKEW} ms)"
    );
}

/// Checks that `record` is what `m` stored.
#[track_caller]
fn assert_record(record: &ManifestRecord, m: &NewManifest, step: &str) {
    assert_eq!(record.digest, m.digest, "{step}: digest");
    assert_eq!(record.media_type, m.media_type, "{step}: media type");
    assert_eq!(
        record.body, m.body,
        "{step}: body must be the exact bytes pushed"
    );
    assert_eq!(
        record.artifact_type, m.artifact_type,
        "{step}: artifact type"
    );
    assert_eq!(record.annotations, m.annotations, "{step}: annotations");
    assert_eq!(record.subject, m.subject, "{step}: subject");
}

async fn get(store: &dyn MetadataStore, repo: &str, r: Reference) -> Option<ManifestRecord> {
    must(
        store.get_manifest(repo, &r).await,
        &format!("get_manifest({repo:?}, {r:?})"),
    )
}

async fn by_tag(store: &dyn MetadataStore, repo: &str, tag: &str) -> Option<Digest> {
    get(store, repo, Reference::Tag(tag.to_string()))
        .await
        .map(|m| m.digest)
}

async fn put(
    store: &dyn MetadataStore,
    repo: &str,
    m: &NewManifest,
    tag: Option<&str>,
) -> PutOutcome {
    must(
        store.put_manifest(repo, m, tag).await,
        &format!("put_manifest({repo:?}, {}, {tag:?})", m.digest),
    )
}

async fn link(store: &dyn MetadataStore, repo: &str, digest: &Digest, size: u64) {
    must(
        store.link_blob(repo, digest, size).await,
        &format!("link_blob({repo:?}, {digest})"),
    );
}

/// All tags of `repo`, in one call.
async fn all_tags(store: &dyn MetadataStore, repo: &str) -> Vec<String> {
    must(store.list_tags(repo, None, 10_000).await, "list_tags")
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Polls all futures concurrently and returns their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Create, duplicate, ensure, get, delete of empty repositories.
pub async fn repositories(store: &dyn MetadataStore) {
    let t0 = now_millis();
    assert_eq!(
        must(store.get_repository("rp/a").await, "get missing"),
        None,
        "a repository that was never created"
    );

    let a = must(store.create_repository("rp/a").await, "create rp/a");
    assert_eq!(a.name, "rp/a");
    assert_recent(a.created_at, t0, "created_at of rp/a");
    assert_eq!(
        must(store.get_repository("rp/a").await, "get rp/a"),
        Some(a.clone())
    );

    match store.create_repository("rp/a").await {
        Err(MetaError::RepositoryExists(name)) => assert_eq!(name, "rp/a"),
        other => panic!("creating rp/a twice: expected RepositoryExists, got {other:?}"),
    }
    assert_eq!(
        must(
            store.get_repository("rp/a").await,
            "get rp/a after duplicate"
        ),
        Some(a.clone()),
        "a refused duplicate must not change the repository"
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        must(
            store.ensure_repository("rp/a").await,
            "ensure existing rp/a"
        ),
        a,
        "ensure_repository must return the existing repository unchanged"
    );
    let t1 = now_millis();
    let b = must(store.ensure_repository("rp/b").await, "ensure new rp/b");
    assert_eq!(b.name, "rp/b");
    assert_recent(b.created_at, t1, "created_at of rp/b");
    assert_eq!(
        must(store.get_repository("rp/b").await, "get rp/b"),
        Some(b.clone())
    );
    assert_eq!(
        must(store.ensure_repository("rp/b").await, "ensure rp/b again"),
        b
    );

    // Names differing only in case or by a prefix are different repositories.
    assert_eq!(must(store.get_repository("RP/A").await, "get RP/A"), None);
    assert_eq!(must(store.get_repository("rp/").await, "get rp/"), None);
    assert_eq!(
        must(store.get_repository("rp/a/x").await, "get rp/a/x"),
        None
    );

    for force in [false, true] {
        match store.delete_repository("rp/missing", force).await {
            Err(MetaError::RepositoryNotFound(name)) => assert_eq!(name, "rp/missing"),
            other => panic!("deleting a missing repository (force={force}): got {other:?}"),
        }
    }
    must(
        store.delete_repository("rp/b", false).await,
        "delete empty rp/b",
    );
    assert_eq!(
        must(store.get_repository("rp/b").await, "get deleted rp/b"),
        None
    );
    match store.delete_repository("rp/b", false).await {
        Err(MetaError::RepositoryNotFound(name)) => assert_eq!(name, "rp/b"),
        other => panic!("deleting rp/b twice: got {other:?}"),
    }
    must(
        store.delete_repository("rp/a", true).await,
        "force-delete empty rp/a",
    );
    assert_eq!(
        must(store.get_repository("rp/a").await, "get deleted rp/a"),
        None
    );
    let again = must(store.create_repository("rp/a").await, "recreate rp/a");
    assert_eq!(again.name, "rp/a");
}

/// Byte-ordered, exclusive-cursor pagination of repositories.
pub async fn repository_listing(store: &dyn MetadataStore) {
    // Orders that differ between byte order and natural-language collations.
    let names = [
        "ls/z", "ls/a_b", "ls/B", "ls/a.b", "ls/ab", "ls/a-b", "ls/a/b", "ls/a0", "ls/a",
    ];
    for name in names {
        must(store.create_repository(name).await, "create for listing");
    }
    let expected = sorted(&names);
    let names_of = |v: Vec<Repository>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();

    // Only our names sort directly after "ls/" (none of the other parts use that prefix).
    let window = must(
        store.list_repositories(Some("ls/"), expected.len()).await,
        "list after ls/",
    );
    for r in &window {
        let created = must(store.get_repository(&r.name).await, "get listed").map(|x| x.created_at);
        assert_eq!(
            Some(r.created_at),
            created,
            "listed created_at of {}",
            r.name
        );
    }
    assert_eq!(names_of(window), expected, "byte-ordered listing");

    let mut paged = Vec::new();
    let mut after = "ls/".to_string();
    while paged.len() < expected.len() {
        let page = names_of(must(
            store.list_repositories(Some(&after), 4).await,
            "list page",
        ));
        assert!(!page.is_empty(), "pagination stopped early after {after:?}");
        assert!(page.len() <= 4, "page larger than the limit: {page:?}");
        if paged.len() + 4 <= expected.len() {
            assert_eq!(page.len(), 4, "a page short of the limit before the end");
        }
        after = page[page.len() - 1].clone();
        paged.extend(page);
    }
    assert_eq!(
        &paged[..expected.len()],
        &expected[..],
        "pages in order, no gaps"
    );

    assert_eq!(
        names_of(must(
            store.list_repositories(Some(&expected[2]), 1).await,
            "list after an existing name",
        )),
        vec![expected[3].clone()],
        "the cursor is exclusive"
    );
    assert_eq!(
        names_of(must(
            store.list_repositories(Some("ls/a."), 1).await,
            "list after a name that does not exist",
        )),
        vec!["ls/a.b".to_string()],
    );
    assert!(
        must(store.list_repositories(None, 0).await, "limit 0").is_empty(),
        "limit 0 returns nothing"
    );
    assert!(
        must(store.list_repositories(Some("ls/z"), 0).await, "limit 0").is_empty(),
        "limit 0 returns nothing"
    );

    // The whole listing, paged from the start: strictly ascending, ours all present.
    let mut all: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = names_of(must(
            store.list_repositories(cursor.as_deref(), 5).await,
            "list everything",
        ));
        assert!(page.len() <= 5, "page larger than the limit");
        let Some(last) = page.last().cloned() else {
            break;
        };
        all.extend(page);
        cursor = Some(last);
    }
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "repositories not strictly ascending by bytes: {all:?}"
    );
    for name in &expected {
        assert!(all.contains(name), "{name} missing from the full listing");
    }
    assert_eq!(
        names_of(must(
            store.list_repositories(None, all.len() + 10).await,
            "list all"
        )),
        all,
        "one large page equals the paged listing"
    );

    must(
        store.delete_repository("ls/a.b", false).await,
        "delete ls/a.b",
    );
    let without: Vec<String> = expected
        .iter()
        .filter(|n| *n != "ls/a.b")
        .cloned()
        .collect();
    assert_eq!(
        names_of(must(
            store.list_repositories(Some("ls/"), without.len()).await,
            "list after delete",
        )),
        without,
        "a deleted repository is not listed"
    );
}

/// Blob links, mounts, isolation between repositories, unlinking.
pub async fn blobs(store: &dyn MetadataStore) {
    let (a, b, c) = ("bl/a", "bl/b", "bl/c");
    for r in [a, b, c] {
        must(store.create_repository(r).await, "create");
    }
    let d1 = sha256("bl-1");
    let d2 = sha256("bl-2");
    let d3 = sha256("bl-3");

    match store.link_blob("bl/missing", &d1, 11).await {
        Err(MetaError::RepositoryNotFound(name)) => assert_eq!(name, "bl/missing"),
        other => panic!("linking into a missing repository: got {other:?}"),
    }
    assert_eq!(
        must(store.blob_size(&d1).await, "blob_size"),
        None,
        "a refused link must not record the blob"
    );
    assert_eq!(
        must(store.repository_blob(a, &d1).await, "repository_blob"),
        None
    );

    link(store, a, &d1, 11).await;
    assert_eq!(
        must(store.repository_blob(a, &d1).await, "a reads d1"),
        Some(11)
    );
    assert_eq!(must(store.blob_size(&d1).await, "blob_size d1"), Some(11));
    assert_eq!(
        must(store.repository_blob(b, &d1).await, "b reads d1"),
        None,
        "a blob linked in one repository must not be readable from another"
    );
    assert_eq!(
        must(
            store.repository_blob("bl/missing", &d1).await,
            "missing repository"
        ),
        None
    );
    link(store, a, &d1, 11).await; // idempotent
    assert_eq!(
        must(store.repository_blob(a, &d1).await, "relinked"),
        Some(11)
    );

    // Zero-byte blobs are blobs.
    let empty = Algorithm::Sha256.digest(b"");
    link(store, c, &empty, 0).await;
    assert_eq!(
        must(store.repository_blob(c, &empty).await, "empty blob"),
        Some(0)
    );
    assert_eq!(
        must(store.blob_size(&empty).await, "empty blob size"),
        Some(0)
    );

    // Large sizes survive the round trip.
    let big = sha256("bl-big");
    link(store, c, &big, 5_000_000_000_000).await;
    assert_eq!(
        must(store.repository_blob(c, &big).await, "big blob"),
        Some(5_000_000_000_000)
    );

    // Mounts.
    assert_eq!(
        must(store.mount_blob(a, b, &d1).await, "mount a->b"),
        Some(11)
    );
    assert_eq!(
        must(store.repository_blob(b, &d1).await, "b after mount"),
        Some(11)
    );
    assert_eq!(
        must(store.mount_blob(a, b, &d1).await, "mount again"),
        Some(11),
        "mounting an already linked blob succeeds"
    );
    link(store, b, &d2, 22).await;
    assert_eq!(
        must(
            store.mount_blob(a, c, &d2).await,
            "mount from a repo without it"
        ),
        None,
        "a mount from a repository that does not hold the blob is refused"
    );
    assert_eq!(
        must(store.repository_blob(c, &d2).await, "c after refused mount"),
        None,
        "a refused mount changes nothing"
    );
    assert_eq!(
        must(store.mount_blob(a, c, &d3).await, "mount unknown blob"),
        None
    );
    assert_eq!(must(store.blob_size(&d3).await, "unknown blob size"), None);
    assert_eq!(
        must(
            store.mount_blob("bl/missing", c, &d2).await,
            "mount from missing repo"
        ),
        None
    );
    assert_eq!(
        must(store.repository_blob(c, &d2).await, "c still without d2"),
        None
    );
    match store.mount_blob(b, "bl/missing", &d2).await {
        Err(MetaError::RepositoryNotFound(name)) => assert_eq!(name, "bl/missing"),
        other => panic!("mounting into a missing repository: got {other:?}"),
    }
    assert_eq!(
        must(store.blob_size(&d2).await, "d2 size"),
        Some(22),
        "blob_size sees blobs of any repository"
    );

    // Unlinking.
    assert!(must(store.unlink_blob(a, &d1).await, "unlink d1 from a"));
    assert!(
        !must(store.unlink_blob(a, &d1).await, "unlink d1 from a twice"),
        "a second unlink finds no link"
    );
    assert_eq!(
        must(store.repository_blob(a, &d1).await, "a after unlink"),
        None
    );
    assert_eq!(
        must(store.repository_blob(b, &d1).await, "b after a unlinked"),
        Some(11),
        "unlinking in one repository leaves the others' links"
    );
    assert_eq!(
        must(store.mount_blob(a, c, &d1).await, "mount after unlink"),
        None,
        "an unlinked blob cannot be mounted from that repository"
    );
    assert!(!must(
        store.unlink_blob(c, &d2).await,
        "unlink never linked"
    ));
    assert!(!must(
        store.unlink_blob("bl/missing", &d2).await,
        "unlink in missing repo"
    ));
    assert!(must(store.unlink_blob(b, &d1).await, "unlink d1 from b"));
    assert_eq!(
        must(store.blob_size(&d1).await, "d1 after every unlink"),
        Some(11),
        "the blob record stays until garbage collection"
    );
    link(store, a, &d1, 11).await;
    assert_eq!(
        must(store.repository_blob(a, &d1).await, "relink after unlink"),
        Some(11)
    );

    // Every recorded blob, in digest order, one page at a time.
    let mut seen = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = must(store.list_blobs(after.as_ref(), 2).await, "list_blobs");
        assert!(page.len() <= 2, "a page holds at most the limit");
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        after = Some(last);
    }
    let names: Vec<String> = seen.iter().map(|d| d.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "blobs are listed once each, in digest order");
    for d in [&d1, &d2, &d3] {
        let recorded = must(store.blob_size(d).await, "blob_size").is_some();
        assert_eq!(seen.contains(d), recorded, "{d} is listed if recorded");
    }
    assert!(seen.contains(&d1));
}

/// Upload session lifecycle and staleness.
pub async fn uploads(store: &dyn MetadataStore) {
    let repo = "up/a";
    must(store.create_repository(repo).await, "create");
    let upload = |id: &str, started_at: Millis, updated_at: Millis| Upload {
        id: id.to_string(),
        repository: repo.to_string(),
        started_at,
        updated_at,
    };
    // Timestamps far in the past, so uploads of other parts (made "now") are never stale
    // at these cutoffs.
    let u1 = upload("up-1", 1_000, 1_000);
    let u2 = upload("up-2", 2_000, 2_000);
    let u3 = upload("up-3", 1_500, 5_000);

    match store
        .create_upload(&Upload {
            repository: "up/missing".to_string(),
            ..upload("up-0", 1, 1)
        })
        .await
    {
        Err(MetaError::RepositoryNotFound(name)) => assert_eq!(name, "up/missing"),
        other => panic!("upload in a missing repository: got {other:?}"),
    }
    assert_eq!(
        must(store.get_upload("up-0").await, "get refused upload"),
        None
    );

    for u in [&u1, &u2, &u3] {
        must(store.create_upload(u).await, "create_upload");
    }
    assert_eq!(
        must(store.get_upload("up-1").await, "get up-1"),
        Some(u1.clone())
    );
    assert_eq!(
        must(store.get_upload("up-3").await, "get up-3"),
        Some(u3.clone())
    );
    assert_eq!(must(store.get_upload("up-none").await, "get unknown"), None);

    let stale = |before: Millis| async move {
        let mut v = must(store.stale_uploads(before).await, "stale_uploads");
        v.sort_by(|x, y| x.id.cmp(&y.id));
        v
    };
    assert_eq!(
        stale(1_000).await,
        Vec::<Upload>::new(),
        "the cutoff is exclusive"
    );
    assert_eq!(stale(2_000).await, vec![u1.clone()]);
    assert_eq!(stale(2_001).await, vec![u1.clone(), u2.clone()]);
    assert_eq!(stale(5_001).await, vec![u1.clone(), u2.clone(), u3.clone()]);

    must(store.touch_upload("up-1", 3_000).await, "touch up-1");
    let touched = upload("up-1", 1_000, 3_000);
    assert_eq!(
        must(store.get_upload("up-1").await, "get touched"),
        Some(touched.clone()),
        "touch moves updated_at only"
    );
    assert_eq!(
        stale(2_001).await,
        vec![u2.clone()],
        "a touched upload is not stale"
    );
    assert_eq!(stale(3_001).await, vec![touched.clone(), u2.clone()]);

    must(store.touch_upload("up-none", 3_000).await, "touch unknown");
    assert_eq!(
        must(
            store.get_upload("up-none").await,
            "get after touching unknown"
        ),
        None,
        "touching an unknown upload does not create it"
    );

    assert!(must(store.delete_upload("up-2").await, "delete up-2"));
    assert!(!must(
        store.delete_upload("up-2").await,
        "delete up-2 twice"
    ));
    assert!(!must(
        store.delete_upload("up-none").await,
        "delete unknown"
    ));
    assert_eq!(must(store.get_upload("up-2").await, "get deleted"), None);
    assert_eq!(stale(5_001).await, vec![touched, u3]);
    assert!(must(store.delete_upload("up-1").await, "delete up-1"));
    assert!(must(store.delete_upload("up-3").await, "delete up-3"));
    assert_eq!(stale(5_001).await, Vec::<Upload>::new());
}

/// Manifest put (checks, idempotence, retagging) and get.
pub async fn manifests(store: &dyn MetadataStore) {
    let repo = "mf/a";
    must(store.create_repository(repo).await, "create");
    must(store.create_repository("mf/b").await, "create");
    must(store.create_repository("mf/other").await, "create");
    let config = sha256("mf-config");
    let l1 = sha256("mf-layer-1");
    let l2 = sha256("mf-layer-2");
    let elsewhere = sha256("mf-elsewhere");
    let missing1 = sha256("mf-missing-1");
    let missing2 = sha256("mf-missing-2");
    link(store, repo, &config, 100).await;
    link(store, repo, &l1, 1_000).await;
    link(store, repo, &l2, 2_000).await;
    link(store, "mf/other", &elsewhere, 5).await;

    // Bodies are stored byte for byte: whitespace, non-ASCII, a trailing newline.
    let m1 = NewManifest {
        annotations: Some(r#"{"org.opencontainers.image.title":"m1 ✓"}"#.to_string()),
        artifact_type: Some("application/vnd.example.config".to_string()),
        ..image(
            "{ \"schemaVersion\": 2,\n  \"name\": \"m1 ✓\" }\n",
            &[&config, &l1, &l2, &l1],
        )
    };
    let m2 = image(r#"{"schemaVersion":2,"name":"m2"}"#, &[&config, &l2]);

    match store.put_manifest("mf/missing", &m1, Some("v1")).await {
        Err(MetaError::RepositoryNotFound(name)) => assert_eq!(name, "mf/missing"),
        other => panic!("put into a missing repository: got {other:?}"),
    }
    assert_eq!(must(store.get_repository("mf/missing").await, "get"), None);

    let broken = image("mf-broken", &[&config, &missing1, &l1, &missing2]);
    match store.put_manifest(repo, &broken, Some("v1")).await {
        Err(MetaError::MissingBlob { repository, digest }) => {
            assert_eq!(repository, repo);
            assert_eq!(digest, missing1, "the first missing blob is reported");
        }
        other => panic!("put with missing blobs: expected MissingBlob, got {other:?}"),
    }
    let isolated = image("mf-isolated", &[&config, &elsewhere]);
    match store.put_manifest(repo, &isolated, None).await {
        Err(MetaError::MissingBlob { digest, .. }) => assert_eq!(digest, elsewhere),
        other => panic!("a blob of another repository: expected MissingBlob, got {other:?}"),
    }
    let orphan = index("mf-orphan-index", &[&sha256("mf-no-such-manifest")]);
    match store.put_manifest(repo, &orphan, Some("v1")).await {
        Err(MetaError::MissingManifest { repository, digest }) => {
            assert_eq!(repository, repo);
            assert_eq!(digest, sha256("mf-no-such-manifest"));
        }
        other => panic!("index with a missing child: expected MissingManifest, got {other:?}"),
    }
    for m in [&broken, &isolated, &orphan] {
        assert!(
            get(store, repo, Reference::Digest(m.digest.clone()))
                .await
                .is_none(),
            "a refused put must not store the manifest"
        );
    }
    assert_eq!(
        by_tag(store, repo, "v1").await,
        None,
        "a refused put must not tag"
    );
    assert!(all_tags(store, repo).await.is_empty());

    let t0 = now_millis();
    assert_eq!(
        put(store, repo, &m1, Some("v1")).await,
        PutOutcome {
            created: true,
            previous_tag_target: None
        }
    );
    let rec = get(store, repo, Reference::Tag("v1".to_string()))
        .await
        .unwrap_or_else(|| panic!("m1 by tag v1 not found"));
    assert_record(&rec, &m1, "m1 by tag");
    assert_recent(rec.pushed_at, t0, "pushed_at of m1");
    assert_eq!(
        get(store, repo, Reference::Digest(m1.digest.clone())).await,
        Some(rec.clone()),
        "by digest equals by tag"
    );
    assert_eq!(
        get(store, repo, Reference::Tag("v2".to_string())).await,
        None
    );
    assert_eq!(
        get(store, repo, Reference::Tag("V1".to_string())).await,
        None
    );
    assert_eq!(
        get(store, repo, Reference::Digest(m2.digest.clone())).await,
        None
    );
    assert_eq!(
        get(store, "mf/b", Reference::Digest(m1.digest.clone())).await,
        None,
        "manifests are per repository"
    );
    assert_eq!(
        get(store, "mf/b", Reference::Tag("v1".to_string())).await,
        None
    );
    assert_eq!(
        get(store, "mf/missing", Reference::Tag("v1".to_string())).await,
        None
    );

    // Idempotent re-puts keep the first pushed_at.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        put(store, repo, &m1, Some("v1")).await,
        PutOutcome {
            created: false,
            previous_tag_target: None
        }
    );
    assert_eq!(
        put(store, repo, &m1, None).await,
        PutOutcome {
            created: false,
            previous_tag_target: None
        }
    );
    assert_eq!(
        get(store, repo, Reference::Digest(m1.digest.clone())).await,
        Some(rec.clone()),
        "a re-put changes nothing"
    );

    // Retagging reports the previous target.
    assert_eq!(
        put(store, repo, &m2, Some("v1")).await,
        PutOutcome {
            created: true,
            previous_tag_target: Some(m1.digest.clone())
        }
    );
    assert_eq!(by_tag(store, repo, "v1").await, Some(m2.digest.clone()));
    assert!(
        get(store, repo, Reference::Digest(m1.digest.clone()))
            .await
            .is_some(),
        "the old target stays"
    );
    assert_eq!(
        put(store, repo, &m1, Some("v1")).await,
        PutOutcome {
            created: false,
            previous_tag_target: Some(m2.digest.clone())
        }
    );
    assert_eq!(by_tag(store, repo, "v1").await, Some(m1.digest.clone()));
    assert_eq!(
        put(store, repo, &m2, Some("latest")).await,
        PutOutcome {
            created: false,
            previous_tag_target: None
        },
        "a new tag has no previous target"
    );
    assert_eq!(all_tags(store, repo).await, sorted(&["latest", "v1"]));

    // A refused put leaves an existing tag where it was.
    match store.put_manifest(repo, &broken, Some("latest")).await {
        Err(MetaError::MissingBlob { .. }) => {}
        other => panic!("expected MissingBlob, got {other:?}"),
    }
    assert_eq!(by_tag(store, repo, "latest").await, Some(m2.digest.clone()));

    // Checks run on every put: a manifest whose blob was unlinked cannot be re-put.
    let m3 = image("mf-m3", &[&config]);
    put(store, repo, &m3, None).await;
    assert!(must(
        store.unlink_blob(repo, &config).await,
        "unlink config"
    ));
    match store.put_manifest(repo, &m3, Some("m3")).await {
        Err(MetaError::MissingBlob { digest, .. }) => assert_eq!(digest, config),
        other => panic!("re-put after unlinking its blob: expected MissingBlob, got {other:?}"),
    }
    assert_eq!(by_tag(store, repo, "m3").await, None);
    link(store, repo, &config, 100).await;
    assert_eq!(
        put(store, repo, &m3, Some("m3")).await,
        PutOutcome {
            created: false,
            previous_tag_target: None
        }
    );

    // The same manifest in another repository is a separate record.
    match store.put_manifest("mf/b", &m1, Some("v1")).await {
        Err(MetaError::MissingBlob { repository, .. }) => assert_eq!(repository, "mf/b"),
        other => panic!("blobs are linked per repository: expected MissingBlob, got {other:?}"),
    }
    for d in [&config, &l1, &l2] {
        assert!(must(store.mount_blob(repo, "mf/b", d).await, "mount").is_some());
    }
    assert_eq!(
        put(store, "mf/b", &m1, Some("other")).await,
        PutOutcome {
            created: true,
            previous_tag_target: None
        },
        "a manifest is new to each repository"
    );
    assert!(must(
        store.delete_manifest("mf/b", &m1.digest).await,
        "delete in b"
    ));
    assert_eq!(
        get(store, repo, Reference::Digest(m1.digest.clone())).await,
        Some(rec),
        "deleting in one repository leaves the other's copy"
    );
    assert_eq!(by_tag(store, repo, "v1").await, Some(m1.digest.clone()));

    // A manifest without blobs (e.g. an artifact) and a large body.
    let bare = image(vec![b'x'; 300_000], &[]);
    assert!(put(store, repo, &bare, Some("bare")).await.created);
    let got = get(store, repo, Reference::Tag("bare".to_string()))
        .await
        .unwrap_or_else(|| panic!("bare manifest not found"));
    assert_record(&got, &bare, "large body");
}

/// Indexes and their child manifests.
pub async fn indexes(store: &dyn MetadataStore) {
    let repo = "ix/a";
    must(store.create_repository(repo).await, "create");
    must(store.create_repository("ix/b").await, "create");
    let config = sha256("ix-config");
    link(store, repo, &config, 10).await;
    let amd64 = image("ix-amd64", &[&config]);
    let arm64 = image("ix-arm64", &[&config]);
    put(store, repo, &amd64, None).await;

    let idx = index("ix-index", &[&amd64.digest, &arm64.digest]);
    match store.put_manifest(repo, &idx, Some("multi")).await {
        Err(MetaError::MissingManifest { digest, .. }) => assert_eq!(digest, arm64.digest),
        other => panic!("index before its child: expected MissingManifest, got {other:?}"),
    }
    // A blob with a child's digest is not a manifest.
    link(store, repo, &arm64.digest, 8).await;
    match store.put_manifest(repo, &idx, Some("multi")).await {
        Err(MetaError::MissingManifest { digest, .. }) => assert_eq!(digest, arm64.digest),
        other => panic!("a blob is not a child manifest: expected MissingManifest, got {other:?}"),
    }
    // A child in another repository does not count.
    link(store, "ix/b", &config, 10).await;
    put(store, "ix/b", &arm64, None).await;
    match store.put_manifest(repo, &idx, Some("multi")).await {
        Err(MetaError::MissingManifest { repository, digest }) => {
            assert_eq!(repository, repo);
            assert_eq!(digest, arm64.digest);
        }
        other => panic!("a child of another repository: expected MissingManifest, got {other:?}"),
    }
    assert_eq!(by_tag(store, repo, "multi").await, None);

    put(store, repo, &arm64, None).await;
    let idx = index("ix-index", &[&amd64.digest, &arm64.digest, &amd64.digest]);
    assert!(
        put(store, repo, &idx, Some("multi")).await.created,
        "an index with a repeated child"
    );
    let rec = get(store, repo, Reference::Tag("multi".to_string()))
        .await
        .unwrap_or_else(|| panic!("index by tag not found"));
    assert_record(&rec, &idx, "index");
    assert!(!put(store, repo, &idx, None).await.created);

    // Deleting the index leaves its children.
    assert!(must(
        store.delete_manifest(repo, &idx.digest).await,
        "delete index"
    ));
    assert_eq!(by_tag(store, repo, "multi").await, None);
    for child in [&amd64, &arm64] {
        assert!(
            get(store, repo, Reference::Digest(child.digest.clone()))
                .await
                .is_some(),
            "deleting an index must not delete its children"
        );
    }
    assert!(
        put(store, repo, &idx, Some("multi")).await.created,
        "an index can be pushed again after deletion"
    );
}

/// sha512 digests for manifests, blobs, children and subjects.
pub async fn sha512(store: &dyn MetadataStore) {
    let repo = "sx/a";
    must(store.create_repository(repo).await, "create");
    let config = Algorithm::Sha512.digest(b"sx-config");
    let layer = Algorithm::Sha512.digest(b"sx-layer");
    link(store, repo, &config, 12).await;
    link(store, repo, &layer, 34).await;
    assert_eq!(
        must(store.repository_blob(repo, &layer).await, "sha512 blob"),
        Some(34)
    );
    assert_eq!(
        must(store.blob_size(&config).await, "sha512 blob size"),
        Some(12)
    );

    let body = Bytes::from_static(br#"{"schemaVersion":2,"sx":true}"#);
    let m = NewManifest {
        digest: Algorithm::Sha512.digest(&body),
        body,
        ..image("", &[&config, &layer])
    };
    assert!(put(store, repo, &m, Some("v512")).await.created);
    let rec = get(store, repo, Reference::Digest(m.digest.clone()))
        .await
        .unwrap_or_else(|| panic!("sha512 manifest not found by digest"));
    assert_record(&rec, &m, "sha512 manifest");
    assert_eq!(by_tag(store, repo, "v512").await, Some(m.digest.clone()));

    let idx_body = Bytes::from_static(br#"{"schemaVersion":2,"sx-index":true}"#);
    let idx = NewManifest {
        digest: Algorithm::Sha512.digest(&idx_body),
        body: idx_body,
        ..index("", &[&m.digest])
    };
    assert!(put(store, repo, &idx, Some("idx512")).await.created);
    let sig = NewManifest {
        subject: Some(m.digest.clone()),
        artifact_type: Some(SIG.to_string()),
        ..image("sx-sig", &[])
    };
    put(store, repo, &sig, None).await;
    let refs = must(store.referrers(repo, &m.digest, None).await, "referrers");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, sig.digest);
    let rec = get(store, repo, Reference::Digest(sig.digest.clone()))
        .await
        .unwrap_or_else(|| panic!("referrer not found"));
    assert_eq!(
        rec.subject,
        Some(m.digest.clone()),
        "sha512 subject round trip"
    );
    assert!(must(
        store.delete_manifest(repo, &m.digest).await,
        "delete sha512"
    ));
    assert_eq!(by_tag(store, repo, "v512").await, None);
}

/// Tag listing, tag deletion and manifest deletion.
pub async fn tags_and_deletion(store: &dyn MetadataStore) {
    let repo = "tg/a";
    must(store.create_repository(repo).await, "create");
    let layer = sha256("tg-layer");
    link(store, repo, &layer, 7).await;
    let m = image("tg-m", &[&layer]);
    let other = image("tg-other", &[&layer]);

    // Byte order differs from natural-language collation for these.
    let tags = [
        "latest", "v1", "V1", "1.0", "1.0-rc", "1.0.1", "10", "1_0", "_a", "A-", "a", "B",
    ];
    for tag in tags {
        put(store, repo, &m, Some(tag)).await;
    }
    let expected = sorted(&tags);
    assert_eq!(all_tags(store, repo).await, expected, "byte-ordered tags");

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = must(
            store.list_tags(repo, after.as_deref(), 5).await,
            "list_tags page",
        );
        assert!(page.len() <= 5, "page larger than the limit");
        let Some(last) = page.last().cloned() else {
            break;
        };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, expected, "paged tags");
    assert_eq!(
        must(
            store.list_tags(repo, Some(&expected[3]), 2).await,
            "after existing"
        ),
        expected[4..6].to_vec(),
        "the cursor is exclusive"
    );
    assert_eq!(
        must(
            store.list_tags(repo, Some("1.0."), 1).await,
            "after a tag that does not exist"
        ),
        vec!["1.0.1".to_string()],
    );
    assert!(must(
        store
            .list_tags(repo, Some(&expected[expected.len() - 1]), 5)
            .await,
        "past the end"
    )
    .is_empty());
    assert!(must(store.list_tags(repo, None, 0).await, "limit 0").is_empty());
    assert!(must(
        store.list_tags("tg/missing", None, 10).await,
        "missing repo"
    )
    .is_empty());
    must(store.create_repository("tg/empty").await, "create");
    assert!(must(store.list_tags("tg/empty", None, 10).await, "empty repo").is_empty());

    // Deleting a tag leaves the manifest.
    assert!(must(store.delete_tag(repo, "a").await, "delete tag a"));
    assert!(!must(
        store.delete_tag(repo, "a").await,
        "delete tag a twice"
    ));
    assert!(!must(
        store.delete_tag(repo, "never").await,
        "delete unknown tag"
    ));
    assert!(!must(
        store.delete_tag("tg/missing", "v1").await,
        "delete in missing repo"
    ));
    assert_eq!(by_tag(store, repo, "a").await, None);
    assert_eq!(
        by_tag(store, repo, "A-").await,
        Some(m.digest.clone()),
        "other tags stay"
    );
    assert!(get(store, repo, Reference::Digest(m.digest.clone()))
        .await
        .is_some());
    let without_a: Vec<String> = expected.iter().filter(|t| *t != "a").cloned().collect();
    assert_eq!(all_tags(store, repo).await, without_a);

    // Deleting a manifest removes every tag pointing at it, and only those.
    put(store, repo, &other, Some("keep")).await;
    assert!(must(
        store.delete_manifest(repo, &m.digest).await,
        "delete m"
    ));
    assert!(!must(
        store.delete_manifest(repo, &m.digest).await,
        "delete m twice"
    ));
    assert!(!must(
        store.delete_manifest(repo, &sha256("tg-never")).await,
        "delete unknown manifest"
    ));
    assert!(!must(
        store.delete_manifest("tg/missing", &other.digest).await,
        "delete in missing repo"
    ));
    assert_eq!(
        get(store, repo, Reference::Digest(m.digest.clone())).await,
        None
    );
    for tag in tags {
        assert_eq!(
            by_tag(store, repo, tag).await,
            None,
            "tag {tag} of a deleted manifest"
        );
    }
    assert_eq!(all_tags(store, repo).await, vec!["keep".to_string()]);
    assert_eq!(
        by_tag(store, repo, "keep").await,
        Some(other.digest.clone())
    );
    assert_eq!(
        must(
            store.repository_blob(repo, &layer).await,
            "layer after manifest delete"
        ),
        Some(7),
        "deleting a manifest does not unlink its blobs"
    );

    // A deleted manifest can be pushed again, as new.
    let t0 = now_millis();
    assert_eq!(
        put(store, repo, &m, Some("latest")).await,
        PutOutcome {
            created: true,
            previous_tag_target: None
        }
    );
    let rec = get(store, repo, Reference::Tag("latest".to_string()))
        .await
        .unwrap_or_else(|| panic!("re-pushed manifest not found"));
    assert_recent(rec.pushed_at, t0, "pushed_at after re-push");
    assert_eq!(all_tags(store, repo).await, sorted(&["keep", "latest"]));
}

/// The referrers query: subject, artifact type filter, order, isolation.
pub async fn referrers(store: &dyn MetadataStore) {
    let repo = "rf/a";
    must(store.create_repository(repo).await, "create");
    must(store.create_repository("rf/b").await, "create");
    let layer = sha256("rf-layer");
    link(store, repo, &layer, 3).await;
    let target = image("rf-target", &[&layer]);
    put(store, repo, &target, Some("v1")).await;
    let subject = target.digest.clone();

    let r1 = referrer("sig-1", &subject, Some(SIG), &[&layer]);
    let r2 = referrer("sbom-1", &subject, Some(SBOM), &[]);
    let r3 = referrer("sig-2", &subject, Some(SIG), &[]);
    let r4 = referrer("untyped", &subject, None, &[]);
    let body5 = Bytes::from_static(b"{\"rf\":\"sha512 sig\"}");
    let r5 = NewManifest {
        digest: Algorithm::Sha512.digest(&body5),
        body: body5,
        ..referrer("sig-512", &subject, Some(SIG), &[])
    };
    let unrelated = referrer("other-subject", &sha256("rf-other"), Some(SIG), &[]);
    let plain = image("rf-plain", &[&layer]);
    for m in [&r1, &r2, &r3, &r4, &r5, &unrelated, &plain] {
        put(store, repo, m, None).await;
    }
    // Same subject in another repository.
    let foreign = referrer("foreign", &subject, Some(SIG), &[]);
    put(store, "rf/b", &foreign, None).await;

    let referrers_of = |ms: &[&NewManifest]| {
        let mut v: Vec<Referrer> = ms
            .iter()
            .map(|m| Referrer {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.body.len() as u64,
                artifact_type: m.artifact_type.clone(),
                annotations: m.annotations.clone(),
            })
            .collect();
        v.sort_by_key(|r| r.digest.to_string());
        v
    };

    assert_eq!(
        must(store.referrers(repo, &subject, None).await, "all referrers"),
        referrers_of(&[&r1, &r2, &r3, &r4, &r5]),
        "every referrer of the subject, sorted by digest, nothing else"
    );
    assert_eq!(
        must(
            store.referrers(repo, &subject, Some(SIG)).await,
            "signatures"
        ),
        referrers_of(&[&r1, &r3, &r5])
    );
    assert_eq!(
        must(store.referrers(repo, &subject, Some(SBOM)).await, "sboms"),
        referrers_of(&[&r2])
    );
    assert!(must(
        store
            .referrers(repo, &subject, Some("application/vnd.example.none"))
            .await,
        "unknown type"
    )
    .is_empty());
    assert!(must(store.referrers(repo, &layer, None).await, "no referrers").is_empty());
    assert_eq!(
        must(
            store.referrers(repo, &sha256("rf-other"), None).await,
            "missing subject"
        ),
        referrers_of(&[&unrelated]),
        "a subject need not exist"
    );
    assert_eq!(
        must(
            store.referrers("rf/b", &subject, None).await,
            "other repository"
        ),
        referrers_of(&[&foreign]),
        "referrers are per repository"
    );
    assert!(must(
        store.referrers("rf/missing", &subject, None).await,
        "missing repo"
    )
    .is_empty());

    assert!(must(
        store.delete_manifest(repo, &r2.digest).await,
        "delete r2"
    ));
    assert_eq!(
        must(store.referrers(repo, &subject, None).await, "after delete"),
        referrers_of(&[&r1, &r3, &r4, &r5])
    );
    assert!(must(store.referrers(repo, &subject, Some(SBOM)).await, "sboms").is_empty());
}

/// Repository deletion: refusal when not empty, cascade, a clean re-creation.
pub async fn repository_deletion(store: &dyn MetadataStore) {
    let repo = "rm/a";
    must(store.create_repository(repo).await, "create");
    must(store.create_repository("rm/b").await, "create");
    let layer = sha256("rm-layer");
    link(store, repo, &layer, 9).await;
    link(store, "rm/b", &layer, 9).await;
    let m = image("rm-m", &[&layer]);
    let sig = referrer("rm-sig", &m.digest, Some(SIG), &[]);
    put(store, repo, &m, Some("v1")).await;
    put(store, repo, &sig, None).await;
    put(store, "rm/b", &m, Some("v1")).await;
    let now = now_millis();
    let upload = Upload {
        id: "rm-upload".to_string(),
        repository: repo.to_string(),
        started_at: now,
        updated_at: now,
    };
    must(store.create_upload(&upload).await, "create_upload");

    match store.delete_repository(repo, false).await {
        Err(MetaError::RepositoryNotEmpty { name, manifests }) => {
            assert_eq!(name, repo);
            assert_eq!(manifests, 2, "the count of manifests in the repository");
        }
        other => {
            panic!("deleting a repository with images: expected RepositoryNotEmpty, got {other:?}")
        }
    }
    assert!(must(store.get_repository(repo).await, "get").is_some());
    assert_eq!(
        by_tag(store, repo, "v1").await,
        Some(m.digest.clone()),
        "refusal changes nothing"
    );
    assert_eq!(
        must(store.get_upload("rm-upload").await, "upload"),
        Some(upload)
    );

    must(store.delete_repository(repo, true).await, "force delete");
    assert_eq!(must(store.get_repository(repo).await, "get deleted"), None);
    assert_eq!(
        get(store, repo, Reference::Digest(m.digest.clone())).await,
        None
    );
    assert_eq!(
        must(
            store.get_upload("rm-upload").await,
            "upload of deleted repo"
        ),
        None
    );
    assert_eq!(
        must(
            store.repository_blob(repo, &layer).await,
            "link of deleted repo"
        ),
        None
    );
    assert!(
        must(store.list_repositories(Some("rm/"), 10).await, "list")
            .iter()
            .all(|r| r.name != repo),
        "deleted repository still listed"
    );
    assert_eq!(
        must(store.blob_size(&layer).await, "blob record"),
        Some(9),
        "deleting a repository keeps the blob record for garbage collection"
    );
    // The other repository is untouched.
    assert_eq!(by_tag(store, "rm/b", "v1").await, Some(m.digest.clone()));
    assert_eq!(
        must(store.repository_blob("rm/b", &layer).await, "b's link"),
        Some(9)
    );

    // Recreated under the same name: empty.
    let t0 = now_millis();
    let again = must(store.create_repository(repo).await, "recreate");
    assert_recent(
        again.created_at,
        t0,
        "created_at of the recreated repository",
    );
    assert_eq!(by_tag(store, repo, "v1").await, None);
    for d in [&m.digest, &sig.digest] {
        assert_eq!(get(store, repo, Reference::Digest(d.clone())).await, None);
    }
    assert!(all_tags(store, repo).await.is_empty());
    assert!(must(store.referrers(repo, &m.digest, None).await, "referrers").is_empty());
    assert_eq!(
        must(store.repository_blob(repo, &layer).await, "old link"),
        None
    );
    assert_eq!(
        must(store.get_upload("rm-upload").await, "old upload"),
        None
    );
    match store.put_manifest(repo, &m, Some("v1")).await {
        Err(MetaError::MissingBlob { digest, .. }) => assert_eq!(digest, layer),
        other => panic!("the recreated repository kept a blob link: got {other:?}"),
    }
    link(store, repo, &layer, 9).await;
    assert_eq!(
        put(store, repo, &m, Some("v1")).await,
        PutOutcome {
            created: true,
            previous_tag_target: None
        }
    );

    // Only manifests make a repository non-empty; links and uploads go with it.
    must(store.create_repository("rm/c").await, "create");
    link(store, "rm/c", &layer, 9).await;
    let upload = Upload {
        id: "rm-upload-c".to_string(),
        repository: "rm/c".to_string(),
        started_at: now,
        updated_at: now,
    };
    must(store.create_upload(&upload).await, "create_upload");
    must(
        store.delete_repository("rm/c", false).await,
        "delete rm/c without manifests",
    );
    assert_eq!(
        must(store.get_upload("rm-upload-c").await, "upload of rm/c"),
        None
    );
    must(store.create_repository("rm/c").await, "recreate rm/c");
    assert_eq!(
        must(store.repository_blob("rm/c", &layer).await, "link of rm/c"),
        None
    );

    // After deleting its manifests a repository may be deleted without force.
    match store.delete_repository(repo, false).await {
        Err(MetaError::RepositoryNotEmpty { manifests: 1, .. }) => {}
        other => panic!("deleting a repository with one image: got {other:?}"),
    }
    assert!(must(
        store.delete_manifest(repo, &m.digest).await,
        "delete m"
    ));
    must(
        store.delete_repository(repo, false).await,
        "delete emptied repository",
    );
    assert_eq!(must(store.get_repository(repo).await, "get"), None);
}

/// Concurrent calls on one store.
pub async fn concurrency(store: &dyn MetadataStore) {
    let repo = "cc/a";
    let ensured = join_all((0..8).map(|_| store.ensure_repository(repo)).collect()).await;
    let ensured: Vec<Repository> = ensured
        .into_iter()
        .map(|r| must(r, "concurrent ensure_repository"))
        .collect();
    assert!(
        ensured.iter().all(|r| *r == ensured[0]),
        "concurrent ensure_repository calls must agree: {ensured:?}"
    );

    let layer = sha256("cc-layer");
    link(store, repo, &layer, 1).await;
    let base = image("cc-base", &[&layer]);
    put(store, repo, &base, Some("base")).await;
    let manifests: Vec<NewManifest> = (0..16)
        .map(|i| image(format!("cc-{i}"), &[&layer]))
        .collect();
    let tags: Vec<String> = (0..16).map(|i| format!("t{i:02}")).collect();
    let puts = join_all(
        manifests
            .iter()
            .zip(&tags)
            .map(|(m, t)| async move {
                let put = store.put_manifest(repo, m, Some(t)).await;
                let read = store
                    .get_manifest(repo, &Reference::Tag("base".to_string()))
                    .await;
                (put, read)
            })
            .collect(),
    )
    .await;
    for (put, read) in puts {
        assert!(must(put, "concurrent put_manifest").created);
        assert_eq!(
            must(read, "concurrent get_manifest").map(|m| m.digest),
            Some(base.digest.clone())
        );
    }
    let mut expected: Vec<String> = tags.clone();
    expected.push("base".to_string());
    expected.sort();
    assert_eq!(all_tags(store, repo).await, expected);

    // Concurrent retags of one tag: exactly one put finds each previous target.
    let retags = join_all(
        manifests
            .iter()
            .map(|m| store.put_manifest(repo, m, Some("moving")))
            .collect(),
    )
    .await;
    let outcomes: Vec<PutOutcome> = retags.into_iter().map(|r| must(r, "retag")).collect();
    let firsts = outcomes
        .iter()
        .filter(|o| o.previous_tag_target.is_none())
        .count();
    assert_eq!(firsts, 1, "exactly one retag created the tag: {outcomes:?}");
    // The moves form one chain: every target but the last was replaced exactly once.
    let mut replaced: Vec<Digest> = outcomes
        .iter()
        .filter_map(|o| o.previous_tag_target.clone())
        .collect();
    replaced.sort();
    replaced.dedup();
    assert_eq!(
        replaced.len(),
        manifests.len() - 1,
        "lost tag updates: {outcomes:?}"
    );
    let final_target = by_tag(store, repo, "moving")
        .await
        .unwrap_or_else(|| panic!("tag moving not found"));
    assert!(manifests.iter().any(|m| m.digest == final_target));
    assert!(
        !replaced.contains(&final_target),
        "the final target was reported as replaced"
    );
}

/// Tag mutability: settings are stored and validated, and `put_manifest` refuses to
/// move an immutable tag (same manifest again is fine; new tags are fine).
pub async fn tag_policies(store: &dyn MetadataStore) {
    let repo = "policy/app";
    let created = must(store.create_repository(repo).await, "create");
    assert_eq!(
        created.tag_policy,
        TagPolicy::default(),
        "new repositories are mutable"
    );
    let missing = store
        .set_tag_policy("policy/missing", &TagPolicy::default())
        .await;
    assert!(
        matches!(missing, Err(MetaError::RepositoryNotFound(_))),
        "set_tag_policy on a missing repository: {missing:?}"
    );
    let invalid = TagPolicy {
        mutability: TagMutability::Immutable,
        exclusion_filters: vec!["latest".into()],
    };
    assert!(
        matches!(
            store.set_tag_policy(repo, &invalid).await,
            Err(MetaError::InvalidSetting(_))
        ),
        "filters without *_WITH_EXCLUSION must be refused"
    );

    let blob = sha256("policy-layer");
    link(store, repo, &blob, 10).await;
    let one = image("policy-one", &[&blob]);
    let two = image("policy-two", &[&blob]);
    put(store, repo, &one, Some("v1")).await;
    put(store, repo, &one, Some("latest")).await;

    let policy = TagPolicy {
        mutability: TagMutability::ImmutableWithExclusion,
        exclusion_filters: vec!["latest".into(), "dev-*".into()],
    };
    let set = must(store.set_tag_policy(repo, &policy).await, "set policy");
    assert_eq!(set.tag_policy, policy);
    let got = must(store.get_repository(repo).await, "get").expect("exists");
    assert_eq!(got.tag_policy, policy, "policy read back");
    let listed = must(store.list_repositories(Some("policy/"), 10).await, "list");
    assert_eq!(
        listed
            .iter()
            .find(|r| r.name == repo)
            .map(|r| &r.tag_policy),
        Some(&policy),
        "policy in listings"
    );

    // v1 is immutable: moving it fails and changes nothing.
    match store.put_manifest(repo, &two, Some("v1")).await {
        Err(MetaError::TagImmutable {
            repository,
            tag,
            current,
            ..
        }) => {
            assert_eq!((repository.as_str(), tag.as_str()), (repo, "v1"));
            assert_eq!(current, one.digest);
        }
        other => panic!("moving an immutable tag: {other:?}"),
    }
    assert_eq!(by_tag(store, repo, "v1").await, Some(one.digest.clone()));
    assert!(
        get(store, repo, Reference::Digest(two.digest.clone()))
            .await
            .is_none(),
        "a refused put must not store the manifest"
    );
    // The same manifest again is fine; excluded tags and new tags move freely.
    put(store, repo, &one, Some("v1")).await;
    put(store, repo, &two, Some("latest")).await;
    put(store, repo, &two, Some("dev-7")).await;
    put(store, repo, &one, Some("dev-7")).await;
    put(store, repo, &two, Some("v2")).await;
    assert_eq!(
        by_tag(store, repo, "latest").await,
        Some(two.digest.clone())
    );

    // MUTABLE_WITH_EXCLUSION: only matching tags are immutable.
    let policy = TagPolicy {
        mutability: TagMutability::MutableWithExclusion,
        exclusion_filters: vec!["v*".into()],
    };
    must(store.set_tag_policy(repo, &policy).await, "set policy 2");
    assert!(matches!(
        store.put_manifest(repo, &one, Some("v2")).await,
        Err(MetaError::TagImmutable { .. })
    ));
    put(store, repo, &one, Some("latest")).await;

    // Back to MUTABLE: everything moves.
    must(
        store.set_tag_policy(repo, &TagPolicy::default()).await,
        "set mutable",
    );
    put(store, repo, &one, Some("v2")).await;
    assert_eq!(by_tag(store, repo, "v2").await, Some(one.digest.clone()));
}

/// Access keys: create (duplicate refused), look up, list per account, delete; the
/// secret never shows in `Debug`.
pub async fn access_keys(store: &dyn MetadataStore) {
    let key = |id: &str, account: &str| AccessKey {
        access_key_id: id.to_string(),
        secret_access_key: format!("secret-of-{id}"),
        account_id: account.to_string(),
        user_name: "admin".to_string(),
        active: true,
        created_at: 1_700_000_000_000,
    };
    let a = key("AKIASUITE0000000000B", "111111111111");
    let b = key("AKIASUITE0000000000A", "111111111111");
    let c = AccessKey {
        active: false,
        ..key("AKIASUITE0000000000C", "222222222222")
    };
    assert!(
        !format!("{a:?}").contains("secret-of"),
        "Debug leaks the secret"
    );
    for k in [&a, &b, &c] {
        must(store.create_access_key(k).await, "create_access_key");
    }
    assert!(
        matches!(
            store.create_access_key(&a).await,
            Err(MetaError::AccessKeyExists(id)) if id == a.access_key_id
        ),
        "duplicate access key"
    );
    assert_eq!(
        must(store.get_access_key(&a.access_key_id).await, "get"),
        Some(a.clone())
    );
    assert_eq!(
        must(store.get_access_key(&c.access_key_id).await, "get inactive"),
        Some(c.clone())
    );
    assert_eq!(
        must(store.get_access_key("AKIANOPE").await, "get missing"),
        None
    );
    assert_eq!(
        must(store.list_access_keys("111111111111").await, "list"),
        vec![b.clone(), a.clone()]
    );
    assert!(must(
        store.delete_access_key(&a.access_key_id).await,
        "delete"
    ));
    assert!(!must(
        store.delete_access_key(&a.access_key_id).await,
        "delete again"
    ));
    assert_eq!(
        must(store.get_access_key(&a.access_key_id).await, "gone"),
        None
    );
    assert_eq!(
        must(
            store.list_access_keys("111111111111").await,
            "list after delete"
        ),
        vec![b]
    );
}

/// Creation settings are stored and read back; scan-on-push can change later.
pub async fn repository_settings(store: &dyn MetadataStore) {
    let settings = RepositorySettings {
        tag_policy: TagPolicy {
            mutability: TagMutability::Immutable,
            exclusion_filters: Vec::new(),
        },
        scan_on_push: true,
        encryption_type: "KMS".to_string(),
        kms_key: Some("arn:aws:kms:us-east-1:111111111111:key/abc".to_string()),
    };
    let made = must(
        store
            .create_repository_with("settings/app", &settings)
            .await,
        "create_repository_with",
    );
    assert_eq!(made.tag_policy, settings.tag_policy);
    assert!(made.scan_on_push);
    let got = must(store.get_repository("settings/app").await, "get").expect("exists");
    assert_eq!(got, made, "settings read back");
    assert!(matches!(
        store
            .create_repository_with("settings/app", &settings)
            .await,
        Err(MetaError::RepositoryExists(_))
    ));
    let bad = RepositorySettings {
        tag_policy: TagPolicy {
            mutability: TagMutability::MutableWithExclusion,
            exclusion_filters: Vec::new(),
        },
        ..RepositorySettings::default()
    };
    assert!(matches!(
        store.create_repository_with("settings/bad", &bad).await,
        Err(MetaError::InvalidSetting(_))
    ));
    assert!(must(store.get_repository("settings/bad").await, "get bad").is_none());
    let plain = must(store.create_repository("settings/plain").await, "create");
    assert_eq!(plain.encryption_type, "AES256");
    assert!(!plain.scan_on_push && plain.kms_key.is_none());
    let on = must(
        store.set_scan_on_push("settings/plain", true).await,
        "scan on",
    );
    assert!(on.scan_on_push);
    assert!(matches!(
        store.set_scan_on_push("settings/none", true).await,
        Err(MetaError::RepositoryNotFound(_))
    ));
}

/// Repository and registry policies; resource tags.
pub async fn policies_and_resource_tags(store: &dyn MetadataStore) {
    let r = must(store.create_repository("rpolicy/app").await, "create");
    assert_eq!(r.policy, None);
    let doc = r#"{"Version":"2012-10-17","Statement":[]}"#;
    let set = must(
        store.set_repository_policy("rpolicy/app", Some(doc)).await,
        "set policy",
    );
    assert_eq!(set.policy.as_deref(), Some(doc));
    let got = must(store.get_repository("rpolicy/app").await, "get").expect("exists");
    assert_eq!(got.policy.as_deref(), Some(doc), "policy read back");
    let listed = must(store.list_repositories(Some("rpolicy/"), 10).await, "list");
    assert_eq!(listed[0].policy.as_deref(), Some(doc), "policy in listings");
    let cleared = must(
        store.set_repository_policy("rpolicy/app", None).await,
        "clear policy",
    );
    assert_eq!(cleared.policy, None);
    assert!(matches!(
        store.set_repository_policy("rpolicy/none", Some(doc)).await,
        Err(MetaError::RepositoryNotFound(_))
    ));

    assert_eq!(
        must(store.registry_policy("111122223333").await, "get"),
        None
    );
    must(
        store.set_registry_policy("111122223333", Some(doc)).await,
        "set registry policy",
    );
    assert_eq!(
        must(store.registry_policy("111122223333").await, "get").as_deref(),
        Some(doc)
    );
    assert_eq!(
        must(store.registry_policy("444455556666").await, "other"),
        None
    );
    must(
        store.set_registry_policy("111122223333", None).await,
        "clear",
    );
    assert_eq!(
        must(store.registry_policy("111122223333").await, "get"),
        None
    );

    let t = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert!(must(store.repository_tags("rpolicy/app").await, "tags").is_empty());
    must(
        store
            .tag_repository("rpolicy/app", &[t("team", "a"), t("env", "prod")])
            .await,
        "tag",
    );
    must(
        store.tag_repository("rpolicy/app", &[t("team", "b")]).await,
        "retag",
    );
    assert_eq!(
        must(store.repository_tags("rpolicy/app").await, "tags"),
        vec![t("env", "prod"), t("team", "b")],
        "sorted by key, overwritten value"
    );
    must(
        store
            .untag_repository("rpolicy/app", &["env".to_string(), "nope".to_string()])
            .await,
        "untag",
    );
    assert_eq!(
        must(store.repository_tags("rpolicy/app").await, "tags"),
        vec![t("team", "b")]
    );
    let many: Vec<(String, String)> = (0..50).map(|i| t(&format!("k{i}"), "v")).collect();
    assert!(matches!(
        store.tag_repository("rpolicy/app", &many).await,
        Err(MetaError::InvalidSetting(_))
    ));
    assert_eq!(
        must(store.repository_tags("rpolicy/app").await, "tags").len(),
        1,
        "a refused tagging changes nothing"
    );
    assert!(matches!(
        store.tag_repository("rpolicy/none", &[t("a", "b")]).await,
        Err(MetaError::RepositoryNotFound(_))
    ));
    must(store.delete_repository("rpolicy/app", true).await, "delete");
    must(store.create_repository("rpolicy/app").await, "recreate");
    assert!(
        must(store.repository_tags("rpolicy/app").await, "tags").is_empty(),
        "tags go with the repository"
    );
}

/// Image listings with sizes, tags and pull times.
pub async fn images(store: &dyn MetadataStore) {
    must(store.create_repository("images/app").await, "create");
    let (a, b, c) = (sha256("img-a"), sha256("img-b"), sha256("img-c"));
    must(store.link_blob("images/app", &a, 100).await, "link a");
    must(store.link_blob("images/app", &b, 20).await, "link b");
    must(store.link_blob("images/app", &c, 5).await, "link c");
    let m1 = image("images-one", &[&a, &b]);
    let m2 = image("images-two", &[&c]);
    must(
        store.put_manifest("images/app", &m1, Some("v1")).await,
        "put 1",
    );
    must(
        store.put_manifest("images/app", &m1, Some("latest")).await,
        "tag 1",
    );
    must(store.put_manifest("images/app", &m2, None).await, "put 2");
    let idx = index("images-index", &[&m1.digest, &m2.digest]);
    must(
        store.put_manifest("images/app", &idx, Some("multi")).await,
        "put index",
    );

    let all = must(store.list_images("images/app", None, 10).await, "list");
    assert_eq!(all.len(), 3);
    let mut sorted: Vec<String> = all.iter().map(|i| i.digest.to_string()).collect();
    sorted.sort();
    assert_eq!(
        all.iter().map(|i| i.digest.to_string()).collect::<Vec<_>>(),
        sorted,
        "sorted by digest"
    );
    let one = all
        .iter()
        .find(|i| i.digest == m1.digest)
        .expect("m1 listed");
    assert_eq!(one.size, 120, "size = referenced blobs");
    assert_eq!(one.tags, vec!["latest".to_string(), "v1".to_string()]);
    assert_eq!(one.media_type, IMAGE);
    assert_eq!(one.last_pulled_at, None);
    let two = all
        .iter()
        .find(|i| i.digest == m2.digest)
        .expect("m2 listed");
    assert!(two.tags.is_empty() && two.size == 5);
    let ix = all
        .iter()
        .find(|i| i.digest == idx.digest)
        .expect("index listed");
    assert_eq!(ix.size, 120, "an index is as large as its largest child");
    assert_eq!(ix.tags, vec!["multi".to_string()]);

    assert_eq!(
        must(
            store.manifest_parents("images/app", &m1.digest).await,
            "parents"
        ),
        vec![idx.digest.clone()],
        "the index lists m1"
    );
    assert!(must(
        store.manifest_parents("images/app", &idx.digest).await,
        "none"
    )
    .is_empty());
    assert!(must(
        store.manifest_parents("images/none", &m1.digest).await,
        "no repo"
    )
    .is_empty());
    let page = must(
        store.list_images("images/app", Some(&sorted[0]), 1).await,
        "page",
    );
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].digest.to_string(), sorted[1], "cursor is exclusive");
    assert!(must(store.list_images("images/none", None, 10).await, "none").is_empty());

    let by_tag = must(
        store
            .get_image("images/app", &Reference::Tag("v1".into()))
            .await,
        "by tag",
    );
    assert_eq!(by_tag.as_ref(), Some(one));
    let by_digest = must(
        store
            .get_image("images/app", &Reference::Digest(m2.digest.clone()))
            .await,
        "by digest",
    );
    assert_eq!(by_digest.as_ref(), Some(two));
    assert!(must(
        store
            .get_image("images/app", &Reference::Tag("nope".into()))
            .await,
        "missing"
    )
    .is_none());

    must(
        store
            .record_pulls(
                "images/app",
                &[(m1.digest.clone(), 5_000), (sha256("gone"), 1)],
            )
            .await,
        "record",
    );
    must(
        store
            .record_pulls("images/app", &[(m1.digest.clone(), 4_000)])
            .await,
        "older pull",
    );
    let pulled = must(
        store
            .get_image("images/app", &Reference::Digest(m1.digest.clone()))
            .await,
        "pulled",
    )
    .expect("exists");
    assert_eq!(pulled.last_pulled_at, Some(5_000), "later times win");
    must(
        store
            .record_pulls("images/none", &[(m1.digest.clone(), 1)])
            .await,
        "missing repository is skipped",
    );
}

/// Server secrets: the first candidate wins.
pub async fn server_secrets(store: &dyn MetadataStore) {
    let first = must(store.server_secret("suite-token", b"first").await, "first");
    assert_eq!(first, b"first");
    let second = must(
        store.server_secret("suite-token", b"second").await,
        "second",
    );
    assert_eq!(second, b"first", "the stored secret is kept");
    let other = must(store.server_secret("suite-other", b"x").await, "other");
    assert_eq!(other, b"x");
}
