//! IAM users, managed and inline policies, roles and STS through the real AWS CLI,
//! and what they allow on the ECR API and on `/v2/`.

mod common;

use common::{aws_admin, aws_cli, aws_session, basic, curl, push};
use serde_json::Value;

fn token(srv: &common::Server, key: &str, secret: &str, session: Option<&str>) -> String {
    let v = aws_session(srv, key, secret, session, &["ecr", "get-login-password"])
        .unwrap_or_else(|e| panic!("get-login-password: {e}"));
    basic("AWS", v.as_str().unwrap())
}

/// Creates user `name` with `policy_arn` attached; returns its key id and secret.
fn user_with(srv: &common::Server, name: &str, policy_arn: &str) -> (String, String) {
    aws_admin(srv, &["iam", "create-user", "--user-name", name]);
    aws_admin(
        srv,
        &[
            "iam",
            "attach-user-policy",
            "--user-name",
            name,
            "--policy-arn",
            policy_arn,
        ],
    );
    let key = aws_admin(srv, &["iam", "create-access-key", "--user-name", name]);
    (
        key["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn read_only_user_pulls_but_cannot_push_and_a_deleted_key_stops_at_once() {
    let srv = common::Server::start();
    let admin = basic(common::ADMIN_KEY, common::ADMIN_SECRET);
    assert_eq!(push(&srv, &admin, None, "team/app", "v1").0, 201);
    let (key, secret) = user_with(
        &srv,
        "reader",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    );
    let me = aws_cli(&srv, &key, &secret, &["sts", "get-caller-identity"]).unwrap();
    assert_eq!(me["Arn"], "arn:aws:iam::000000000000:user/reader");
    assert_eq!(me["Account"], "000000000000");

    let reader = token(&srv, &key, &secret, None);
    let (status, text) = curl(&["-H", &reader, &srv.at("/v2/team/app/manifests/v1")]);
    assert_eq!(status, 200, "{text}");
    let (status, text) = push(&srv, &reader, None, "team/app", "v2");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("arn:aws:iam::000000000000:user/reader")
            && text.contains("ecr:InitiateLayerUpload")
            && text.contains("repository/team/app")
            && text.contains("no identity-based policy"),
        "{text}"
    );
    let err = aws_cli(
        &srv,
        &key,
        &secret,
        &["ecr", "create-repository", "--repository-name", "mine"],
    )
    .unwrap_err();
    assert!(
        err.contains("AccessDeniedException")
            && err.contains("ecr:CreateRepository")
            && err.contains("user/reader"),
        "{err}"
    );
    // Listing IAM users needs IAM permissions the reader lacks.
    let err = aws_cli(&srv, &key, &secret, &["iam", "list-users"]).unwrap_err();
    assert!(
        err.contains("AccessDenied") && err.contains("iam:ListUsers"),
        "{err}"
    );

    // An inline policy with an explicit Deny wins over the managed Allow.
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoPullOfApp","Effect":"Deny","Action":"ecr:BatchGetImage","Resource":"arn:aws:ecr:*:*:repository/team/app"}]}"#;
    aws_admin(
        &srv,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "reader",
            "--policy-name",
            "deny-app",
            "--policy-document",
            deny,
        ],
    );
    let (status, text) = curl(&["-H", &reader, &srv.at("/v2/team/app/manifests/v1")]);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("NoPullOfApp") && text.contains("deny-app"),
        "{text}"
    );
    aws_admin(
        &srv,
        &[
            "iam",
            "delete-user-policy",
            "--user-name",
            "reader",
            "--policy-name",
            "deny-app",
        ],
    );
    let (status, _) = curl(&["-H", &reader, &srv.at("/v2/team/app/manifests/v1")]);
    assert_eq!(status, 200, "a changed policy takes effect at once");

    // Deleting the key ends its token at once.
    aws_admin(
        &srv,
        &[
            "iam",
            "delete-access-key",
            "--user-name",
            "reader",
            "--access-key-id",
            &key,
        ],
    );
    let (status, text) = curl(&["-H", &reader, &srv.at("/v2/team/app/manifests/v1")]);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains(&key) && text.contains("no longer valid"),
        "{text}"
    );
}

