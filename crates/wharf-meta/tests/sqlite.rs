//! The shared metadata suite on [`SqliteStore`], plus what only SQLite has: a file
//! that outlives the store, several stores (processes) on one file, the schema.

use rusqlite::Connection;
use std::path::Path;
use wharf_meta::sqlite::SCHEMA_VERSION;
use wharf_meta::testsuite::image;
use wharf_meta::{testsuite, MetaError, MetadataStore, NewManifest, Reference, SqliteStore};
use wharf_oci::{Algorithm, Digest};

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("metadata.db"));
    testsuite::run_all(&store).await;
}

/// The suite again through one account's namespace: accounts are transparent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite_in_an_account_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn MetadataStore> =
        std::sync::Arc::new(open(&dir.path().join("metadata.db")));
    testsuite::run_all(&wharf_meta::Namespaced::new(store, "111122223333")).await;
}

/// Two accounts on one store see only their own repositories, uploads and images.
#[tokio::test]
async fn accounts_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn MetadataStore> =
        std::sync::Arc::new(open(&dir.path().join("metadata.db")));
    let a = wharf_meta::Namespaced::new(store.clone(), "111111111111");
    let b = wharf_meta::Namespaced::new(store.clone(), "222222222222");
    a.create_repository("app").await.unwrap();
    a.create_repository("zeta").await.unwrap();
    b.create_repository("app").await.unwrap();
    b.create_repository("beta").await.unwrap();
    let names = |v: Vec<wharf_meta::Repository>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(a.list_repositories(None, 10).await.unwrap()),
        ["app", "zeta"]
    );
    assert_eq!(
        names(b.list_repositories(None, 10).await.unwrap()),
        ["app", "beta"]
    );
    assert_eq!(
        names(b.list_repositories(Some("app"), 10).await.unwrap()),
        ["beta"]
    );
    assert_eq!(
        names(store.list_repositories(None, 10).await.unwrap()),
        [
            "111111111111/app",
            "111111111111/zeta",
            "222222222222/app",
            "222222222222/beta"
        ]
    );
    let d = Algorithm::Sha256.digest(b"layer");
    a.link_blob("app", &d, 5).await.unwrap();
    assert_eq!(a.repository_blob("app", &d).await.unwrap(), Some(5));
    assert_eq!(
        b.repository_blob("app", &d).await.unwrap(),
        None,
        "no cross-account read"
    );
    let m = image("ns-manifest", &[&d]);
    assert!(matches!(
        b.put_manifest("app", &m, Some("v1")).await,
        Err(MetaError::MissingBlob { repository, .. }) if repository == "app"
    ));
    a.put_manifest("app", &m, Some("v1")).await.unwrap();
    assert!(b
        .get_manifest("app", &Reference::Tag("v1".into()))
        .await
        .unwrap()
        .is_none());
    let up = wharf_meta::Upload {
        id: "u1".into(),
        repository: "app".into(),
        started_at: 1,
        updated_at: 1,
    };
    a.create_upload(&up).await.unwrap();
    assert_eq!(a.get_upload("u1").await.unwrap(), Some(up));
    assert_eq!(
        b.get_upload("u1").await.unwrap(),
        None,
        "another account's upload is invisible"
    );
    assert!(matches!(
        b.delete_repository("zeta", false).await,
        Err(MetaError::RepositoryNotFound(n)) if n == "zeta"
    ));
}

#[tokio::test]
async fn shared_suite_on_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("metadata.db"));
    testsuite::run_all(&store).await;
}

