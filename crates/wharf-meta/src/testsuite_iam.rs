//! The test suite every [`IamStore`] backend must pass (DESIGN.md §5).
//!
//! Run [`run_all`] on a fresh, empty store (it also implements [`MetadataStore`],
//! whose `access_keys` the IAM calls share). Each part uses its own account ids, so all
//! parts share one store; the parts are public to run or debug one alone. Failures
//! panic with a message naming the step.
//!
//! Besides the trait's documentation, the suite pins these conventions:
//! - user, role, policy and inline policy names match without regard to ASCII case,
//!   keep the spelling given at creation, and sort that way; tag keys are exact;
//! - rows that name a principal (access keys, tags) use the principal's stored spelling;
//! - an access key made through [`MetadataStore::create_access_key`] for a user name
//!   with no user yet (the bootstrap administrator) belongs to the user once created;
//! - deleting a user or role removes its tags; deleting a role ends its sessions;
//! - session ids share one space with access key ids.

use crate::iam::{
    CustomerPolicy, IamErrorKind, IamStore, IdentityPolicy, InlinePolicy, PrincipalRef, Role,
    Session, User, MAX_ACCESS_KEYS_PER_USER, MAX_ATTACHED_POLICIES, MAX_TAGS,
};
use crate::{AccessKey, MetaError, MetadataStore, Millis};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

const T0: Millis = 1_700_000_000_000;
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::100000000001:root"},"Action":"sts:AssumeRole"}]}"#;
const PULL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:BatchGetImage","Resource":"*"}]}"#;
const PUSH: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:PutImage","Resource":"*"}]}"#;
const READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";

/// Runs every part of the suite on `store`, which should be empty.
pub async fn run_all<S: IamStore + MetadataStore>(store: &S) {
    users(store).await;
    tags(store).await;
    access_keys(store).await;
    bootstrap_keys(store).await;
    roles(store).await;
    inline_policies(store).await;
    managed_policies(store).await;
    identity_policies(store).await;
    deletion_conflicts(store).await;
    sessions(store).await;
    concurrency(store).await;
}

#[track_caller]
fn must<T>(r: Result<T, MetaError>, step: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{step}: unexpected error: {e}"),
    }
}

/// Asserts `r` failed with `kind` and a message containing every one of `words`.
#[track_caller]
fn fails<T: std::fmt::Debug>(
    r: Result<T, MetaError>,
    kind: IamErrorKind,
    words: &[&str],
    step: &str,
) {
    match r {
        Err(e) if e.iam_kind() == Some(kind) => {
            let msg = e.to_string();
            for w in words {
                assert!(
                    msg.contains(w),
                    "{step}: message {msg:?} does not name {w:?}"
                );
            }
        }
        other => panic!("{step}: expected {kind:?}, got {other:?}"),
    }
}

/// A fresh id: `prefix` and 16 digits, unique in this process.
fn next_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}{:016}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A user as the API would create it.
pub fn user(account: &str, name: &str, path: &str) -> User {
    User {
        account_id: account.to_string(),
        user_name: name.to_string(),
        user_id: next_id("AIDA"),
        path: path.to_string(),
        created_at: T0,
        tags: Vec::new(),
    }
}

/// A role as the API would create it.
pub fn role(account: &str, name: &str, path: &str) -> Role {
    Role {
        account_id: account.to_string(),
        role_name: name.to_string(),
        role_id: next_id("AROA"),
        path: path.to_string(),
        assume_role_policy: TRUST.to_string(),
        description: None,
        max_session_duration: 3600,
        created_at: T0,
        tags: Vec::new(),
    }
}

/// A customer managed policy as the API would create it.
pub fn policy(account: &str, name: &str, path: &str, document: &str) -> CustomerPolicy {
    CustomerPolicy {
        account_id: account.to_string(),
        policy_name: name.to_string(),
        policy_id: next_id("ANPA"),
        path: path.to_string(),
        arn: format!("arn:aws:iam::{account}:policy{path}{name}"),
        document: document.to_string(),
        default_version_id: "v1".to_string(),
        description: None,
        attachment_count: 0,
        created_at: T0,
        updated_at: T0,
        tags: Vec::new(),
    }
}

fn key(id: &str, account: &str, user: &str) -> AccessKey {
    AccessKey {
        access_key_id: id.to_string(),
        secret_access_key: format!("secret-of-{id}"),
        account_id: account.to_string(),
        user_name: user.to_string(),
        active: true,
        created_at: T0,
    }
}

