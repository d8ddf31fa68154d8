//! The shared suites on [`PgStore`] (metadata, also through an account's namespace;
//! IAM; jobs), plus what only PostgreSQL has: several stores (replicas) on one
//! database racing for the same rows, migrations on connect, URL forms, the schema.
//!
//! Each test gets a fresh database from `wharf_testenv::postgres`.

use std::collections::HashSet;
use std::sync::Arc;
use wharf_meta::testsuite::image;
use wharf_meta::testsuite_iam::user;
use wharf_meta::{
    testsuite, testsuite_iam, testsuite_jobs, AccessKey, IamErrorKind, IamStore, JobStore,
    MetaError, MetadataStore, Namespaced, NewManifest, PutOutcome, Reference, RepositorySettings,
    TagMutability, TagPolicy,
};
use wharf_meta_pg::schema::SCHEMA_VERSION;
use wharf_meta_pg::PgStore;
use wharf_oci::{Algorithm, Digest};

async fn connect(url: &str) -> PgStore {
    PgStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

async fn store() -> PgStore {
    connect(&wharf_testenv::postgres::database().await).await
}

/// Two stores on one fresh database: two replicas.
async fn replicas() -> (Arc<PgStore>, Arc<PgStore>) {
    let url = wharf_testenv::postgres::database().await;
    (Arc::new(connect(&url).await), Arc::new(connect(&url).await))
}

/// A plain connection to `url`, for looking at the tables.
async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_suite() {
    testsuite::run_all(&store().await).await;
}

/// The suite again through one account's namespace: accounts are transparent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_suite_in_an_account_namespace() {
    let store: Arc<dyn MetadataStore> = Arc::new(store().await);
    testsuite::run_all(&Namespaced::new(store, "111122223333")).await;
}