#[tokio::test]
async fn creates_parent_directories_and_configures_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/metadata.db");
    let store = open(&path);
    assert_eq!(store.path(), path);
    store.create_repository("x").await.unwrap();
    assert!(path.exists());

    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        count(&conn, "PRAGMA user_version"),
        i64::from(SCHEMA_VERSION)
    );
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let layer = Algorithm::Sha256.digest(b"layer");
    let m = image("durable", &[&layer]);
    {
        let store = open(&path);
        store.create_repository("team/app").await.unwrap();
        store.link_blob("team/app", &layer, 42).await.unwrap();
        store
            .put_manifest("team/app", &m, Some("v1"))
            .await
            .unwrap();
        store
            .create_upload(&wharf_meta::Upload {
                id: "u1".into(),
                repository: "team/app".into(),
                started_at: 1,
                updated_at: 2,
            })
            .await
            .unwrap();
    }
    // Reopening runs the migrations again: they must be a no-op on a current file.
    for _ in 0..2 {
        let store = open(&path);
        let got = store
            .get_manifest("team/app", &Reference::Tag("v1".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.digest, m.digest);
        assert_eq!(got.body, m.body);
        assert_eq!(
            store.repository_blob("team/app", &layer).await.unwrap(),
            Some(42)
        );
        assert_eq!(store.get_upload("u1").await.unwrap().unwrap().updated_at, 2);
        assert_eq!(store.list_tags("team/app", None, 10).await.unwrap(), ["v1"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let a = open(&path);
    let b = open(&path);
    let layer = Algorithm::Sha256.digest(b"shared layer");

    a.create_repository("shared").await.unwrap();
    assert!(b.get_repository("shared").await.unwrap().is_some());
    assert!(matches!(
        b.create_repository("shared").await,
        Err(MetaError::RepositoryExists(_))
    ));
    b.link_blob("shared", &layer, 7).await.unwrap();
    assert_eq!(a.repository_blob("shared", &layer).await.unwrap(), Some(7));

    let m1 = image("m1", &[&layer]);
    let m2 = image("m2", &[&layer]);
    a.put_manifest("shared", &m1, Some("latest")).await.unwrap();
    assert_eq!(seen(&b).await, Some(m1.digest.clone()));
    let out = b.put_manifest("shared", &m2, Some("latest")).await.unwrap();
    assert_eq!(out.previous_tag_target, Some(m1.digest.clone()));
    assert_eq!(seen(&a).await, Some(m2.digest.clone()), "a sees b's retag");

    // Interleaved writes from both stores: none is lost, none fails on a lock.
    tokio::join!(write(&a, "a", &layer), write(&b, "b", &layer));
    for s in [&a, &b] {
        assert_eq!(s.list_tags("shared", None, 100).await.unwrap().len(), 51);
    }

    b.delete_repository("shared", true).await.unwrap();
    assert!(a.get_repository("shared").await.unwrap().is_none());
    assert_eq!(seen(&a).await, None);
}

async fn seen(s: &SqliteStore) -> Option<Digest> {
    s.get_manifest("shared", &Reference::Tag("latest".into()))
        .await
        .unwrap()
        .map(|m| m.digest)
}

async fn write(s: &SqliteStore, who: &str, layer: &Digest) {
    for i in 0..25 {
        let m = image(format!("{who}-{i}"), &[layer]);
        s.put_manifest("shared", &m, Some(&format!("{who}-{i:02}")))
            .await
            .unwrap();
    }
}

#[test]
fn concurrent_opens_of_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let stores: Vec<SqliteStore> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| open(&path))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        stores[0].create_repository("r").await.unwrap();
        for s in &stores {
            assert!(s.get_repository("r").await.unwrap().is_some());
        }
    });
}

