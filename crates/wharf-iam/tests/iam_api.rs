//! The IAM actions through `IamApi::handle` over a real SQLite store, every response
//! read by botocore's query parser.

mod common;

use common::*;
use serde_json::{json, Value};
use wharf_iam::bootstrap_admin;
use wharf_meta::{IamStore, IdentityPolicy, MetadataStore, PrincipalRef};

const PULL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":"*"}]}"#;
const READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";

fn trust(principal: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

async fn iam(e: &Env, action: &str, params: &[(&str, &str)]) -> Parsed {
    call(&e.api, &admin(), "iam", action, params).await
}

#[tokio::test]
async fn users() {
    let e = env().await;
    bootstrap_admin(e.store.as_ref(), ACCOUNT, "admin")
        .await
        .unwrap();

    let r = iam(
        &e,
        "CreateUser",
        &[
            ("UserName", "Alice"),
            ("Path", "/team/"),
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "core/infra + ops"),
        ],
    )
    .await;
    let u = &r.ok()["User"];
    assert_eq!(s(u, &["UserName"]), "Alice");
    assert_eq!(s(u, &["Path"]), "/team/");
    assert_eq!(s(u, &["Arn"]), "arn:aws:iam::111122223333:user/team/Alice");
    let id = s(u, &["UserId"]);
    assert!(id.starts_with("AIDA") && id.len() == 20, "{id}");
    assert!(!s(u, &["CreateDate"]).is_empty());
    assert_eq!(
        u["Tags"],
        json!([{"Key": "team", "Value": "core/infra + ops"}])
    );
    iam(
        &e,
        "CreateUser",
        &[
            ("UserName", "x"),
            ("Tags.member.1.Key", "t"),
            ("Tags.member.1.Value", "a & <b>"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["a & <b>", "tagValue"]);

    // Names match without case, as in IAM.
    let r = iam(&e, "GetUser", &[("UserName", "alice")]).await;
    assert_eq!(s(r.ok(), &["User", "UserName"]), "Alice");
    assert_eq!(s(&r.value, &["User", "UserId"]), id);
    iam(&e, "CreateUser", &[("UserName", "ALICE")]).await.fails(
        409,
        "EntityAlreadyExists",
        &["Alice", ACCOUNT],
    );

    // Without UserName, GetUser answers for the caller.
    let r = iam(&e, "GetUser", &[]).await;
    assert_eq!(
        s(r.ok(), &["User", "Arn"]),
        "arn:aws:iam::111122223333:user/admin"
    );

    for name in ["bob", "carol", "dave"] {
        iam(&e, "CreateUser", &[("UserName", name), ("Path", "/ci/")])
            .await
            .ok();
    }
    let r = iam(&e, "ListUsers", &[]).await;
    assert_eq!(
        names(r.ok(), "Users", "UserName"),
        ["admin", "Alice", "bob", "carol", "dave"]
    );
    assert_eq!(r.value["IsTruncated"], false);
    let r = iam(&e, "ListUsers", &[("PathPrefix", "/ci/")]).await;
    assert_eq!(names(r.ok(), "Users", "UserName"), ["bob", "carol", "dave"]);

    // Pages of two, following Marker to the end.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![("MaxItems", "2")];
        if let Some(m) = &marker {
            params.push(("Marker", m.as_str()));
        }
        let r = iam(&e, "ListUsers", &params).await;
        let page = names(r.ok(), "Users", "UserName");
        assert!(page.len() <= 2);
        seen.extend(page);
        if r.value["IsTruncated"] == true {
            marker = Some(s(&r.value, &["Marker"]).to_string());
        } else {
            assert!(r.value.get("Marker").is_none());
            break;
        }
    }
    assert_eq!(seen, ["admin", "Alice", "bob", "carol", "dave"]);

    iam(&e, "DeleteUser", &[("UserName", "BOB")]).await.ok();
    iam(&e, "GetUser", &[("UserName", "bob")])
        .await
        .fails(404, "NoSuchEntity", &["bob", ACCOUNT]);
    iam(&e, "DeleteUser", &[("UserName", "bob")])
        .await
        .fails(404, "NoSuchEntity", &["bob"]);

    // Model constraints, in AWS's words.
    iam(&e, "CreateUser", &[("UserName", "no spaces")])
        .await
        .fails(
            400,
            "ValidationError",
            &["userName", "no spaces", "pattern"],
        );
    iam(&e, "CreateUser", &[("UserName", &"x".repeat(65))])
        .await
        .fails(400, "ValidationError", &["less than or equal to 64"]);
    iam(&e, "CreateUser", &[("UserName", "p"), ("Path", "nope")])
        .await
        .fails(400, "ValidationError", &["path"]);
    iam(&e, "CreateUser", &[])
        .await
        .fails(400, "ValidationError", &["Value null at 'userName'"]);
    iam(&e, "ListUsers", &[("MaxItems", "0")])
        .await
        .fails(400, "ValidationError", &["maxItems"]);
    iam(&e, "ListUsers", &[("Marker", "garbage!")]).await.fails(
        400,
        "ValidationError",
        &["Marker"],
    );
}

#[tokio::test]
async fn user_tags() {
    let e = env().await;
    iam(&e, "CreateUser", &[("UserName", "tess")]).await.ok();
    iam(
        &e,
        "TagUser",
        &[
            ("UserName", "tess"),
            ("Tags.member.1.Key", "b"),
            ("Tags.member.1.Value", "2"),
            ("Tags.member.2.Key", "a"),
            ("Tags.member.2.Value", "1"),
        ],
    )
    .await
    .ok();
    let r = iam(&e, "ListUserTags", &[("UserName", "tess")]).await;
    assert_eq!(
        r.ok()["Tags"],
        json!([{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    );
    let r = iam(
        &e,
        "ListUserTags",
        &[("UserName", "tess"), ("MaxItems", "1")],
    )
    .await;
    assert_eq!(r.ok()["Tags"], json!([{"Key": "a", "Value": "1"}]));
    assert_eq!(r.value["IsTruncated"], true);
    let marker = s(&r.value, &["Marker"]).to_string();
    let r = iam(
        &e,
        "ListUserTags",
        &[("UserName", "tess"), ("Marker", &marker)],
    )
    .await;
    assert_eq!(r.ok()["Tags"], json!([{"Key": "b", "Value": "2"}]));

    iam(
        &e,
        "UntagUser",
        &[("UserName", "tess"), ("TagKeys.member.1", "a")],
    )
    .await
    .ok();
    let r = iam(&e, "GetUser", &[("UserName", "tess")]).await;
    assert_eq!(r.ok()["User"]["Tags"], json!([{"Key": "b", "Value": "2"}]));

    iam(
        &e,
        "TagUser",
        &[
            ("UserName", "tess"),
            ("Tags.member.1.Key", "aws:owner"),
            ("Tags.member.1.Value", "x"),
        ],
    )
    .await
    .fails(400, "InvalidInput", &["aws:owner"]);
    let many: Vec<(String, String)> = (0..50)
        .flat_map(|i| {
            [
                (format!("Tags.member.{}.Key", i + 1), format!("k{i}")),
                (format!("Tags.member.{}.Value", i + 1), "v".to_string()),
            ]
        })
        .chain([("UserName".to_string(), "tess".to_string())])
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    iam(&e, "TagUser", &many)
        .await
        .fails(409, "LimitExceeded", &["tess", "50"]);
    iam(&e, "TagUser", &[("UserName", "tess")])
        .await
        .fails(400, "ValidationError", &["tags"]);
    iam(
        &e,
        "TagUser",
        &[
            ("UserName", "ghost"),
            ("Tags.member.1.Key", "a"),
            ("Tags.member.1.Value", "b"),
        ],
    )
    .await
    .fails(404, "NoSuchEntity", &["ghost"]);
}

#[tokio::test]
async fn access_keys() {
    let e = env().await;
    bootstrap_admin(e.store.as_ref(), ACCOUNT, "admin")
        .await
        .unwrap();
    iam(&e, "CreateUser", &[("UserName", "kim")]).await.ok();
    iam(&e, "CreateUser", &[("UserName", "lee")]).await.ok();

    let r = iam(&e, "CreateAccessKey", &[("UserName", "KIM")]).await;
    let k = &r.ok()["AccessKey"];
    let id = s(k, &["AccessKeyId"]).to_string();
    let secret = s(k, &["SecretAccessKey"]).to_string();
    assert!(id.starts_with("AKIA") && id.len() == 20, "{id}");
    assert_eq!(secret.len(), 40);
    assert_eq!(s(k, &["UserName"]), "kim");
    assert_eq!(s(k, &["Status"]), "Active");
    // The key authenticates: it is in the metadata store SigV4 reads.
    let stored = e.store.get_access_key(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.secret_access_key.as_str(),
            stored.account_id.as_str(),
            stored.user_name.as_str(),
            stored.active
        ),
        (secret.as_str(), ACCOUNT, "kim", true)
    );

    let second = iam(&e, "CreateAccessKey", &[("UserName", "kim")]).await;
    let id2 = s(&second.ok()["AccessKey"], &["AccessKeyId"]).to_string();
    iam(&e, "CreateAccessKey", &[("UserName", "kim")])
        .await
        .fails(409, "LimitExceeded", &["kim", "2"]);

    let r = iam(&e, "ListAccessKeys", &[("UserName", "kim")]).await;
    let mut expected = vec![id.clone(), id2.clone()];
    expected.sort();
    assert_eq!(names(r.ok(), "AccessKeyMetadata", "AccessKeyId"), expected);
    assert!(r.value["AccessKeyMetadata"][0]
        .get("SecretAccessKey")
        .is_none());

    iam(
        &e,
        "UpdateAccessKey",
        &[
            ("UserName", "kim"),
            ("AccessKeyId", &id),
            ("Status", "Inactive"),
        ],
    )
    .await
    .ok();
    assert!(!e.store.get_access_key(&id).await.unwrap().unwrap().active);
    let r = iam(&e, "ListAccessKeys", &[("UserName", "kim")]).await;
    let statuses: Vec<(String, String)> = r.ok()["AccessKeyMetadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                s(m, &["AccessKeyId"]).to_string(),
                s(m, &["Status"]).to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(id.clone(), "Inactive".to_string())),
        "{statuses:?}"
    );
    iam(
        &e,
        "UpdateAccessKey",
        &[
            ("UserName", "kim"),
            ("AccessKeyId", &id),
            ("Status", "Sleeping"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["status", "Active, Inactive"]);

    // Another user's key is not found, and the message says whose it is.
    iam(
        &e,
        "DeleteAccessKey",
        &[("UserName", "lee"), ("AccessKeyId", &id)],
    )
    .await
    .fails(404, "NoSuchEntity", &[&id, "lee", "belongs to user kim"]);
    iam(&e, "DeleteUser", &[("UserName", "kim")]).await.fails(
        409,
        "DeleteConflict",
        &["kim", "2 access key"],
    );
    iam(
        &e,
        "DeleteAccessKey",
        &[("UserName", "kim"), ("AccessKeyId", &id)],
    )
    .await
    .ok();
    assert!(e.store.get_access_key(&id).await.unwrap().is_none());

    // Without UserName the caller's own keys: the bootstrap admin.
    let r = call(&e.api, &admin(), "iam", "CreateAccessKey", &[]).await;
    assert_eq!(s(&r.ok()["AccessKey"], &["UserName"]), "admin");
    // A role session must name the user.
    call(
        &e.api,
        &assumed(ACCOUNT, "ops", "s1"),
        "iam",
        "ListAccessKeys",
        &[],
    )
    .await
    .fails(400, "ValidationError", &["Must specify userName"]);
}

#[tokio::test]
async fn inline_and_managed_policies() {
    let e = env().await;
    iam(&e, "CreateUser", &[("UserName", "max")]).await.ok();

    iam(
        &e,
        "PutUserPolicy",
        &[
            ("UserName", "max"),
            ("PolicyName", "pull"),
            ("PolicyDocument", "{not json"),
        ],
    )
    .await
    .fails(400, "MalformedPolicyDocument", &["not valid JSON"]);
    iam(
        &e,
        "PutUserPolicy",
        &[
            ("UserName", "max"),
            ("PolicyName", "pull"),
            ("PolicyDocument", PULL),
        ],
    )
    .await
    .ok();
    let r = iam(
        &e,
        "GetUserPolicy",
        &[("UserName", "MAX"), ("PolicyName", "PULL")],
    )
    .await;
    let v = r.ok();
    assert_eq!(s(v, &["UserName"]), "max");
    assert_eq!(s(v, &["PolicyName"]), "pull");
    // IAM URL-encodes documents; botocore decodes them back into the JSON given.
    assert!(r.body.contains("%22ecr%3ABatchGetImage%22"), "{}", r.body);
    assert_eq!(
        v["PolicyDocument"],
        serde_json::from_str::<Value>(PULL).unwrap()
    );
    let r = iam(&e, "ListUserPolicies", &[("UserName", "max")]).await;
    assert_eq!(r.ok()["PolicyNames"], json!(["pull"]));
    iam(
        &e,
        "GetUserPolicy",
        &[("UserName", "max"), ("PolicyName", "push")],
    )
    .await
    .fails(404, "NoSuchEntity", &["push", "max"]);

    // AWS managed policies: the ones Wharf ships attach, others do not exist.
    iam(
        &e,
        "AttachUserPolicy",
        &[("UserName", "max"), ("PolicyArn", READ_ONLY)],
    )
    .await
    .ok();
    iam(
        &e,
        "AttachUserPolicy",
        &[
            ("UserName", "max"),
            ("PolicyArn", "arn:aws:iam::aws:policy/AmazonS3FullAccess"),
        ],
    )
    .await
    .fails(
        404,
        "NoSuchEntity",
        &[
            "arn:aws:iam::aws:policy/AmazonS3FullAccess",
            "AmazonEC2ContainerRegistryReadOnly",
        ],
    );
    iam(
        &e,
        "AttachUserPolicy",
        &[
            ("UserName", "max"),
            ("PolicyArn", "not-an-arn-at-all-really"),
        ],
    )
    .await
    .fails(400, "InvalidInput", &["not-an-arn-at-all-really"]);
    iam(
        &e,
        "AttachUserPolicy",
        &[
            ("UserName", "max"),
            ("PolicyArn", "arn:aws:iam::444455556666:policy/theirs"),
        ],
    )
    .await
    .fails(403, "AccessDenied", &["444455556666", ACCOUNT]);

    // Customer managed policies.
    let r = iam(
        &e,
        "CreatePolicy",
        &[
            ("PolicyName", "Pull"),
            ("Path", "/ecr/"),
            ("PolicyDocument", PULL),
            ("Description", "pull images"),
        ],
    )
    .await;
    let p = &r.ok()["Policy"];
    let arn = s(p, &["Arn"]).to_string();
    assert_eq!(arn, "arn:aws:iam::111122223333:policy/ecr/Pull");
    assert!(s(p, &["PolicyId"]).starts_with("ANPA"));
    assert_eq!(s(p, &["DefaultVersionId"]), "v1");
    assert_eq!(p["AttachmentCount"], 0);
    assert_eq!(p["IsAttachable"], true);
    iam(
        &e,
        "CreatePolicy",
        &[("PolicyName", "pull"), ("PolicyDocument", PULL)],
    )
    .await
    .fails(409, "EntityAlreadyExists", &["pull", ACCOUNT]);
    iam(
        &e,
        "CreatePolicy",
        &[("PolicyName", "bad"), ("PolicyDocument", &trust("*"))],
    )
    .await
    .fails(
        400,
        "MalformedPolicyDocument",
        &["Principal is not allowed"],
    );

    iam(
        &e,
        "AttachUserPolicy",
        &[("UserName", "max"), ("PolicyArn", &arn)],
    )
    .await
    .ok();
    let r = iam(&e, "ListAttachedUserPolicies", &[("UserName", "max")]).await;
    assert_eq!(
        r.ok()["AttachedPolicies"],
        json!([
            {"PolicyName": "Pull", "PolicyArn": arn},
            {"PolicyName": "AmazonEC2ContainerRegistryReadOnly", "PolicyArn": READ_ONLY},
        ])
    );
    let r = iam(
        &e,
        "ListAttachedUserPolicies",
        &[("UserName", "max"), ("PathPrefix", "/ecr/")],
    )
    .await;
    assert_eq!(names(r.ok(), "AttachedPolicies", "PolicyName"), ["Pull"]);

    let r = iam(&e, "GetPolicy", &[("PolicyArn", &arn)]).await;
    assert_eq!(r.ok()["Policy"]["AttachmentCount"], 1);
    assert_eq!(s(&r.value, &["Policy", "Description"]), "pull images");
    let r = iam(
        &e,
        "GetPolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v1")],
    )
    .await;
    let v = &r.ok()["PolicyVersion"];
    assert_eq!(v["Document"], serde_json::from_str::<Value>(PULL).unwrap());
    assert_eq!(v["IsDefaultVersion"], true);
    iam(
        &e,
        "GetPolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v2")],
    )
    .await
    .fails(404, "NoSuchEntity", &[&arn, "v2"]);
    let r = iam(&e, "GetPolicy", &[("PolicyArn", READ_ONLY)]).await;
    assert_eq!(
        s(r.ok(), &["Policy", "PolicyName"]),
        "AmazonEC2ContainerRegistryReadOnly"
    );
    assert_eq!(r.value["Policy"]["AttachmentCount"], 1);

    // The store sees what the authorizer will evaluate.
    let applied = e
        .store
        .identity_policies(ACCOUNT, &PrincipalRef::User("max".into()))
        .await
        .unwrap();
    let labels: Vec<&str> = applied.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "inline policy 'pull' of user max".to_string(),
            format!("managed policy {arn} attached to user max"),
            format!("managed policy {READ_ONLY} attached to user max"),
        ]
    );
    assert_eq!(
        applied[1].1,
        IdentityPolicy::Managed {
            arn: arn.clone(),
            document: Some(PULL.to_string())
        }
    );

    let r = iam(&e, "ListPolicies", &[("Scope", "Local")]).await;
    assert_eq!(names(r.ok(), "Policies", "Arn"), std::slice::from_ref(&arn));
    let r = iam(&e, "ListPolicies", &[("Scope", "AWS")]).await;
    assert_eq!(
        names(r.ok(), "Policies", "PolicyName").len(),
        wharf_iam::AWS_MANAGED_POLICIES.len()
    );
    let r = iam(&e, "ListPolicies", &[("OnlyAttached", "true")]).await;
    assert_eq!(
        names(r.ok(), "Policies", "Arn"),
        [arn.clone(), READ_ONLY.to_string()]
    );
    iam(&e, "ListPolicies", &[("Scope", "Everything")])
        .await
        .fails(400, "ValidationError", &["scope", "All, AWS, Local"]);

    iam(&e, "DeletePolicy", &[("PolicyArn", &arn)])
        .await
        .fails(409, "DeleteConflict", &[&arn]);
    iam(&e, "DeleteUser", &[("UserName", "max")]).await.fails(
        409,
        "DeleteConflict",
        &["max", "1 inline", "2 attached"],
    );
    iam(
        &e,
        "DetachUserPolicy",
        &[("UserName", "max"), ("PolicyArn", &arn)],
    )
    .await
    .ok();
    iam(
        &e,
        "DetachUserPolicy",
        &[("UserName", "max"), ("PolicyArn", &arn)],
    )
    .await
    .fails(404, "NoSuchEntity", &[&arn, "max"]);
    iam(&e, "DeletePolicy", &[("PolicyArn", &arn)]).await.ok();
    iam(&e, "GetPolicy", &[("PolicyArn", &arn)])
        .await
        .fails(404, "NoSuchEntity", &[&arn]);
    iam(&e, "DeletePolicy", &[("PolicyArn", READ_ONLY)])
        .await
        .fails(400, "InvalidInput", &["AWS managed"]);
    iam(
        &e,
        "DetachUserPolicy",
        &[("UserName", "max"), ("PolicyArn", READ_ONLY)],
    )
    .await
    .ok();
    iam(
        &e,
        "DeleteUserPolicy",
        &[("UserName", "max"), ("PolicyName", "pull")],
    )
    .await
    .ok();
    iam(&e, "DeleteUser", &[("UserName", "max")]).await.ok();
}