#[test]
fn assumed_roles_push_with_temporary_credentials() {
    let srv = common::Server::start();
    let (key, secret) = user_with(
        &srv,
        "ci",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    );
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/ci"},"Action":"sts:AssumeRole"}]}"#;
    aws_admin(
        &srv,
        &[
            "iam",
            "create-role",
            "--role-name",
            "pusher",
            "--assume-role-policy-document",
            trust,
        ],
    );
    aws_admin(
        &srv,
        &[
            "iam",
            "attach-role-policy",
            "--role-name",
            "pusher",
            "--policy-arn",
            "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
        ],
    );
    let assumed = aws_cli(
        &srv,
        &key,
        &secret,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            "arn:aws:iam::000000000000:role/pusher",
            "--role-session-name",
            "build-7",
        ],
    )
    .unwrap();
    let c = &assumed["Credentials"];
    let (akid, sk, st) = (
        c["AccessKeyId"].as_str().unwrap().to_string(),
        c["SecretAccessKey"].as_str().unwrap().to_string(),
        c["SessionToken"].as_str().unwrap().to_string(),
    );
    assert!(akid.starts_with("ASIA"), "{akid}");
    let me = aws_session(&srv, &akid, &sk, Some(&st), &["sts", "get-caller-identity"]).unwrap();
    assert_eq!(
        me["Arn"],
        "arn:aws:sts::000000000000:assumed-role/pusher/build-7"
    );

    // The role pushes (PowerUser) where the user alone could not.
    let user_token = token(&srv, &key, &secret, None);
    assert_eq!(push(&srv, &user_token, None, "ci/app", "v1").0, 403);
    // PowerUser does not create repositories; the administrator does.
    let err = aws_session(
        &srv,
        &akid,
        &sk,
        Some(&st),
        &["ecr", "create-repository", "--repository-name", "ci/app"],
    )
    .unwrap_err();
    assert!(err.contains("ecr:CreateRepository"), "{err}");
    aws_admin(
        &srv,
        &["ecr", "create-repository", "--repository-name", "ci/app"],
    );
    let role_token = token(&srv, &akid, &sk, Some(&st));
    let (status, text) = push(&srv, &role_token, None, "ci/app", "v1");
    assert_eq!(status, 201, "{text}");
    let listed = aws_session(
        &srv,
        &akid,
        &sk,
        Some(&st),
        &["ecr", "list-images", "--repository-name", "ci/app"],
    )
    .unwrap();
    assert_eq!(listed["imageIds"][0]["imageTag"], "v1");
    // But not delete the repository: PowerUser does not grant it.
    let err = aws_session(
        &srv,
        &akid,
        &sk,
        Some(&st),
        &[
            "ecr",
            "delete-repository",
            "--repository-name",
            "ci/app",
            "--force",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("AccessDeniedException") && err.contains("assumed-role/pusher/build-7"),
        "{err}"
    );

    // Without the session token the temporary key is refused.
    let err = aws_session(&srv, &akid, &sk, None, &["ecr", "describe-repositories"]).unwrap_err();
    assert!(err.contains("session token"), "{err}");
    // A principal the trust policy does not name may not assume the role.
    let (other_key, other_secret) = user_with(
        &srv,
        "other",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    );
    let err = aws_cli(
        &srv,
        &other_key,
        &other_secret,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            "arn:aws:iam::000000000000:role/pusher",
            "--role-session-name",
            "intruder",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("AccessDenied")
            && err.contains("user/other")
            && err.contains("sts:AssumeRole"),
        "{err}"
    );
}

#[test]
fn expired_registry_tokens_say_when_they_expired() {
    let srv = common::Server::start_with(&["--token-lifetime-secs", "1"]);
    let t = token(&srv, common::ADMIN_KEY, common::ADMIN_SECRET, None);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, text) = curl(&["-H", &t, &srv.at("/v2/")]);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("expired at") && text.contains("get-login-password"),
        "{text}"
    );
    let v: Value = aws_admin(&srv, &["iam", "get-user"]);
    assert_eq!(v["User"]["UserName"], "admin");
    // A user's path is part of its ARN, as IAM writes it.
    aws_admin(
        &srv,
        &[
            "iam",
            "create-user",
            "--user-name",
            "builder",
            "--path",
            "/ci/",
        ],
    );
    let key = aws_admin(
        &srv,
        &["iam", "create-access-key", "--user-name", "builder"],
    );
    let me = aws_cli(
        &srv,
        key["AccessKey"]["AccessKeyId"].as_str().unwrap(),
        key["AccessKey"]["SecretAccessKey"].as_str().unwrap(),
        &["sts", "get-caller-identity"],
    )
    .unwrap();
    assert_eq!(me["Arn"], "arn:aws:iam::000000000000:user/ci/builder");
}