fn tag(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn u(name: &str) -> PrincipalRef {
    PrincipalRef::User(name.to_string())
}

fn r(name: &str) -> PrincipalRef {
    PrincipalRef::Role(name.to_string())
}

/// Users: creation, lookup without case, listing by path, deletion.
pub async fn users(store: &dyn IamStore) {
    let acct = "100000000001";
    let alice = User {
        tags: vec![tag("team", "core")],
        ..user(acct, "Alice", "/")
    };
    let created = must(store.create_user(&alice).await, "create Alice");
    assert_eq!(created, alice);
    fails(
        store.create_user(&user(acct, "alice", "/x/")).await,
        IamErrorKind::EntityAlreadyExists,
        &["Alice", acct],
        "create alice when Alice exists",
    );
    // The same name in another account is another user.
    must(
        store.create_user(&user("100000000002", "alice", "/")).await,
        "create alice in another account",
    );
    for (name, path) in [("bob", "/ci/"), ("carol", "/ci/deploy/"), ("Dave", "/")] {
        must(store.create_user(&user(acct, name, path)).await, name);
    }
    assert_eq!(
        must(store.get_user(acct, "ALICE").await, "get ALICE"),
        Some(alice.clone()),
        "lookups ignore case and return the stored spelling"
    );
    assert_eq!(
        must(store.get_user(acct, "nobody").await, "get nobody"),
        None
    );
    assert_eq!(
        must(
            store.get_user("100000000009", "Alice").await,
            "get in empty account"
        ),
        None
    );

    let names = |v: Vec<User>| v.into_iter().map(|u| u.user_name).collect::<Vec<_>>();
    assert_eq!(
        names(must(store.list_users(acct, "/").await, "list all")),
        ["Alice", "bob", "carol", "Dave"],
        "sorted without regard to case"
    );
    assert_eq!(
        names(must(store.list_users(acct, "/ci/").await, "list /ci/")),
        ["bob", "carol"]
    );
    assert_eq!(
        names(must(
            store.list_users(acct, "/ci/deploy").await,
            "list prefix"
        )),
        ["carol"]
    );
    assert!(must(store.list_users(acct, "/nope/").await, "list none").is_empty());
    let listed = must(store.list_users(acct, "/").await, "list with tags");
    assert_eq!(
        listed[0].tags,
        vec![tag("team", "core")],
        "lists carry tags"
    );
    assert!(listed[1].tags.is_empty());

    must(store.delete_user(acct, "DAVE").await, "delete DAVE");
    assert_eq!(
        must(store.get_user(acct, "Dave").await, "get deleted"),
        None
    );
    fails(
        store.delete_user(acct, "Dave").await,
        IamErrorKind::NoSuchEntity,
        &["Dave", acct],
        "delete twice",
    );
    // The other account's alice is untouched by anything above.
    assert_eq!(
        must(store.list_users("100000000002", "/").await, "other account").len(),
        1
    );
}

/// Tags of users and roles: add, replace, remove, the quota, removal with the entity.
pub async fn tags(store: &dyn IamStore) {
    let acct = "100000000011";
    must(
        store.create_user(&user(acct, "tina", "/")).await,
        "create tina",
    );
    must(
        store.create_role(&role(acct, "tagged", "/")).await,
        "create role",
    );
    let tina = u("TINA");
    must(
        store
            .tag_principal(acct, &tina, &[tag("b", "2"), tag("a", "1")])
            .await,
        "tag",
    );
    must(
        store
            .tag_principal(acct, &tina, &[tag("a", "one"), tag("A", "upper")])
            .await,
        "retag",
    );
    let got = must(store.get_user(acct, "tina").await, "get").map(|u| u.tags);
    assert_eq!(
        got,
        Some(vec![tag("A", "upper"), tag("a", "one"), tag("b", "2")]),
        "keys are exact and sorted; a known key's value is replaced"
    );
    must(
        store
            .untag_principal(acct, &tina, &["a".to_string(), "zzz".to_string()])
            .await,
        "untag",
    );
    let got = must(store.get_user(acct, "tina").await, "get").map(|u| u.tags);
    assert_eq!(got, Some(vec![tag("A", "upper"), tag("b", "2")]));

    let many: Vec<(String, String)> = (0..MAX_TAGS - 2)
        .map(|i| tag(&format!("k{i:02}"), "v"))
        .collect();
    must(
        store.tag_principal(acct, &tina, &many).await,
        "fill up to the quota",
    );
    fails(
        store
            .tag_principal(acct, &tina, &[tag("one-more", "v")])
            .await,
        IamErrorKind::LimitExceeded,
        &["tina", &MAX_TAGS.to_string()],
        "tag beyond the quota",
    );
    let got = must(store.get_user(acct, "tina").await, "get").map(|u| u.tags.len());
    assert_eq!(got, Some(MAX_TAGS), "a refused tag call changes nothing");

    must(
        store
            .tag_principal(acct, &r("TAGGED"), &[tag("env", "prod")])
            .await,
        "tag role",
    );
    let role_tags = must(store.get_role(acct, "tagged").await, "get role").map(|r| r.tags);
    assert_eq!(role_tags, Some(vec![tag("env", "prod")]));
    let listed = must(store.list_roles(acct, "/").await, "list roles");
    assert_eq!(listed[0].tags, vec![tag("env", "prod")]);
    fails(
        store
            .tag_principal(acct, &u("ghost"), &[tag("a", "b")])
            .await,
        IamErrorKind::NoSuchEntity,
        &["ghost"],
        "tag a missing user",
    );
    fails(
        store
            .untag_principal(acct, &r("ghost"), &["a".to_string()])
            .await,
        IamErrorKind::NoSuchEntity,
        &["role", "ghost"],
        "untag a missing role",
    );

    // Tags go with their entity.
    must(store.delete_user(acct, "tina").await, "delete tina");
    must(
        store.create_user(&user(acct, "Tina", "/")).await,
        "recreate",
    );
    let got = must(store.get_user(acct, "tina").await, "get").map(|u| u.tags);
    assert_eq!(got, Some(vec![]), "a recreated user starts without tags");
    must(store.delete_role(acct, "tagged").await, "delete role");
    must(
        store.create_role(&role(acct, "tagged", "/")).await,
        "recreate role",
    );
    let role_tags = must(store.get_role(acct, "tagged").await, "get role").map(|r| r.tags);
    assert_eq!(role_tags, Some(vec![]));
}

/// Access keys of users: quota, status, ownership.
pub async fn access_keys<S: IamStore + MetadataStore>(store: &S) {
    let acct = "100000000021";
    let iam: &dyn IamStore = store;
    let meta: &dyn MetadataStore = store;
    fails(
        iam.create_user_access_key(&key("AKIAIAMSUITE00000001", acct, "kim"))
            .await,
        IamErrorKind::NoSuchEntity,
        &["kim", acct],
        "key for a missing user",
    );
    must(iam.create_user(&user(acct, "Kim", "/")).await, "create Kim");
    must(iam.create_user(&user(acct, "lee", "/")).await, "create lee");
    let k1 = must(
        iam.create_user_access_key(&key("AKIAIAMSUITE00000002", acct, "kim"))
            .await,
        "first key",
    );
    assert_eq!(k1.user_name, "Kim", "the key names the user as stored");
    let k2 = must(
        iam.create_user_access_key(&key("AKIAIAMSUITE00000001", acct, "KIM"))
            .await,
        "second key",
    );
    fails(
        iam.create_user_access_key(&key("AKIAIAMSUITE00000003", acct, "kim"))
            .await,
        IamErrorKind::LimitExceeded,
        &["Kim", &MAX_ACCESS_KEYS_PER_USER.to_string()],
        "third key",
    );
    assert!(
        matches!(
            iam.create_user_access_key(&key("AKIAIAMSUITE00000001", acct, "lee")).await,
            Err(MetaError::AccessKeyExists(id)) if id == "AKIAIAMSUITE00000001"
        ),
        "a key id is unique across users"
    );
    assert_eq!(
        must(iam.list_user_access_keys(acct, "kim").await, "list"),
        vec![k2.clone(), k1.clone()],
        "sorted by id"
    );
    assert!(must(iam.list_user_access_keys(acct, "lee").await, "list lee").is_empty());
    fails(
        iam.list_user_access_keys(acct, "nobody").await,
        IamErrorKind::NoSuchEntity,
        &["nobody"],
        "list for a missing user",
    );
    // The metadata store sees the same keys (SigV4 authentication reads them there).
    assert_eq!(
        must(meta.get_access_key(&k1.access_key_id).await, "get via meta"),
        Some(k1.clone())
    );

    must(
        iam.set_access_key_active(acct, "kim", &k1.access_key_id, false)
            .await,
        "deactivate",
    );
    assert_eq!(
        must(meta.get_access_key(&k1.access_key_id).await, "get").map(|k| k.active),
        Some(false)
    );
    must(
        iam.set_access_key_active(acct, "kim", &k1.access_key_id, true)
            .await,
        "reactivate",
    );
    assert_eq!(
        must(meta.get_access_key(&k1.access_key_id).await, "get").map(|k| k.active),
        Some(true)
    );
    fails(
        iam.set_access_key_active(acct, "lee", &k1.access_key_id, false)
            .await,
        IamErrorKind::NoSuchEntity,
        &[&k1.access_key_id, "lee"],
        "another user's key",
    );
    fails(
        iam.set_access_key_active("100000000022", "kim", &k1.access_key_id, false)
            .await,
        IamErrorKind::NoSuchEntity,
        &["kim", "100000000022"],
        "a key through another account",
    );
    fails(
        iam.delete_user_access_key(acct, "lee", &k1.access_key_id)
            .await,
        IamErrorKind::NoSuchEntity,
        &[&k1.access_key_id],
        "delete another user's key",
    );
    must(
        iam.delete_user_access_key(acct, "KIM", &k1.access_key_id)
            .await,
        "delete key",
    );
    assert_eq!(
        must(meta.get_access_key(&k1.access_key_id).await, "gone"),
        None
    );
    fails(
        iam.delete_user_access_key(acct, "kim", &k1.access_key_id)
            .await,
        IamErrorKind::NoSuchEntity,
        &[&k1.access_key_id],
        "delete twice",
    );
    // A freed slot can be used again.
    must(
        iam.create_user_access_key(&key("AKIAIAMSUITE00000004", acct, "kim"))
            .await,
        "key after deleting one",
    );
}

/// A key made before its user row existed (the bootstrap administrator's).
pub async fn bootstrap_keys<S: IamStore + MetadataStore>(store: &S) {
    let acct = "100000000031";
    let iam: &dyn IamStore = store;
    let meta: &dyn MetadataStore = store;
    let boot = key("AKIAIAMSUITEBOOT0001", acct, "admin");
    must(meta.create_access_key(&boot).await, "bootstrap key");
    must(
        iam.create_user(&user(acct, "admin", "/")).await,
        "create admin",
    );
    assert_eq!(
        must(iam.list_user_access_keys(acct, "Admin").await, "list"),
        vec![boot.clone()]
    );
    fails(
        iam.delete_user(acct, "admin").await,
        IamErrorKind::DeleteConflict,
        &["admin", "1 access key"],
        "delete admin with its key",
    );
    must(
        iam.create_user_access_key(&key("AKIAIAMSUITEBOOT0002", acct, "admin"))
            .await,
        "second admin key",
    );
    fails(
        iam.create_user_access_key(&key("AKIAIAMSUITEBOOT0003", acct, "admin"))
            .await,
        IamErrorKind::LimitExceeded,
        &["admin"],
        "the bootstrap key counts towards the quota",
    );
}

/// Roles: creation, lookup, listing, trust policy updates, deletion.
pub async fn roles(store: &dyn IamStore) {
    let acct = "100000000041";
    let deploy = Role {
        description: Some("deploys things".to_string()),
        max_session_duration: 7200,
        tags: vec![tag("env", "prod")],
        ..role(acct, "Deploy", "/svc/")
    };
    assert_eq!(must(store.create_role(&deploy).await, "create"), deploy);
    fails(
        store.create_role(&role(acct, "deploy", "/")).await,
        IamErrorKind::EntityAlreadyExists,
        &["Deploy", acct],
        "same name, other case",
    );
    // Users and roles are separate name spaces.
    must(
        store.create_user(&user(acct, "deploy", "/")).await,
        "a user named like a role",
    );
    must(
        store.create_role(&role(acct, "build", "/")).await,
        "create build",
    );
    must(
        store
            .create_role(&role("100000000042", "deploy", "/"))
            .await,
        "same name in another account",
    );
    assert_eq!(
        must(store.get_role(acct, "DEPLOY").await, "get"),
        Some(deploy.clone())
    );
    assert_eq!(
        must(store.get_role(acct, "nope").await, "get missing"),
        None
    );
    let names = |v: Vec<Role>| v.into_iter().map(|r| r.role_name).collect::<Vec<_>>();
    assert_eq!(
        names(must(store.list_roles(acct, "/").await, "list")),
        ["build", "Deploy"]
    );
    assert_eq!(
        names(must(store.list_roles(acct, "/svc/").await, "list /svc/")),
        ["Deploy"]
    );

    let trust2 = TRUST.replace("100000000001", "100000000043");
    must(
        store
            .update_assume_role_policy(acct, "deploy", &trust2)
            .await,
        "update trust",
    );
    let got = must(store.get_role(acct, "deploy").await, "get").map(|r| r.assume_role_policy);
    assert_eq!(got, Some(trust2));
    fails(
        store.update_assume_role_policy(acct, "ghost", TRUST).await,
        IamErrorKind::NoSuchEntity,
        &["ghost", acct],
        "update a missing role",
    );

    must(store.delete_role(acct, "BUILD").await, "delete");
    assert_eq!(must(store.get_role(acct, "build").await, "gone"), None);
    fails(
        store.delete_role(acct, "build").await,
        IamErrorKind::NoSuchEntity,
        &["role", "build"],
        "delete twice",
    );
}

/// Inline policies of users and roles.
pub async fn inline_policies(store: &dyn IamStore) {
    let acct = "100000000051";
    must(
        store.create_user(&user(acct, "ivy", "/")).await,
        "create ivy",
    );
    must(
        store.create_role(&role(acct, "ivy", "/")).await,
        "create role ivy",
    );
    let ivy = u("IVY");
    must(
        store.put_principal_policy(acct, &ivy, "Push", PUSH).await,
        "put Push",
    );
    must(
        store.put_principal_policy(acct, &ivy, "pull", PULL).await,
        "put pull",
    );
    assert_eq!(
        must(
            store.get_principal_policy(acct, &ivy, "push").await,
            "get push"
        ),
        InlinePolicy {
            name: "Push".to_string(),
            document: PUSH.to_string()
        },
        "names match without case; the stored spelling is returned"
    );
    must(
        store.put_principal_policy(acct, &ivy, "PUSH", PULL).await,
        "replace",
    );
    let got = must(store.get_principal_policy(acct, &ivy, "push").await, "get");
    assert_eq!(got.document, PULL, "a put replaces the document");
    assert_eq!(
        must(store.list_principal_policies(acct, &ivy).await, "list"),
        ["pull", "Push"]
    );
    // The role of the same name has its own policies.
    assert!(must(
        store.list_principal_policies(acct, &r("ivy")).await,
        "role list"
    )
    .is_empty());
    must(
        store
            .put_principal_policy(acct, &r("ivy"), "assume", PULL)
            .await,
        "role put",
    );
    fails(
        store.get_principal_policy(acct, &ivy, "assume").await,
        IamErrorKind::NoSuchEntity,
        &["assume", "ivy"],
        "a role's policy is not the user's",
    );
    fails(
        store
            .put_principal_policy(acct, &u("ghost"), "p", PULL)
            .await,
        IamErrorKind::NoSuchEntity,
        &["user", "ghost"],
        "put on a missing user",
    );
    fails(
        store.list_principal_policies(acct, &r("ghost")).await,
        IamErrorKind::NoSuchEntity,
        &["role", "ghost"],
        "list of a missing role",
    );
    must(
        store.delete_principal_policy(acct, &ivy, "PULL").await,
        "delete",
    );
    fails(
        store.delete_principal_policy(acct, &ivy, "pull").await,
        IamErrorKind::NoSuchEntity,
        &["pull", "ivy"],
        "delete twice",
    );
    assert_eq!(
        must(store.list_principal_policies(acct, &ivy).await, "list"),
        ["Push"]
    );
}

/// Customer managed policies and attachments.
pub async fn managed_policies(store: &dyn IamStore) {
    let acct = "100000000061";
    must(
        store.create_user(&user(acct, "max", "/")).await,
        "create max",
    );
    must(
        store.create_role(&role(acct, "runner", "/")).await,
        "create runner",
    );
    let p = CustomerPolicy {
        description: Some("pull images".to_string()),
        tags: vec![tag("owner", "platform")],
        ..policy(acct, "Pull", "/ecr/", PULL)
    };
    let created = must(store.create_policy(&p).await, "create");
    assert_eq!(created, p);
    fails(
        store
            .create_policy(&policy(acct, "pull", "/other/", PUSH))
            .await,
        IamErrorKind::EntityAlreadyExists,
        &["pull", acct],
        "a policy name is unique in the account whatever the path and case",
    );
    let push = must(
        store.create_policy(&policy(acct, "push", "/", PUSH)).await,
        "create push",
    );
    let foreign = must(
        store
            .create_policy(&policy("100000000062", "pull", "/", PULL))
            .await,
        "same name in another account",
    );
    assert_eq!(must(store.get_policy(&p.arn).await, "get"), Some(p.clone()));
    assert_eq!(
        must(
            store
                .get_policy("arn:aws:iam::100000000061:policy/nope")
                .await,
            "get missing"
        ),
        None
    );
    let names = |v: Vec<CustomerPolicy>| v.into_iter().map(|p| p.policy_name).collect::<Vec<_>>();
    assert_eq!(
        names(must(store.list_policies(acct).await, "list")),
        ["Pull", "push"]
    );

    must(
        store.attach_principal_policy(acct, &u("MAX"), &p.arn).await,
        "attach to user",
    );
    must(
        store.attach_principal_policy(acct, &u("max"), &p.arn).await,
        "attach again (no error)",
    );
    must(
        store
            .attach_principal_policy(acct, &r("runner"), &p.arn)
            .await,
        "attach to role",
    );
    must(
        store
            .attach_principal_policy(acct, &u("max"), READ_ONLY)
            .await,
        "attach an AWS managed policy",
    );
    assert_eq!(
        must(store.get_policy(&p.arn).await, "get").map(|p| p.attachment_count),
        Some(2)
    );
    assert_eq!(
        must(store.list_policies(acct).await, "list")[0].attachment_count,
        2
    );
    assert_eq!(
        must(
            store.count_policy_attachments(acct, READ_ONLY).await,
            "count"
        ),
        1
    );
    assert_eq!(
        must(
            store
                .count_policy_attachments("100000000062", READ_ONLY)
                .await,
            "count elsewhere"
        ),
        0,
        "attachment counts are per account"
    );
    assert_eq!(
        must(
            store
                .list_attached_principal_policies(acct, &u("max"))
                .await,
            "list attached"
        ),
        vec![p.arn.clone(), READ_ONLY.to_string()],
        "sorted by ARN"
    );
    fails(
        store
            .attach_principal_policy(acct, &u("max"), "arn:aws:iam::100000000061:policy/nope")
            .await,
        IamErrorKind::NoSuchEntity,
        &["arn:aws:iam::100000000061:policy/nope"],
        "attach a missing policy",
    );
    fails(
        store
            .attach_principal_policy(acct, &u("max"), &foreign.arn)
            .await,
        IamErrorKind::NoSuchEntity,
        &[&foreign.arn],
        "attach another account's policy",
    );
    fails(
        store
            .attach_principal_policy(acct, &u("ghost"), &p.arn)
            .await,
        IamErrorKind::NoSuchEntity,
        &["ghost"],
        "attach to a missing user",
    );

    // The quota: the user has 2 attached; fill up with AWS managed ARNs.
    for i in 2..MAX_ATTACHED_POLICIES {
        must(
            store
                .attach_principal_policy(acct, &u("max"), &format!("arn:aws:iam::aws:policy/P{i}"))
                .await,
            "attach up to the quota",
        );
    }
    fails(
        store
            .attach_principal_policy(acct, &u("max"), &push.arn)
            .await,
        IamErrorKind::LimitExceeded,
        &["max", &MAX_ATTACHED_POLICIES.to_string()],
        "attach beyond the quota",
    );
    must(
        store.attach_principal_policy(acct, &u("max"), &p.arn).await,
        "re-attaching at the quota is still no error",
    );

    fails(
        store.delete_policy(&p.arn).await,
        IamErrorKind::DeleteConflict,
        &[&p.arn, "2"],
        "delete an attached policy",
    );
    must(
        store.detach_principal_policy(acct, &u("max"), &p.arn).await,
        "detach from user",
    );
    fails(
        store.detach_principal_policy(acct, &u("max"), &p.arn).await,
        IamErrorKind::NoSuchEntity,
        &[&p.arn, "max"],
        "detach twice",
    );
    must(
        store
            .detach_principal_policy(acct, &r("RUNNER"), &p.arn)
            .await,
        "detach from role",
    );
    must(store.delete_policy(&p.arn).await, "delete detached policy");
    assert_eq!(must(store.get_policy(&p.arn).await, "gone"), None);
    fails(
        store.delete_policy(&p.arn).await,
        IamErrorKind::NoSuchEntity,
        &[&p.arn],
        "delete twice",
    );
    // Its tags went with it.
    let again = must(
        store
            .create_policy(&policy(acct, "Pull", "/ecr/", PULL))
            .await,
        "recreate",
    );
    assert!(
        again.tags.is_empty(),
        "a recreated policy starts without tags"
    );
}

/// Every policy that applies to a principal, labelled.
pub async fn identity_policies(store: &dyn IamStore) {
    let acct = "100000000071";
    must(
        store.create_user(&user(acct, "Nia", "/")).await,
        "create Nia",
    );
    must(store.create_role(&role(acct, "ci", "/")).await, "create ci");
    let cp = must(
        store.create_policy(&policy(acct, "push", "/", PUSH)).await,
        "policy",
    );
    assert!(must(store.identity_policies(acct, &u("nia")).await, "none yet").is_empty());
    must(
        store.put_principal_policy(acct, &u("nia"), "b", PULL).await,
        "b",
    );
    must(
        store.put_principal_policy(acct, &u("nia"), "a", PUSH).await,
        "a",
    );
    must(
        store
            .attach_principal_policy(acct, &u("nia"), &cp.arn)
            .await,
        "attach",
    );
    must(
        store
            .attach_principal_policy(acct, &u("nia"), READ_ONLY)
            .await,
        "attach aws",
    );
    must(
        store
            .put_principal_policy(acct, &r("ci"), "role-only", PULL)
            .await,
        "role policy",
    );
    let got = must(
        store.identity_policies(acct, &u("NIA")).await,
        "identity policies",
    );
    assert_eq!(
        got,
        vec![
            (
                "inline policy 'a' of user Nia".to_string(),
                IdentityPolicy::Inline {
                    name: "a".to_string(),
                    document: PUSH.to_string()
                }
            ),
            (
                "inline policy 'b' of user Nia".to_string(),
                IdentityPolicy::Inline {
                    name: "b".to_string(),
                    document: PULL.to_string()
                }
            ),
            (
                format!("managed policy {} attached to user Nia", cp.arn),
                IdentityPolicy::Managed {
                    arn: cp.arn.clone(),
                    document: Some(PUSH.to_string())
                }
            ),
            (
                format!("managed policy {READ_ONLY} attached to user Nia"),
                IdentityPolicy::Managed {
                    arn: READ_ONLY.to_string(),
                    document: None
                }
            ),
        ]
    );
    let role_policies = must(store.identity_policies(acct, &r("ci")).await, "role");
    assert_eq!(role_policies.len(), 1);
    assert_eq!(role_policies[0].0, "inline policy 'role-only' of role ci");
    assert!(
        must(store.identity_policies(acct, &u("ghost")).await, "ghost").is_empty(),
        "a missing principal has no policies"
    );
    assert!(must(
        store.identity_policies("100000000072", &u("Nia")).await,
        "other account"
    )
    .is_empty());
}

/// Users and roles cannot be deleted while something hangs on them.
pub async fn deletion_conflicts<S: IamStore + MetadataStore>(store: &S) {
    let acct = "100000000081";
    let iam: &dyn IamStore = store;
    must(
        iam.create_user(&user(acct, "olga", "/")).await,
        "create olga",
    );
    must(iam.create_role(&role(acct, "ops", "/")).await, "create ops");
    let k = must(
        iam.create_user_access_key(&key("AKIAIAMSUITEDEL00001", acct, "olga"))
            .await,
        "key",
    );
    must(
        iam.put_principal_policy(acct, &u("olga"), "p", PULL).await,
        "inline",
    );
    must(
        iam.attach_principal_policy(acct, &u("olga"), READ_ONLY)
            .await,
        "attach",
    );
    fails(
        iam.delete_user(acct, "olga").await,
        IamErrorKind::DeleteConflict,
        &["olga", acct, "1 access key", "1 inline", "1 attached"],
        "delete with key, inline and attached policy",
    );
    must(
        iam.delete_user_access_key(acct, "olga", &k.access_key_id)
            .await,
        "delete key",
    );
    fails(
        iam.delete_user(acct, "olga").await,
        IamErrorKind::DeleteConflict,
        &["olga"],
        "delete with policies",
    );
    must(
        iam.delete_principal_policy(acct, &u("olga"), "p").await,
        "delete inline",
    );
    fails(
        iam.delete_user(acct, "olga").await,
        IamErrorKind::DeleteConflict,
        &["1 attached"],
        "delete with an attached policy",
    );
    must(
        iam.detach_principal_policy(acct, &u("olga"), READ_ONLY)
            .await,
        "detach",
    );
    must(iam.delete_user(acct, "olga").await, "delete bare user");
    assert_eq!(must(iam.get_user(acct, "olga").await, "gone"), None);

    must(
        iam.put_principal_policy(acct, &r("ops"), "p", PULL).await,
        "role inline",
    );
    fails(
        iam.delete_role(acct, "ops").await,
        IamErrorKind::DeleteConflict,
        &["ops", "1 inline"],
        "delete role with inline policy",
    );
    must(
        iam.delete_principal_policy(acct, &r("ops"), "p").await,
        "delete role inline",
    );
    must(
        iam.attach_principal_policy(acct, &r("ops"), READ_ONLY)
            .await,
        "role attach",
    );
    fails(
        iam.delete_role(acct, "ops").await,
        IamErrorKind::DeleteConflict,
        &["ops", "1 attached"],
        "delete role with attached policy",
    );
    must(
        iam.detach_principal_policy(acct, &r("ops"), READ_ONLY)
            .await,
        "role detach",
    );
    must(iam.delete_role(acct, "ops").await, "delete bare role");
}

fn session(id: &str, account: &str, role: &str, expires_at: Millis) -> Session {
    Session {
        access_key_id: id.to_string(),
        secret_access_key: format!("secret-of-{id}"),
        session_token: format!("token-of-{id}"),
        account_id: account.to_string(),
        role_name: role.to_string(),
        role_path: "/".to_string(),
        session_name: "build-1".to_string(),
        expires_at,
        created_at: expires_at - 3_600_000,
    }
}

/// Role sessions: storage, lookup, expiry, the end with the role.
pub async fn sessions<S: IamStore + MetadataStore>(store: &S) {
    let acct = "100000000091";
    let iam: &dyn IamStore = store;
    let meta: &dyn MetadataStore = store;
    must(iam.create_role(&role(acct, "deployer", "/")).await, "role");
    must(
        iam.create_role(&role(acct, "other", "/")).await,
        "other role",
    );
    let s1 = session("ASIAIAMSUITE00000001", acct, "deployer", T0 + 1000);
    let s2 = session("ASIAIAMSUITE00000002", acct, "deployer", T0 + 2000);
    let s3 = session("ASIAIAMSUITE00000003", acct, "other", T0 + 3000);
    for s in [&s1, &s2, &s3] {
        must(iam.create_session(s).await, "create session");
    }
    assert!(
        !format!("{s1:?}").contains("secret-of") && !format!("{s1:?}").contains("token-of"),
        "Debug leaks a session secret"
    );
    assert!(
        matches!(iam.create_session(&s1).await, Err(MetaError::AccessKeyExists(id)) if id == s1.access_key_id),
        "duplicate session id"
    );
    must(
        meta.create_access_key(&key("AKIAIAMSUITESESS0001", acct, "x"))
            .await,
        "access key",
    );
    assert!(
        matches!(
            iam.create_session(&session("AKIAIAMSUITESESS0001", acct, "deployer", T0))
                .await,
            Err(MetaError::AccessKeyExists(_))
        ),
        "a session id may not reuse an access key id"
    );
    assert_eq!(
        must(iam.get_session(&s1.access_key_id).await, "get"),
        Some(s1.clone())
    );
    assert_eq!(must(iam.get_session("ASIANOPE").await, "get missing"), None);

    // Expired sessions stay readable until purged; purging is `expires_at <= now`.
    assert_eq!(
        must(iam.purge_expired_sessions(T0 + 999).await, "purge none"),
        0
    );
    assert_eq!(
        must(iam.purge_expired_sessions(T0 + 1000).await, "purge s1"),
        1
    );
    assert_eq!(
        must(iam.get_session(&s1.access_key_id).await, "s1 gone"),
        None
    );
    assert_eq!(
        must(iam.get_session(&s2.access_key_id).await, "s2 stays"),
        Some(s2.clone())
    );

    // Deleting a role ends its sessions (and only its).
    must(iam.delete_role(acct, "Deployer").await, "delete role");
    assert_eq!(
        must(iam.get_session(&s2.access_key_id).await, "s2 ended"),
        None
    );
    assert_eq!(
        must(iam.get_session(&s3.access_key_id).await, "s3 stays"),
        Some(s3)
    );
}

/// Concurrent calls: one name, one winner; the key quota holds under races.
pub async fn concurrency(store: &dyn IamStore) {
    let acct = "100000000101";
    let spellings = ["race", "Race", "RACE", "rAce", "raCe", "racE"];
    let users: Vec<User> = spellings.iter().map(|n| user(acct, n, "/")).collect();
    let results = join_all(users.iter().map(|u| store.create_user(u)).collect()).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        won, 1,
        "exactly one concurrent create_user wins: {results:?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.iam_kind(), Some(IamErrorKind::EntityAlreadyExists), "{e}");
        }
    }
    let keys: Vec<AccessKey> = (0..6)
        .map(|i| key(&format!("AKIAIAMSUITERACE000{i}"), acct, "race"))
        .collect();
    let results = join_all(
        keys.iter()
            .map(|k| store.create_user_access_key(k))
            .collect(),
    )
    .await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        made, MAX_ACCESS_KEYS_PER_USER,
        "concurrent key creation respects the quota: {results:?}"
    );
    assert_eq!(
        must(store.list_user_access_keys(acct, "race").await, "list").len(),
        MAX_ACCESS_KEYS_PER_USER
    );
}

/// Polls all futures until every one is done (no extra dependency).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
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
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}
