//! The shared IAM suite on [`SqliteStore`], plus what only SQLite shows: IAM rows
//! survive reopening the file, and two stores (processes) on one file agree.

use wharf_meta::testsuite_iam::{self, user};
use wharf_meta::{IamErrorKind, IamStore, PrincipalRef, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("metadata.db")).unwrap();
    testsuite_iam::run_all(&store).await;
}

#[tokio::test]
async fn shared_suite_on_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("metadata.db")).unwrap();
    testsuite_iam::run_all(&store).await;
}

#[tokio::test]
async fn iam_rows_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let alice = user("123456789012", "alice", "/team/");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_user(&alice).await.unwrap();
        store
            .put_principal_policy(
                "123456789012",
                &PrincipalRef::User("alice".into()),
                "p",
                "{}",
            )
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.get_user("123456789012", "ALICE").await.unwrap(),
        Some(alice)
    );
    let names = store
        .list_principal_policies("123456789012", &PrincipalRef::User("alice".into()))
        .await
        .unwrap();
    assert_eq!(names, ["p"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    a.create_user(&user("123456789012", "Shared", "/"))
        .await
        .unwrap();
    let err = b
        .create_user(&user("123456789012", "shared", "/"))
        .await
        .unwrap_err();
    assert_eq!(
        err.iam_kind(),
        Some(IamErrorKind::EntityAlreadyExists),
        "{err}"
    );
    assert!(b
        .get_user("123456789012", "SHARED")
        .await
        .unwrap()
        .is_some());
}
