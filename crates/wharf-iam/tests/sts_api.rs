//! The STS actions through `IamApi::handle` over a real SQLite store, every response
//! read by botocore's query parser.

mod common;

use common::*;
use serde_json::json;
use wharf_iam::bootstrap_admin;
use wharf_meta::{now_millis, IamStore};

fn trust(principal: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

async fn create_role(e: &Env, account: &str, name: &str, path: &str, trusted: &str, max: &str) {
    let caller = user(account, "admin");
    call(
        &e.api,
        &caller,
        "iam",
        "CreateRole",
        &[
            ("RoleName", name),
            ("Path", path),
            ("AssumeRolePolicyDocument", &trust(trusted)),
            ("MaxSessionDuration", max),
        ],
    )
    .await
    .ok();
}

#[tokio::test]
async fn caller_identity() {
    let e = env().await;
    let admin_user = bootstrap_admin(e.store.as_ref(), ACCOUNT, "admin")
        .await
        .unwrap();
    let r = call(&e.api, &admin(), "sts", "GetCallerIdentity", &[]).await;
    let v = r.ok();
    assert_eq!(s(v, &["Account"]), ACCOUNT);
    assert_eq!(s(v, &["Arn"]), "arn:aws:iam::111122223333:user/admin");
    assert_eq!(s(v, &["UserId"]), admin_user.user_id);
    assert!(r
        .body
        .contains("xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\""));

    // Bootstrapping again changes nothing and keeps AdministratorAccess attached once.
    let again = bootstrap_admin(e.store.as_ref(), ACCOUNT, "admin")
        .await
        .unwrap();
    assert_eq!(again, admin_user);
    let attached = e
        .store
        .list_attached_principal_policies(ACCOUNT, &wharf_meta::PrincipalRef::User("admin".into()))
        .await
        .unwrap();
    assert_eq!(attached, ["arn:aws:iam::aws:policy/AdministratorAccess"]);
}

#[tokio::test]
async fn assume_role() {
    let e = env().await;
    create_role(
        &e,
        ACCOUNT,
        "deploy",
        "/ci/",
        "arn:aws:iam::111122223333:user/dev",
        "7200",
    )
    .await;
    let dev = user(ACCOUNT, "dev");

    let before = now_millis();
    let r = call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ci/deploy"),
            ("RoleSessionName", "build-42"),
            ("DurationSeconds", "1800"),
        ],
    )
    .await;
    let v = r.ok();
    let creds = &v["Credentials"];
    let key_id = s(creds, &["AccessKeyId"]).to_string();
    assert!(key_id.starts_with("ASIA") && key_id.len() == 20, "{key_id}");
    assert_eq!(s(creds, &["SecretAccessKey"]).len(), 40);
    assert!(s(creds, &["SessionToken"]).len() >= 200);
    let role = e.store.get_role(ACCOUNT, "deploy").await.unwrap().unwrap();
    assert_eq!(
        s(v, &["AssumedRoleUser", "AssumedRoleId"]),
        format!("{}:build-42", role.role_id)
    );
    assert_eq!(
        s(v, &["AssumedRoleUser", "Arn"]),
        "arn:aws:sts::111122223333:assumed-role/deploy/build-42"
    );

    // The session is stored for SigV4 authentication, with what the response said.
    let session = e.store.get_session(&key_id).await.unwrap().unwrap();
    assert_eq!(session.secret_access_key, s(creds, &["SecretAccessKey"]));
    assert_eq!(session.session_token, s(creds, &["SessionToken"]));
    assert_eq!(
        (
            session.account_id.as_str(),
            session.role_name.as_str(),
            session.role_path.as_str(),
            session.session_name.as_str()
        ),
        (ACCOUNT, "deploy", "/ci/", "build-42")
    );
    let lifetime = session.expires_at - before;
    assert!(
        (1_800_000..1_800_000 + 60_000).contains(&lifetime),
        "{lifetime}"
    );
    // botocore read Expiration as a timestamp (it prints as "YYYY-MM-DD HH:MM:SS+00:00").
    assert!(
        s(creds, &["Expiration"]).ends_with("+00:00"),
        "{}",
        creds["Expiration"]
    );

    // The session's identity.
    let session_caller = assumed(ACCOUNT, "deploy", "build-42");
    let r = call(&e.api, &session_caller, "sts", "GetCallerIdentity", &[]).await;
    assert_eq!(s(r.ok(), &["UserId"]), format!("{}:build-42", role.role_id));
    assert_eq!(
        s(&r.value, &["Arn"]),
        "arn:aws:sts::111122223333:assumed-role/deploy/build-42"
    );

    // Limits: the role's maximum, and one hour when chaining from a role session.
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ci/deploy"),
            ("RoleSessionName", "long"),
            ("DurationSeconds", "7201"),
        ],
    )
    .await
    .fails(
        400,
        "ValidationError",
        &["7201", "MaxSessionDuration", "7200"],
    );
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ci/deploy"),
            ("RoleSessionName", "short"),
            ("DurationSeconds", "899"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["durationSeconds", "900"]);
    create_role(
        &e,
        ACCOUNT,
        "next",
        "/",
        "arn:aws:sts::111122223333:assumed-role/deploy/build-42",
        "7200",
    )
    .await;
    call(
        &e.api,
        &session_caller,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/next"),
            ("RoleSessionName", "chained"),
            ("DurationSeconds", "7200"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["role chaining"]);
    call(
        &e.api,
        &session_caller,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/next"),
            ("RoleSessionName", "chained"),
        ],
    )
    .await
    .ok();

    // Refusals say why.
    let stranger = user(ACCOUNT, "stranger");
    call(
        &e.api,
        &stranger,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ci/deploy"),
            ("RoleSessionName", "nope"),
        ],
    )
    .await
    .fails(
        403,
        "AccessDenied",
        &[
            "user/stranger",
            "sts:AssumeRole",
            "trust policy of role deploy",
        ],
    );
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ghost"),
            ("RoleSessionName", "nope"),
        ],
    )
    .await
    .fails(403, "AccessDenied", &["no role named ghost", ACCOUNT]);
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/deploy"),
            ("RoleSessionName", "nope"),
        ],
    )
    .await
    .fails(403, "AccessDenied", &["path is /ci/", "role/ci/deploy"]);
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:user/dev"),
            ("RoleSessionName", "nope"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["not a valid role ARN"]);
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ci/deploy"),
            ("RoleSessionName", "x"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["roleSessionName"]);
    call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::111122223333:role/ci/deploy"),
            ("RoleSessionName", "scoped"),
            ("Policy", r#"{"Statement":[]}"#),
        ],
    )
    .await
    .fails(400, "ValidationError", &["Policy", "not supported"]);

    // Deleting the role ends its sessions.
    call(
        &e.api,
        &admin(),
        "iam",
        "DeleteRole",
        &[("RoleName", "deploy")],
    )
    .await
    .ok();
    assert!(e.store.get_session(&key_id).await.unwrap().is_none());
}

#[tokio::test]
async fn cross_account_assume_role() {
    let e = env().await;
    create_role(
        &e,
        OTHER_ACCOUNT,
        "shared",
        "/",
        "arn:aws:iam::111122223333:root",
        "3600",
    )
    .await;
    let dev = user(ACCOUNT, "dev");
    let r = call(
        &e.api,
        &dev,
        "sts",
        "AssumeRole",
        &[
            ("RoleArn", "arn:aws:iam::444455556666:role/shared"),
            ("RoleSessionName", "xacct"),
        ],
    )
    .await;
    let v = r.ok();
    assert_eq!(
        s(v, &["AssumedRoleUser", "Arn"]),
        "arn:aws:sts::444455556666:assumed-role/shared/xacct"
    );
    let session = e
        .store
        .get_session(s(v, &["Credentials", "AccessKeyId"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        session.account_id, OTHER_ACCOUNT,
        "the session belongs to the role's account"
    );

    // STS errors use STS's namespace and still parse.
    let r = call(&e.api, &dev, "sts", "GetSessionToken", &[]).await;
    r.fails(400, "InvalidAction", &["GetSessionToken"]);
    assert!(r.body.contains("https://sts.amazonaws.com/doc/2011-06-15/"));
}