#[tokio::test]
async fn roles() {
    let e = env().await;
    let doc = trust("arn:aws:iam::111122223333:root");
    let r = iam(
        &e,
        "CreateRole",
        &[
            ("RoleName", "Deploy"),
            ("Path", "/svc/"),
            ("AssumeRolePolicyDocument", &doc),
            ("Description", "deploys <things>"),
            ("MaxSessionDuration", "7200"),
            ("Tags.member.1.Key", "env"),
            ("Tags.member.1.Value", "prod"),
        ],
    )
    .await;
    let role = &r.ok()["Role"];
    assert_eq!(
        s(role, &["Arn"]),
        "arn:aws:iam::111122223333:role/svc/Deploy"
    );
    assert!(s(role, &["RoleId"]).starts_with("AROA"));
    assert_eq!(
        role["AssumeRolePolicyDocument"],
        serde_json::from_str::<Value>(&doc).unwrap()
    );
    assert_eq!(s(role, &["Description"]), "deploys <things>");
    assert_eq!(role["MaxSessionDuration"], 7200);
    assert_eq!(role["Tags"], json!([{"Key": "env", "Value": "prod"}]));

    iam(
        &e,
        "CreateRole",
        &[("RoleName", "deploy"), ("AssumeRolePolicyDocument", &doc)],
    )
    .await
    .fails(409, "EntityAlreadyExists", &["Deploy"]);
    iam(
        &e,
        "CreateRole",
        &[("RoleName", "nop"), ("AssumeRolePolicyDocument", PULL)],
    )
    .await
    .fails(400, "MalformedPolicyDocument", &["Principal"]);
    iam(
        &e,
        "CreateRole",
        &[
            ("RoleName", "long"),
            ("AssumeRolePolicyDocument", &doc),
            ("MaxSessionDuration", "60"),
        ],
    )
    .await
    .fails(400, "ValidationError", &["maxSessionDuration", "3600"]);
    iam(
        &e,
        "CreateRole",
        &[
            ("RoleName", "pb"),
            ("AssumeRolePolicyDocument", &doc),
            ("PermissionsBoundary", READ_ONLY),
        ],
    )
    .await
    .fails(
        400,
        "ValidationError",
        &["PermissionsBoundary", "not supported"],
    );

    let r = iam(&e, "GetRole", &[("RoleName", "deploy")]).await;
    assert_eq!(s(r.ok(), &["Role", "RoleName"]), "Deploy");
    iam(
        &e,
        "CreateRole",
        &[("RoleName", "build"), ("AssumeRolePolicyDocument", &doc)],
    )
    .await
    .ok();
    let r = iam(&e, "ListRoles", &[]).await;
    assert_eq!(names(r.ok(), "Roles", "RoleName"), ["build", "Deploy"]);
    let r = iam(&e, "ListRoles", &[("PathPrefix", "/svc/")]).await;
    assert_eq!(names(r.ok(), "Roles", "RoleName"), ["Deploy"]);

    let doc2 = trust("arn:aws:iam::444455556666:root");
    iam(
        &e,
        "UpdateAssumeRolePolicy",
        &[("RoleName", "deploy"), ("PolicyDocument", &doc2)],
    )
    .await
    .ok();
    let r = iam(&e, "GetRole", &[("RoleName", "deploy")]).await;
    assert_eq!(
        r.ok()["Role"]["AssumeRolePolicyDocument"],
        serde_json::from_str::<Value>(&doc2).unwrap()
    );

    // Role tags.
    iam(
        &e,
        "TagRole",
        &[
            ("RoleName", "deploy"),
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "ops"),
        ],
    )
    .await
    .ok();
    let r = iam(&e, "ListRoleTags", &[("RoleName", "deploy")]).await;
    assert_eq!(
        r.ok()["Tags"],
        json!([{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "ops"}])
    );
    iam(
        &e,
        "UntagRole",
        &[("RoleName", "deploy"), ("TagKeys.member.1", "env")],
    )
    .await
    .ok();
    let r = iam(&e, "ListRoleTags", &[("RoleName", "deploy")]).await;
    assert_eq!(r.ok()["Tags"], json!([{"Key": "team", "Value": "ops"}]));

    // Role policies.
    iam(
        &e,
        "PutRolePolicy",
        &[
            ("RoleName", "deploy"),
            ("PolicyName", "pull"),
            ("PolicyDocument", PULL),
        ],
    )
    .await
    .ok();
    let r = iam(
        &e,
        "GetRolePolicy",
        &[("RoleName", "deploy"), ("PolicyName", "pull")],
    )
    .await;
    assert_eq!(s(r.ok(), &["RoleName"]), "Deploy");
    assert_eq!(
        r.value["PolicyDocument"],
        serde_json::from_str::<Value>(PULL).unwrap()
    );
    let r = iam(&e, "ListRolePolicies", &[("RoleName", "deploy")]).await;
    assert_eq!(r.ok()["PolicyNames"], json!(["pull"]));
    iam(
        &e,
        "AttachRolePolicy",
        &[("RoleName", "deploy"), ("PolicyArn", READ_ONLY)],
    )
    .await
    .ok();
    let r = iam(&e, "ListAttachedRolePolicies", &[("RoleName", "deploy")]).await;
    assert_eq!(names(r.ok(), "AttachedPolicies", "PolicyArn"), [READ_ONLY]);

    iam(&e, "DeleteRole", &[("RoleName", "deploy")])
        .await
        .fails(409, "DeleteConflict", &["Deploy", "1 inline", "1 attached"]);
    iam(
        &e,
        "DeleteRolePolicy",
        &[("RoleName", "deploy"), ("PolicyName", "pull")],
    )
    .await
    .ok();
    iam(
        &e,
        "DetachRolePolicy",
        &[("RoleName", "deploy"), ("PolicyArn", READ_ONLY)],
    )
    .await
    .ok();
    iam(&e, "DeleteRole", &[("RoleName", "deploy")]).await.ok();
    iam(&e, "GetRole", &[("RoleName", "deploy")]).await.fails(
        404,
        "NoSuchEntity",
        &["deploy", ACCOUNT],
    );
}