#[tokio::test]
async fn edges_are_rows_and_deletion_cascades() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let store = open(&path);
    let config = Algorithm::Sha256.digest(b"config");
    let layer = Algorithm::Sha256.digest(b"layer");
    store.create_repository("r").await.unwrap();
    store.link_blob("r", &config, 1).await.unwrap();
    store.link_blob("r", &layer, 2).await.unwrap();
    // The config doubles as a layer: one edge per distinct blob.
    let m = image("m", &[&config, &layer, &config]);
    store.put_manifest("r", &m, Some("v1")).await.unwrap();
    let idx = NewManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        blobs: Vec::new(),
        children: vec![m.digest.clone(), m.digest.clone()],
        ..image("index", &[])
    };
    store.put_manifest("r", &idx, Some("multi")).await.unwrap();

    let conn = Connection::open(&path).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM manifest_blobs"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM manifest_children"), 1);
    assert_eq!(
        count(&conn, "SELECT size FROM manifests WHERE digest = (SELECT manifest_digest FROM tags WHERE name = 'v1')"),
        m.body.len() as i64
    );

    assert!(store.delete_manifest("r", &idx.digest).await.unwrap());
    assert_eq!(count(&conn, "SELECT count(*) FROM manifest_children"), 0);
    assert!(store.delete_manifest("r", &m.digest).await.unwrap());
    assert_eq!(count(&conn, "SELECT count(*) FROM manifest_blobs"), 0);
    assert_eq!(count(&conn, "SELECT count(*) FROM tags"), 0);

    store.put_manifest("r", &m, Some("v1")).await.unwrap();
    store
        .create_upload(&wharf_meta::Upload {
            id: "u".into(),
            repository: "r".into(),
            started_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let old_id = count(&conn, "SELECT id FROM repositories WHERE name = 'r'");
    store.delete_repository("r", true).await.unwrap();
    for table in [
        "repository_blobs",
        "manifests",
        "manifest_blobs",
        "manifest_children",
        "tags",
        "uploads",
    ] {
        assert_eq!(
            count(&conn, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table} rows left after deleting the repository"
        );
    }
    assert_eq!(
        count(&conn, "SELECT count(*) FROM blobs"),
        2,
        "blob records stay"
    );
    store.create_repository("r").await.unwrap();
    let new_id = count(&conn, "SELECT id FROM repositories WHERE name = 'r'");
    assert!(new_id > old_id, "repository ids are never reused");
    let dangling: i64 = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |_| Ok(()))
        .unwrap()
        .count() as i64;
    assert_eq!(dangling, 0, "no dangling foreign keys");
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    drop(open(&path));
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(MetaError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

/// Rough throughput of the hottest path. `cargo test -p wharf-meta --release -- --ignored
/// --nocapture manifest_get_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn manifest_get_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir.path().join("metadata.db")));
    let layer = Algorithm::Sha256.digest(b"layer");
    store.create_repository("bench").await.unwrap();
    store.link_blob("bench", &layer, 1).await.unwrap();
    for i in 0..100 {
        let m = image(
            format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(1500)),
            &[&layer],
        );
        store
            .put_manifest("bench", &m, Some(&format!("t{i}")))
            .await
            .unwrap();
    }
    let n = 40_000;
    let tasks = 16;
    let start = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let store = store.clone();
        set.spawn(async move {
            for i in 0..n / tasks {
                let tag = format!("t{}", (i * 7 + t) % 100);
                let m = store
                    .get_manifest("bench", &Reference::Tag(tag))
                    .await
                    .unwrap();
                assert!(m.is_some());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} manifest GETs by tag in {secs:.2}s: {:.0}/s",
        n as f64 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_jobs_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("metadata.db"));
    wharf_meta::testsuite_jobs::run_all(&store).await;
}

/// Two stores on one file (two processes) never hand out one job twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_across_two_stores() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("metadata.db"));
    let b = open(&dir.path().join("metadata.db"));
    wharf_meta::testsuite_jobs::concurrent_claims(&a).await;
    use wharf_meta::JobStore;
    for i in 0..20 {
        assert!(a
            .enqueue_job("two", &format!("{i}"), "{}", 0)
            .await
            .unwrap());
    }
    let claim = |s: SqliteStore, h: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s.claim_job(&["two"], h, 1, 60_000).await.unwrap() {
                got.push(j.id);
            }
            got
        })
    };
    let (x, y) = (claim(a, "a"), claim(b, "b"));
    let (x, y) = (x.await.unwrap(), y.await.unwrap());
    let mut all: Vec<i64> = x.into_iter().chain(y).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20);
}