#[tokio::test]
async fn metadata_suite_on_current_thread_runtime() {
    testsuite::run_all(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_suite() {
    testsuite_iam::run_all(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_suite() {
    testsuite_jobs::run_all(&store().await).await;
}

/// The suites pass on one database through two stores at once, each suite on its own
/// store: their tables and locks do not get in each other's way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suites_side_by_side_on_two_replicas() {
    let (a, b) = replicas().await;
    let meta = tokio::spawn(async move { testsuite::run_all(&*a).await });
    let iam = tokio::spawn(async move {
        testsuite_iam::run_all(&*b).await;
        testsuite_jobs::run_all(&*b).await;
    });
    meta.await.unwrap();
    iam.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_again_finds_the_schema_current() {
    let url = wharf_testenv::postgres::database().await;
    let layer = Algorithm::Sha256.digest(b"layer");
    let m = image("durable", &[&layer]);
    {
        let s = connect(&url).await;
        s.create_repository("team/app").await.unwrap();
        s.link_blob("team/app", &layer, 42).await.unwrap();
        s.put_manifest("team/app", &m, Some("v1")).await.unwrap();
    }
    let client = sql(&url).await;
    const APPLIED: &str = "SELECT version, applied_at FROM wharf_schema_versions ORDER BY version";
    let before = sql_rows(&client, APPLIED).await;
    assert_eq!(before.len(), SCHEMA_VERSION as usize, "{before:?}");
    for _ in 0..2 {
        let s = connect(&url).await;
        let got = s
            .get_manifest("team/app", &Reference::Tag("v1".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.body, m.body);
        assert_eq!(
            s.repository_blob("team/app", &layer).await.unwrap(),
            Some(42)
        );
    }
    assert_eq!(
        sql_rows(&client, APPLIED).await,
        before,
        "a second connect applies nothing"
    );
}

async fn sql_rows(client: &tokio_postgres::Client, query: &str) -> Vec<(i32, i64)> {
    client
        .query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Replicas starting together on a new database: one migrates, the others wait on
/// the advisory lock and find the schema current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let url = wharf_testenv::postgres::database().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().unwrap());
    }
    stores[0].create_repository("r").await.unwrap();
    for s in &stores {
        assert!(s.get_repository("r").await.unwrap().is_some());
    }
    let client = sql(&url).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM wharf_schema_versions").await,
        i64::from(SCHEMA_VERSION)
    );
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let url = wharf_testenv::postgres::database().await;
    drop(connect(&url).await);
    let client = sql(&url).await;
    client
        .execute(
            "INSERT INTO wharf_schema_versions (version, applied_at) VALUES ($1, 0)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    match PgStore::connect(&url).await {
        Err(MetaError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_backend_errors() {
    match PgStore::connect("mysql://nope").await {
        Err(MetaError::Backend(msg)) => assert!(msg.contains("invalid PostgreSQL URL"), "{msg}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
    // A port nothing listens on: the message names the database and the cause.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = wharf_meta_pg::PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    match PgStore::connect_with(
        &format!("postgres://u:secret@127.0.0.1:{port}/nowhere"),
        options,
    )
    .await
    {
        Err(MetaError::Backend(msg)) => {
            assert!(msg.contains("nowhere"), "{msg}");
            assert!(!msg.contains("secret"), "the password leaked: {msg}");
        }
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

/// `postgresql://` URLs, parameters in the query, and the Unix socket.
#[tokio::test]
async fn url_forms() {
    let url = wharf_testenv::postgres::database().await;
    let (scheme, rest) = url.split_once("://").unwrap();
    assert!(scheme == "postgres" || scheme == "postgresql");
    let other_scheme = format!("postgresql://{rest}");
    connect(&other_scheme)
        .await
        .create_repository("via-postgresql-scheme")
        .await
        .unwrap();

    // user@host:port/db → postgresql:///db?host=..&port=..&user=..
    let (authority, db) = rest.split_once('/').unwrap();
    let db = db.split('?').next().unwrap();
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    let user = userinfo.split(':').next().unwrap();
    let query_form = format!("postgresql:///{db}?host={host}&port={port}&user={user}");
    let s = connect(&query_form).await;
    assert!(s
        .get_repository("via-postgresql-scheme")
        .await
        .unwrap()
        .is_some());

    if let Some(dir) = wharf_testenv::postgres::socket_dir().await {
        let socket = format!("postgres://{user}@/{db}?host={}&port={port}", dir.display());
        let s = connect(&socket).await;
        assert!(s
            .get_repository("via-postgresql-scheme")
            .await
            .unwrap()
            .is_some());
    }
}

/// Edges are rows; deleting a manifest removes its edges and tags; deleting a
/// repository cascades to everything but the blob records.
#[tokio::test]
async fn edges_are_rows_and_deletion_cascades() {
    let url = wharf_testenv::postgres::database().await;
    let store = connect(&url).await;
    let client = sql(&url).await;
    let config = Algorithm::Sha256.digest(b"config");
    let layer = Algorithm::Sha256.digest(b"layer");
    store.create_repository("r").await.unwrap();
    store.link_blob("r", &config, 1).await.unwrap();
    store.link_blob("r", &layer, 2).await.unwrap();
    let m = image("m", &[&config, &layer, &config]);
    store.put_manifest("r", &m, Some("v1")).await.unwrap();
    let idx = NewManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        blobs: Vec::new(),
        children: vec![m.digest.clone(), m.digest.clone()],
        ..image("index", &[])
    };
    store.put_manifest("r", &idx, Some("multi")).await.unwrap();
    store
        .tag_repository("r", &[("k".into(), "v".into())])
        .await
        .unwrap();

    assert_eq!(
        count(&client, "SELECT count(*) FROM manifest_blobs").await,
        2
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM manifest_children").await,
        1
    );
    assert_eq!(
        count(
            &client,
            "SELECT size FROM manifests WHERE digest = (SELECT manifest_digest FROM tags WHERE name = 'v1')"
        )
        .await,
        m.body.len() as i64
    );
    assert!(store.delete_manifest("r", &idx.digest).await.unwrap());
    assert_eq!(
        count(&client, "SELECT count(*) FROM manifest_children").await,
        0
    );
    assert!(store.delete_manifest("r", &m.digest).await.unwrap());
    assert_eq!(
        count(&client, "SELECT count(*) FROM manifest_blobs").await,
        0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM tags").await, 0);

    store.put_manifest("r", &m, Some("v1")).await.unwrap();
    store.put_manifest("r", &idx, Some("multi")).await.unwrap();
    store
        .create_upload(&wharf_meta::Upload {
            id: "u".into(),
            repository: "r".into(),
            started_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let old_id = count(&client, "SELECT id FROM repositories WHERE name = 'r'").await;
    store.delete_repository("r", true).await.unwrap();
    for table in [
        "repository_blobs",
        "manifests",
        "manifest_blobs",
        "manifest_children",
        "tags",
        "uploads",
        "repository_tags",
    ] {
        assert_eq!(
            count(&client, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} rows left after deleting the repository"
        );
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM blobs").await,
        2,
        "blob records stay"
    );
    store.create_repository("r").await.unwrap();
    let new_id = count(&client, "SELECT id FROM repositories WHERE name = 'r'").await;
    assert!(new_id > old_id, "repository ids are never reused");
}

// --- Replicas racing for the same rows -------------------------------------------

/// Puts of different manifests to one tag from both replicas: the moves form one
/// chain (exactly one put created the tag, every other target was replaced exactly
/// once, the final target never), so no update was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retags_across_replicas() {
    let (a, b) = replicas().await;
    let layer = Algorithm::Sha256.digest(b"race layer");
    a.create_repository("race").await.unwrap();
    a.link_blob("race", &layer, 1).await.unwrap();
    for round in 0..3 {
        let tag = format!("moving-{round}");
        let manifests: Vec<NewManifest> = (0..48)
            .map(|i| image(format!("race-{round}-{i}"), &[&layer]))
            .collect();
        let mut tasks = Vec::new();
        for (w, chunk) in manifests.chunks(6).enumerate() {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            let chunk = chunk.to_vec();
            let tag = tag.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for m in &chunk {
                    out.push(store.put_manifest("race", m, Some(&tag)).await.unwrap());
                }
                out
            }));
        }
        let mut outcomes: Vec<PutOutcome> = Vec::new();
        for t in tasks {
            outcomes.extend(t.await.unwrap());
        }
        assert!(outcomes.iter().all(|o| o.created), "every manifest was new");
        let firsts = outcomes
            .iter()
            .filter(|o| o.previous_tag_target.is_none())
            .count();
        assert_eq!(firsts, 1, "exactly one put created the tag: {outcomes:?}");
        let replaced: Vec<Digest> = outcomes
            .iter()
            .filter_map(|o| o.previous_tag_target.clone())
            .collect();
        let distinct: HashSet<&Digest> = replaced.iter().collect();
        assert_eq!(distinct.len(), replaced.len(), "a target replaced twice");
        assert_eq!(replaced.len(), manifests.len() - 1, "lost tag updates");
        for s in [&a, &b] {
            let last = s
                .get_manifest("race", &Reference::Tag(tag.clone()))
                .await
                .unwrap()
                .unwrap()
                .digest;
            assert!(manifests.iter().any(|m| m.digest == last));
            assert!(!distinct.contains(&last), "the final target was replaced");
        }
    }
}

/// With an immutable repository, of two pushes of different manifests to one new tag
/// from the two replicas exactly one wins; the other is refused, naming the winner,
/// and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn immutable_tag_race_has_one_winner() {
    let (a, b) = replicas().await;
    let layer = Algorithm::Sha256.digest(b"immutable layer");
    let settings = RepositorySettings {
        tag_policy: TagPolicy {
            mutability: TagMutability::Immutable,
            exclusion_filters: Vec::new(),
        },
        ..RepositorySettings::default()
    };
    a.create_repository_with("locked", &settings).await.unwrap();
    b.link_blob("locked", &layer, 1).await.unwrap();
    for round in 0..25 {
        let tag = format!("v{round}");
        let ma = image(format!("locked-a-{round}"), &[&layer]);
        let mb = image(format!("locked-b-{round}"), &[&layer]);
        let ta = {
            let (s, m, tag) = (a.clone(), ma.clone(), tag.clone());
            tokio::spawn(async move { s.put_manifest("locked", &m, Some(&tag)).await })
        };
        let tb = {
            let (s, m, tag) = (b.clone(), mb.clone(), tag.clone());
            tokio::spawn(async move { s.put_manifest("locked", &m, Some(&tag)).await })
        };
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let (winner, loser, refused) = match (ra, rb) {
            (Ok(_), Err(e)) => (&ma, &mb, e),
            (Err(e), Ok(_)) => (&mb, &ma, e),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        match refused {
            MetaError::TagImmutable {
                repository,
                tag: t,
                current,
                ..
            } => {
                assert_eq!((repository.as_str(), t.as_str()), ("locked", tag.as_str()));
                assert_eq!(current, winner.digest, "the refusal names the winner");
            }
            other => panic!("round {round}: expected TagImmutable, got {other:?}"),
        }
        for s in [&a, &b] {
            let got = s
                .get_manifest("locked", &Reference::Tag(tag.clone()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.digest, winner.digest);
            assert!(
                s.get_manifest("locked", &Reference::Digest(loser.digest.clone()))
                    .await
                    .unwrap()
                    .is_none(),
                "the refused push stored its manifest"
            );
        }
    }
}

/// Racing creations of one repository name from both replicas: one success, the rest
/// RepositoryExists; racing ensures all return that same repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_repository_creation() {
    let (a, b) = replicas().await;
    for round in 0..20 {
        let name = format!("new/{round}");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let name = name.clone();
                tokio::spawn(async move { s.create_repository(&name).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    assert_eq!(r.name, name);
                    won += 1;
                }
                Err(MetaError::RepositoryExists(n)) => assert_eq!(n, name),
                Err(e) => panic!("round {round}: unexpected error {e}"),
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one creation succeeds");

        let name = format!("ensured/{round}");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let name = name.clone();
                tokio::spawn(async move { s.ensure_repository(&name).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        assert!(
            seen.iter().all(|r| *r == seen[0]),
            "ensures disagree: {seen:?}"
        );
    }
}

/// Racing links of one blob from both replicas, into one repository and into several:
/// all succeed, one blob record, every link readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_blob_links() {
    let (a, b) = replicas().await;
    for r in ["links/one", "links/two", "links/three"] {
        a.create_repository(r).await.unwrap();
    }
    for round in 0..20u64 {
        let d = Algorithm::Sha256.digest(format!("blob-{round}").as_bytes());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let repo = ["links/one", "links/two", "links/one", "links/three"][i % 4];
                let d = d.clone();
                tokio::spawn(async move { s.link_blob(repo, &d, 100 + round).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for s in [&a, &b] {
            assert_eq!(s.blob_size(&d).await.unwrap(), Some(100 + round));
            for r in ["links/one", "links/two", "links/three"] {
                assert_eq!(s.repository_blob(r, &d).await.unwrap(), Some(100 + round));
            }
        }
    }
}

/// Replicas offering different candidates for one server secret agree on one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_server_secrets_agree() {
    let (a, b) = replicas().await;
    for round in 0..20 {
        let name = format!("token-{round}");
        let ca = format!("candidate-a-{round}").into_bytes();
        let cb = format!("candidate-b-{round}").into_bytes();
        let ta = {
            let (s, n, c) = (a.clone(), name.clone(), ca.clone());
            tokio::spawn(async move { s.server_secret(&n, &c).await.unwrap() })
        };
        let tb = {
            let (s, n, c) = (b.clone(), name.clone(), cb.clone());
            tokio::spawn(async move { s.server_secret(&n, &c).await.unwrap() })
        };
        let (sa, sb) = (ta.await.unwrap(), tb.await.unwrap());
        assert_eq!(sa, sb, "round {round}: replicas got different secrets");
        assert!(sa == ca || sa == cb);
        assert_eq!(a.server_secret(&name, b"later").await.unwrap(), sa);
    }
}

/// Workers on both replicas claim from one queue at once: every job is handed out
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_job_claims_across_replicas() {
    const JOBS: usize = 120;
    const T0: i64 = 1_700_000_000_000;
    let (a, b) = replicas().await;
    for i in 0..JOBS {
        let s = if i % 2 == 0 { &a } else { &b };
        assert!(s
            .enqueue_job("replicated", &format!("k{i:03}"), "{}", T0 + (i as i64 % 7))
            .await
            .unwrap());
    }
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let s = if w % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let holder = format!("worker-{w}");
                let mut got = Vec::new();
                while let Some(j) = s
                    .claim_job(&["replicated"], &holder, T0 + 10, 60_000)
                    .await
                    .unwrap()
                {
                    assert_eq!(j.attempts, 1, "{} handed out before", j.key);
                    got.push(j.key.clone());
                    assert!(s.complete_job(j.id, &holder).await.unwrap());
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), JOBS, "jobs claimed {} times", all.len());
    assert_eq!(unique.len(), JOBS, "a job was claimed twice");
    assert!(a.list_jobs("replicated").await.unwrap().is_empty());

    // Named leases: of replicas racing for one, exactly one holds it.
    for round in 0..20 {
        let name = format!("gc-{round}");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let name = name.clone();
                tokio::spawn(async move {
                    s.acquire_lease(&name, &format!("r{i}"), T0, 1000)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut held = 0;
        for t in tasks {
            held += usize::from(t.await.unwrap());
        }
        assert_eq!(held, 1, "round {round}: one holder");
    }
}

/// IAM names and quotas hold across replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iam_races_across_replicas() {
    let (a, b) = replicas().await;
    let acct = "300000000001";
    for round in 0..10 {
        let spellings = ["dev", "Dev", "DEV", "dEv"];
        let tasks: Vec<_> = spellings
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let u = user(acct, &format!("{n}{round}"), "/");
                tokio::spawn(async move { s.create_user(&u).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(e) => assert_eq!(e.iam_kind(), Some(IamErrorKind::EntityAlreadyExists)),
            }
        }
        assert_eq!(won, 1, "round {round}: one user");

        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let key = AccessKey {
                    access_key_id: format!("AKIAREPLICA{round:02}{i:07}"),
                    secret_access_key: "s".into(),
                    account_id: acct.into(),
                    user_name: format!("DEV{round}"),
                    active: true,
                    created_at: 0,
                };
                tokio::spawn(async move { s.create_user_access_key(&key).await })
            })
            .collect();
        let mut made = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => made += 1,
                Err(e) => assert_eq!(e.iam_kind(), Some(IamErrorKind::LimitExceeded), "{e}"),
            }
        }
        assert_eq!(made, wharf_meta::iam::MAX_ACCESS_KEYS_PER_USER);
    }
}

/// A tag policy change waits for in-flight pushes, and pushes after it obey it; a
/// repository deleted while pushes race is gone afterwards with everything in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_race_with_policy_changes_and_deletion() {
    let (a, b) = replicas().await;
    let layer = Algorithm::Sha256.digest(b"policy race layer");
    a.create_repository("flip").await.unwrap();
    a.link_blob("flip", &layer, 1).await.unwrap();
    let first = image("flip-first", &[&layer]);
    a.put_manifest("flip", &first, Some("stable"))
        .await
        .unwrap();
    let pushes: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let m = image(format!("flip-{i}"), &[&layer]);
            tokio::spawn(async move { s.put_manifest("flip", &m, Some("stable")).await })
        })
        .collect();
    let immutable = TagPolicy {
        mutability: TagMutability::Immutable,
        exclusion_filters: Vec::new(),
    };
    b.set_tag_policy("flip", &immutable).await.unwrap();
    let frozen = a
        .get_manifest("flip", &Reference::Tag("stable".into()))
        .await
        .unwrap()
        .unwrap()
        .digest;
    for p in pushes {
        match p.await.unwrap() {
            Ok(_) | Err(MetaError::TagImmutable { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        b.get_manifest("flip", &Reference::Tag("stable".into()))
            .await
            .unwrap()
            .unwrap()
            .digest,
        frozen,
        "no push moved the tag after the policy changed"
    );

    // Deletion racing with pushes: afterwards the repository is gone or, if a
    // push recreated nothing (it cannot), empty; pushes fail with RepositoryNotFound.
    let pushes: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let m = image(format!("doomed-{i}"), &[&layer]);
            tokio::spawn(async move { s.put_manifest("flip", &m, Some(&format!("d{i}"))).await })
        })
        .collect();
    a.delete_repository("flip", true).await.unwrap();
    for p in pushes {
        match p.await.unwrap() {
            Ok(_) | Err(MetaError::RepositoryNotFound(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(b.get_repository("flip").await.unwrap().is_none());
    assert!(b.list_tags("flip", None, 100).await.unwrap().is_empty());
}

// --- Deterministic interleavings: a raw connection holds what another replica's
// transaction would hold, and the store's call must wait for it and then decide on
// the committed outcome.

/// Waits a moment and checks `task` is still blocked.
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>, what: &str) {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !task.is_finished(),
        "{what} did not wait for the other transaction"
    );
}

/// A push to a tag another transaction is creating waits for it: after a commit it is
/// refused on an immutable repository (naming the other target), after a rollback it
/// creates the tag itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_waits_for_an_uncommitted_tag() {
    let url = wharf_testenv::postgres::database().await;
    let store = Arc::new(connect(&url).await);
    let mut raw = sql(&url).await;
    let layer = Algorithm::Sha256.digest(b"held layer");
    let settings = RepositorySettings {
        tag_policy: TagPolicy {
            mutability: TagMutability::Immutable,
            exclusion_filters: Vec::new(),
        },
        ..RepositorySettings::default()
    };
    store
        .create_repository_with("held", &settings)
        .await
        .unwrap();
    store.link_blob("held", &layer, 1).await.unwrap();
    let theirs = image("held-theirs", &[&layer]);
    let ours = image("held-ours", &[&layer]);
    store.put_manifest("held", &theirs, None).await.unwrap();

    for commit in [true, false] {
        let tag = format!("v-{commit}");
        let tx = raw.transaction().await.unwrap();
        tx.execute(
            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)
             SELECT id, $2, $3, 0 FROM repositories WHERE name = $1",
            &[&"held", &tag, &theirs.digest.to_string()],
        )
        .await
        .unwrap();
        let push = {
            let (s, m, tag) = (store.clone(), ours.clone(), tag.clone());
            tokio::spawn(async move { s.put_manifest("held", &m, Some(&tag)).await })
        };
        still_waiting(&push, "the push").await;
        if commit {
            tx.commit().await.unwrap();
            match push.await.unwrap() {
                Err(MetaError::TagImmutable { current, .. }) => assert_eq!(current, theirs.digest),
                other => panic!("expected TagImmutable after the commit, got {other:?}"),
            }
        } else {
            tx.rollback().await.unwrap();
            assert_eq!(
                push.await.unwrap().unwrap(),
                PutOutcome {
                    created: true,
                    previous_tag_target: None
                }
            );
            // The next round's manifest must be new again.
            assert!(store.delete_tag("held", &tag).await.unwrap());
            assert!(store.delete_manifest("held", &ours.digest).await.unwrap());
        }
    }
}

/// A push waits for an uncommitted change of the tag policy and obeys the new policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_waits_for_a_policy_change() {
    let url = wharf_testenv::postgres::database().await;
    let store = Arc::new(connect(&url).await);
    let mut raw = sql(&url).await;
    let layer = Algorithm::Sha256.digest(b"policy layer");
    store.create_repository("turning").await.unwrap();
    store.link_blob("turning", &layer, 1).await.unwrap();
    let one = image("turning-one", &[&layer]);
    let two = image("turning-two", &[&layer]);
    store
        .put_manifest("turning", &one, Some("v1"))
        .await
        .unwrap();

    let tx = raw.transaction().await.unwrap();
    tx.execute(
        "UPDATE repositories SET tag_mutability = 'IMMUTABLE' WHERE name = 'turning'",
        &[],
    )
    .await
    .unwrap();
    let push = {
        let (s, m) = (store.clone(), two.clone());
        tokio::spawn(async move { s.put_manifest("turning", &m, Some("v1")).await })
    };
    still_waiting(&push, "the push").await;
    tx.commit().await.unwrap();
    assert!(
        matches!(push.await.unwrap(), Err(MetaError::TagImmutable { .. })),
        "the push must see the committed policy"
    );
}

/// Creating a repository another transaction is creating waits for it: after a commit
/// it is RepositoryExists, after a rollback it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_creation_waits_for_an_uncommitted_one() {
    let url = wharf_testenv::postgres::database().await;
    let store = Arc::new(connect(&url).await);
    let mut raw = sql(&url).await;
    for commit in [true, false] {
        let name = format!("pending-{commit}");
        let tx = raw.transaction().await.unwrap();
        tx.execute(
            "INSERT INTO repositories (name, created_at) VALUES ($1, 0)",
            &[&name],
        )
        .await
        .unwrap();
        let create = {
            let (s, name) = (store.clone(), name.clone());
            tokio::spawn(async move { s.create_repository(&name).await })
        };
        still_waiting(&create, "create_repository").await;
        if commit {
            tx.commit().await.unwrap();
            assert!(matches!(
                create.await.unwrap(),
                Err(MetaError::RepositoryExists(n)) if n == name
            ));
        } else {
            tx.rollback().await.unwrap();
            assert_eq!(create.await.unwrap().unwrap().name, name);
        }
    }
}

/// A claim passes over a job another claimant has locked instead of waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_skips_a_locked_job() {
    const T0: i64 = 1_700_000_000_000;
    let url = wharf_testenv::postgres::database().await;
    let store = connect(&url).await;
    let mut raw = sql(&url).await;
    assert!(store.enqueue_job("k", "first", "{}", T0).await.unwrap());
    assert!(store
        .enqueue_job("k", "second", "{}", T0 + 1)
        .await
        .unwrap());
    let tx = raw.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM jobs WHERE key = 'first' FOR UPDATE", &[])
        .await
        .unwrap();
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.claim_job(&["k"], "w", T0 + 10, 1000),
    )
    .await
    .expect("the claim waited on a locked job")
    .unwrap()
    .unwrap();
    assert_eq!(got.key, "second");
    tx.rollback().await.unwrap();
    let got = store
        .claim_job(&["k"], "w", T0 + 10, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.key, "first");
}

/// The private test cluster sorts text in natural-language order by default, so the
/// suites' byte-order checks would catch a query missing `COLLATE "C"`.
#[tokio::test]
async fn the_test_cluster_does_not_sort_by_bytes_by_default() {
    if std::env::var_os(wharf_testenv::postgres::ENV).is_some() {
        return; // a cluster given from outside has whatever locale it has
    }
    let url = wharf_testenv::postgres::database().await;
    let client = sql(&url).await;
    let row = client
        .query_one("SELECT 'B' < 'a', 'B' < 'a' COLLATE \"C\"", &[])
        .await
        .unwrap();
    let (natural, bytes): (bool, bool) = (row.get(0), row.get(1));
    assert!(bytes);
    assert!(
        !natural,
        "the test cluster's default collation is byte order"
    );
}