#[tokio::test]
async fn authorization_and_protocol_errors() {
    let e = env().await;
    let mallory = user(ACCOUNT, "mallory");
    iam(&e, "CreateUser", &[("UserName", "mallory")]).await.ok();
    iam(&e, "CreateUser", &[("UserName", "victim"), ("Path", "/p/")])
        .await
        .ok();

    // Every action asks the guard first, for the entity's ARN.
    e.guard.clear();
    iam(&e, "GetUser", &[("UserName", "victim")]).await.ok();
    iam(&e, "ListUsers", &[]).await.ok();
    iam(
        &e,
        "CreateUser",
        &[
            ("UserName", "t"),
            ("Path", "/x/"),
            ("Tags.member.1.Key", "k"),
            ("Tags.member.1.Value", "v"),
        ],
    )
    .await
    .ok();
    iam(&e, "GetPolicy", &[("PolicyArn", READ_ONLY)]).await.ok();
    assert_eq!(
        e.guard.checks(),
        [
            ("iam:GetUser", "arn:aws:iam::111122223333:user/p/victim"),
            ("iam:ListUsers", "*"),
            ("iam:CreateUser", "arn:aws:iam::111122223333:user/x/t"),
            ("iam:TagUser", "arn:aws:iam::111122223333:user/x/t"),
            ("iam:GetPolicy", READ_ONLY),
        ]
        .map(|(a, r)| (a.to_string(), r.to_string()))
    );

    // A denial is AccessDenied with the guard's reason; a denied caller does not
    // learn whether the entity exists.
    e.guard.deny(&mallory, "iam:DeleteUser");
    e.guard.deny(&mallory, "iam:GetUser");
    let r = call(
        &e.api,
        &mallory,
        "iam",
        "DeleteUser",
        &[("UserName", "victim")],
    )
    .await;
    r.fails(
        403,
        "AccessDenied",
        &[
            "arn:aws:iam::111122223333:user/mallory",
            "iam:DeleteUser",
            "user/p/victim",
        ],
    );
    call(
        &e.api,
        &mallory,
        "iam",
        "GetUser",
        &[("UserName", "nobody")],
    )
    .await
    .fails(403, "AccessDenied", &["iam:GetUser"]);
    iam(&e, "GetUser", &[("UserName", "victim")]).await.ok();

    // Each account sees only its own entities.
    let other = user(OTHER_ACCOUNT, "admin");
    call(&e.api, &other, "iam", "GetUser", &[("UserName", "victim")])
        .await
        .fails(404, "NoSuchEntity", &["victim", OTHER_ACCOUNT]);
    let r = call(&e.api, &other, "iam", "ListUsers", &[]).await;
    assert_eq!(r.ok()["Users"], json!([]));

    // Protocol errors.
    let anonymous = wharf_auth::Caller {
        account_id: String::new(),
        principal: wharf_auth::Principal::Anonymous,
        access_key_id: None,
        source_ip: None,
    };
    call(&e.api, &anonymous, "iam", "ListUsers", &[])
        .await
        .fails(403, "MissingAuthenticationToken", &["ListUsers", "signed"]);
    let resp = e
        .api
        .handle(&admin(), "iam", &[("Action".into(), "CreateGroup".into())])
        .await;
    assert_eq!(resp.status(), 400);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let v = parse("iam", "CreateGroup", 400, &body);
    assert_eq!(v["Error"]["Code"], "InvalidAction");
    assert!(v["Error"]["Message"]
        .as_str()
        .unwrap()
        .contains("CreateGroup"));
    let resp = e
        .api
        .handle(
            &admin(),
            "iam",
            &[
                ("Action".into(), "ListUsers".into()),
                ("Version".into(), "2099-01-01".into()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = e.api.handle(&admin(), "iam", &[]).await;
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = parse("iam", "ListUsers", 400, std::str::from_utf8(&body).unwrap());
    assert_eq!(v["Error"]["Code"], "MissingAction");
    let resp = e
        .api
        .handle(&admin(), "ecr", &[("Action".into(), "ListUsers".into())])
        .await;
    assert_eq!(resp.status(), 400);
}

/// Requests as botocore serializes them (lists, tags, booleans, integers), answered
/// as botocore reads them.
#[tokio::test]
async fn requests_serialized_by_botocore() {
    let e = env().await;
    let a = admin();
    let r = call_boto(
        &e.api,
        &a,
        "iam",
        "CreateUser",
        json!({"UserName": "zed", "Path": "/b/", "Tags": [{"Key": "k1", "Value": "v1"}, {"Key": "k2", "Value": ""}]}),
    )
    .await;
    assert_eq!(
        r.ok()["User"]["Tags"],
        json!([{"Key": "k1", "Value": "v1"}, {"Key": "k2", "Value": ""}])
    );
    call_boto(
        &e.api,
        &a,
        "iam",
        "UntagUser",
        json!({"UserName": "zed", "TagKeys": ["k1", "k2"]}),
    )
    .await
    .ok();
    let r = call_boto(
        &e.api,
        &a,
        "iam",
        "ListUserTags",
        json!({"UserName": "zed"}),
    )
    .await;
    assert_eq!(r.ok()["Tags"], json!([]));
    let r = call_boto(
        &e.api,
        &a,
        "iam",
        "CreateRole",
        json!({"RoleName": "r", "AssumeRolePolicyDocument": trust("arn:aws:iam::111122223333:root"), "MaxSessionDuration": 43200,
               "Description": "tab\there"}),
    )
    .await;
    assert_eq!(r.ok()["Role"]["MaxSessionDuration"], 43200);
    assert_eq!(r.value["Role"]["Description"], "tab\there");
    call_boto(
        &e.api,
        &a,
        "iam",
        "AttachRolePolicy",
        json!({"RoleName": "r", "PolicyArn": READ_ONLY}),
    )
    .await
    .ok();
    let r = call_boto(
        &e.api,
        &a,
        "iam",
        "ListPolicies",
        json!({"OnlyAttached": true, "Scope": "AWS", "MaxItems": 5}),
    )
    .await;
    assert_eq!(names(r.ok(), "Policies", "Arn"), [READ_ONLY]);
    assert_eq!(r.value["IsTruncated"], false);
    let r = call_boto(
        &e.api,
        &a,
        "iam",
        "ListPolicies",
        json!({"Scope": "AWS", "MaxItems": 4}),
    )
    .await;
    assert_eq!(names(r.ok(), "Policies", "Arn").len(), 4);
    let marker = s(&r.value, &["Marker"]).to_string();
    let r = call_boto(
        &e.api,
        &a,
        "iam",
        "ListPolicies",
        json!({"Scope": "AWS", "Marker": marker}),
    )
    .await;
    assert_eq!(
        names(r.ok(), "Policies", "Arn").len(),
        wharf_iam::AWS_MANAGED_POLICIES.len() - 4
    );
    let r = call_boto(
        &e.api,
        &a,
        "sts",
        "AssumeRole",
        json!({"RoleArn": "arn:aws:iam::111122223333:role/r", "RoleSessionName": "s-1", "DurationSeconds": 43200}),
    )
    .await;
    assert!(s(r.ok(), &["Credentials", "AccessKeyId"]).starts_with("ASIA"));
}