#[test]
fn tag_conditions_on_requests_and_repositories() {
    let srv = common::Server::start();
    aws_admin(&srv, &["iam", "create-user", "--user-name", "team-bot"]);
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"CreateOnlyTagged","Effect":"Allow","Action":"ecr:CreateRepository","Resource":"*",
         "Condition":{"StringEquals":{"aws:RequestTag/team":"payments"}}},
        {"Sid":"PullOwnTeam","Effect":"Allow","Action":["ecr:BatchGetImage","ecr:DescribeImages"],"Resource":"*",
         "Condition":{"StringEquals":{"aws:ResourceTag/team":"payments"}}}]}"#;
    aws_admin(
        &srv,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "team-bot",
            "--policy-name",
            "abac",
            "--policy-document",
            policy,
        ],
    );
    let key = aws_admin(
        &srv,
        &["iam", "create-access-key", "--user-name", "team-bot"],
    );
    let (k, s) = (
        key["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_string(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let err = aws_cli(
        &srv,
        &k,
        &s,
        &["ecr", "create-repository", "--repository-name", "untagged"],
    )
    .unwrap_err();
    assert!(
        err.contains("AccessDeniedException") && err.contains("ecr:CreateRepository"),
        "{err}"
    );
    aws_cli(
        &srv,
        &k,
        &s,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "pay/api",
            "--tags",
            "Key=team,Value=payments",
        ],
    )
    .unwrap();
    aws_admin(
        &srv,
        &[
            "ecr",
            "create-repository",
            "--repository-name",
            "web/app",
            "--tags",
            "Key=team,Value=web",
        ],
    );
    aws_cli(
        &srv,
        &k,
        &s,
        &["ecr", "describe-images", "--repository-name", "pay/api"],
    )
    .unwrap();
    let err = aws_cli(
        &srv,
        &k,
        &s,
        &["ecr", "describe-images", "--repository-name", "web/app"],
    )
    .unwrap_err();
    assert!(
        err.contains("AccessDeniedException") && err.contains("repository/web/app"),
        "{err}"
    );
}

#[test]
fn cross_account_roles() {
    let srv = common::Server::start();
    let (b_key, b_secret) = common::create_account(&srv, "111122223333");
    // Account B trusts account A (its identity policies decide who in A may assume).
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;
    aws_cli(
        &srv,
        &b_key,
        &b_secret,
        &[
            "iam",
            "create-role",
            "--role-name",
            "deployer",
            "--assume-role-policy-document",
            trust,
        ],
    )
    .unwrap();
    aws_cli(
        &srv,
        &b_key,
        &b_secret,
        &[
            "iam",
            "attach-role-policy",
            "--role-name",
            "deployer",
            "--policy-arn",
            "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess",
        ],
    )
    .unwrap();
    aws_cli(
        &srv,
        &b_key,
        &b_secret,
        &["ecr", "create-repository", "--repository-name", "b/app"],
    )
    .unwrap();

    // A user of A without sts:AssumeRole in its own policies may not: both sides are needed.
    let (key, secret) = user_with(
        &srv,
        "dev",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    );
    let role = "arn:aws:iam::111122223333:role/deployer";
    let err = aws_cli(
        &srv,
        &key,
        &secret,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            role,
            "--role-session-name",
            "dev-1",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("AccessDenied") && err.contains("sts:AssumeRole"),
        "{err}"
    );
    // A's administrator may, and acts in B's registry as the role.
    let assumed = aws_admin(
        &srv,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            role,
            "--role-session-name",
            "release",
        ],
    );
    let c = &assumed["Credentials"];
    let (akid, sk, st) = (
        c["AccessKeyId"].as_str().unwrap(),
        c["SecretAccessKey"].as_str().unwrap(),
        c["SessionToken"].as_str().unwrap(),
    );
    let me = aws_session(&srv, akid, sk, Some(st), &["sts", "get-caller-identity"]).unwrap();
    assert_eq!(me["Account"], "111122223333");
    let repos = aws_session(&srv, akid, sk, Some(st), &["ecr", "describe-repositories"]).unwrap();
    assert_eq!(repos["repositories"][0]["repositoryName"], "b/app");
    let t = token(&srv, akid, sk, Some(st));
    assert_eq!(push(&srv, &t, None, "b/app", "v1").0, 201);
}
