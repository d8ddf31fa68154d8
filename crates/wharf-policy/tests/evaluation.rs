//! End-to-end tests of the policy language through the public API: parsing and
//! validation messages, evaluation logic, managed policies and explanations.

use wharf_policy::{
    evaluate, managed, Decision, Effect, GrantScope, PolicyDocument, PolicyKind, PolicySource,
    PrincipalInfo, Reason, RequestContext,
};

const A: &str = "111122223333";
const B: &str = "444455556666";
const REPO: &str = "arn:aws:ecr:us-east-1:111122223333:repository/team/app";

fn identity(json: &str) -> PolicyDocument {
    PolicyDocument::parse(json, PolicyKind::Identity).unwrap_or_else(|e| panic!("{e}"))
}

fn resource_policy(json: &str) -> PolicyDocument {
    PolicyDocument::parse(json, PolicyKind::Resource).unwrap_or_else(|e| panic!("{e}"))
}

fn trust(json: &str) -> PolicyDocument {
    PolicyDocument::parse(json, PolicyKind::Trust).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_error(json: &str, kind: PolicyKind) -> String {
    match PolicyDocument::parse(json, kind) {
        Ok(_) => panic!("expected {json} to be rejected"),
        Err(e) => e.message().to_string(),
    }
}

fn alice() -> PrincipalInfo {
    PrincipalInfo::user(A, "/", "alice")
}

fn bob_in_b() -> PrincipalInfo {
    PrincipalInfo::user(B, "/", "bob")
}

fn req(p: PrincipalInfo, action: &str, resource: &str) -> RequestContext {
    RequestContext::new(p, action, resource).with_standard_keys()
}

/// Evaluates with labelled identity policies and an optional repository policy.
fn run(
    ctx: &RequestContext,
    ids: &[(&str, &PolicyDocument)],
    repo: Option<&PolicyDocument>,
    resource_account: &str,
) -> Decision {
    let sources: Vec<PolicySource<'_>> =
        ids.iter().map(|(l, d)| PolicySource::new(*l, d)).collect();
    let rp = repo.map(|d| PolicySource::new("repository policy of team/app", d));
    evaluate(ctx, &sources, rp.as_ref(), resource_account)
}

fn allow_all_ecr() -> PolicyDocument {
    identity(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ecr","Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#,
    )
}

// ---------------------------------------------------------------- validation

#[test]
fn validation_messages_say_where_and_why() {
    let cases: &[(&str, PolicyKind, &str)] = &[
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"},{"Effect":"allow","Action":"ecr:*","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[1].Effect must be \"Allow\" or \"Deny\", not \"allow\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[]}"#,
            PolicyKind::Identity,
            "Statement must not be an empty list",
        ),
        (
            r#"{"Version":"2012-10-17","Statements":[]}"#,
            PolicyKind::Identity,
            "unknown top-level element \"Statements\"",
        ),
        (
            r#"{"version":"2012-10-17","Statement":[]}"#,
            PolicyKind::Identity,
            "unknown top-level element \"version\" (element names are case-sensitive: \"Version\")",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","action":"ecr:*","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0] has unknown element \"action\" (element names are case-sensitive: \"Action\")",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","NotAction":"iam:*","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0] must not have both Action and NotAction",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0] must have an Action or a NotAction",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}"#,
            PolicyKind::Identity,
            "Statement[0] must have a Resource or a NotResource",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*","NotResource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0] must not have both Resource and NotResource",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0].Principal is not allowed in an identity-based policy",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}"#,
            PolicyKind::Resource,
            "Statement[0] must have a Principal or a NotPrincipal in a resource-based policy",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole","Resource":"*"}]}"#,
            PolicyKind::Trust,
            "Statement[0].Resource is not allowed in a role trust policy",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}]}"#,
            PolicyKind::Trust,
            "Statement[0].NotPrincipal is not allowed in a role trust policy",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"111122223333"},"Action":"ecr:*"}]}"#,
            PolicyKind::Resource,
            "Statement[0].NotPrincipal can only be used with \"Effect\": \"Deny\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecrBatchGetImage","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0].Action \"ecrBatchGetImage\" must be \"*\" or \"service:action\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr"],"Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0].Action[1] \"ecr\" must be \"*\" or \"service:action\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"repository/app"}]}"#,
            PolicyKind::Identity,
            "Statement[0].Resource \"repository/app\" must be \"*\" or an ARN",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/${aws:username"}]}"#,
            PolicyKind::Identity,
            "Statement[0].Resource: unterminated policy variable",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"ecr:*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"ecr:*","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[1].Sid \"A\" is already used by Statement[0]",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"no spaces here","Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#,
            PolicyKind::Identity,
            "Statement[0].Sid \"no spaces here\" may contain only letters and digits",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEqualz":{"aws:username":"a"}}}]}"#,
            PolicyKind::Identity,
            "Statement[0].Condition: unknown condition operator \"StringEqualz\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/40"}}}]}"#,
            PolicyKind::Identity,
            "Statement[0].Condition.IpAddress[\"aws:SourceIp\"]: value \"10.0.0.0/40\" of IpAddress is not an IPv4 or IPv6 address or CIDR block",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"aws:TagKeys":[["a"]]}}}]}"#,
            PolicyKind::Identity,
            "must be a string, number or boolean, or a list of them",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/*"},"Action":"ecr:*"}]}"#,
            PolicyKind::Resource,
            "a principal cannot use wildcards except \"*\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Aws":"*"},"Action":"ecr:*"}]}"#,
            PolicyKind::Resource,
            "Statement[0].Principal has unknown principal type \"Aws\"",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"arn:aws:iam::111122223333:root","Action":"ecr:*"}]}"#,
            PolicyKind::Resource,
            "Statement[0].Principal must be \"*\" or an object",
        ),
        ("not json", PolicyKind::Identity, "policy document is not valid JSON"),
        ("[1]", PolicyKind::Identity, "policy document must be a JSON object"),
    ];
    for (json, kind, want) in cases {
        let got = parse_error(json, *kind);
        assert!(
            got.contains(want),
            "for {json}\n  got:  {got}\n  want: {want}"
        );
    }
}

#[test]
fn oversized_documents_are_rejected() {
    let actions: Vec<String> = (0..600).map(|i| format!("\"ecr:Action{i:04}\"")).collect();
    let json = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
        actions.join(",")
    );
    assert!(json.len() > 10_240);
    let e = parse_error(&json, PolicyKind::Identity);
    assert!(e.contains("the limit is 10240"), "{e}");
    // White space does not count, as with AWS.
    let padded = format!(
        "{}{}",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#,
        " ".repeat(20_000)
    );
    assert!(PolicyDocument::parse(&padded, PolicyKind::Identity).is_ok());
}

#[test]
fn parsed_statements_expose_their_elements() {
    let doc = resource_policy(
        r#"{"Version":"2012-10-17","Id":"repo","Statement":{"Sid":"Pull from CI","Effect":"Allow",
            "Principal":{"AWS":["111122223333","arn:aws:iam::444455556666:role/ci"],"Service":"codebuild.amazonaws.com"},
            "Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],
            "Condition":{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":"o-a1b2c3d4e5/*"}}}}"#,
    );
    assert_eq!(doc.version(), "2012-10-17");
    assert_eq!(doc.id(), Some("repo"));
    let st = &doc.statements()[0];
    assert_eq!(st.sid.as_deref(), Some("Pull from CI"));
    assert_eq!(st.effect, Effect::Allow);
    assert!(st.resource.is_none() && st.not_resource.is_none());
    let actions: Vec<&str> = st.action.iter().flatten().map(|a| a.as_str()).collect();
    assert_eq!(actions, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]);
    assert!(st.covers_action("ECR:batchgetimage"));
    assert!(!st.covers_action("ecr:PutImage"));
    match &st.principal {
        Some(wharf_policy::Principal::Ids(ids)) => assert_eq!(ids.len(), 3),
        other => panic!("unexpected principal {other:?}"),
    }
    assert_eq!(st.condition[0].operator(), "ForAnyValue:StringLike");
}

// ---------------------------------------------------------------- matching

#[test]
fn action_and_resource_wildcards() {
    let doc = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:Describe*","ecr:?atchGetImage"],
            "Resource":["arn:aws:ecr:us-*-1:111122223333:repository/team/*"]}]}"#,
    );
    let ok = |action: &str, resource: &str| {
        run(&req(alice(), action, resource), &[("p", &doc)], None, A).allowed
    };
    assert!(ok("ecr:DescribeImages", REPO));
    assert!(
        ok("ecr:describeimages", REPO),
        "actions are case-insensitive"
    );
    assert!(ok("ecr:BatchGetImage", REPO));
    assert!(!ok("ecr:PutImage", REPO));
    assert!(ok(
        "ecr:DescribeImages",
        "arn:aws:ecr:us-west-1:111122223333:repository/team/x/y"
    ));
    assert!(!ok(
        "ecr:DescribeImages",
        "arn:aws:ecr:eu-west-1:111122223333:repository/team/app"
    ));
    assert!(!ok(
        "ecr:DescribeImages",
        "arn:aws:ecr:us-east-1:111122223333:repository/other"
    ));
    assert!(
        !ok(
            "ecr:DescribeImages",
            "arn:aws:ecr:us-east-1:111122223333:repository/Team/app"
        ),
        "ARNs are case-sensitive"
    );
    // A mid-field wildcard does not reach across the region/account colon.
    assert!(!ok(
        "ecr:DescribeImages",
        "arn:aws:ecr:us-east:x-1:111122223333:repository/team/app"
    ));
}

#[test]
fn policy_variables_in_resources() {
    let doc = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*",
            "Resource":"arn:aws:ecr:*:${aws:PrincipalAccount}:repository/home/${aws:username}/*"}]}"#,
    );
    let home = "arn:aws:ecr:us-east-1:111122223333:repository/home/alice/tools";
    assert!(run(&req(alice(), "ecr:PutImage", home), &[("p", &doc)], None, A).allowed);
    let carol = PrincipalInfo::user(A, "/", "carol");
    assert!(!run(&req(carol, "ecr:PutImage", home), &[("p", &doc)], None, A).allowed);
    // A role session has no aws:username: the variable does not resolve, nothing matches.
    let session = PrincipalInfo::assumed_role(A, "/", "alice", "s");
    assert!(!run(&req(session, "ecr:PutImage", home), &[("p", &doc)], None, A).allowed);
    // Without with_standard_keys the variable has no value either.
    let bare = RequestContext::new(alice(), "ecr:PutImage", home);
    assert!(!run(&bare, &[("p", &doc)], None, A).allowed);

    // ${*} is a literal asterisk, not a wildcard.
    let lit = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:us-east-1:111122223333:repository/a${*}"}]}"#,
    );
    assert!(
        !run(
            &req(
                alice(),
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:111122223333:repository/ab"
            ),
            &[("p", &lit)],
            None,
            A
        )
        .allowed
    );
    assert!(
        run(
            &req(
                alice(),
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:111122223333:repository/a*"
            ),
            &[("p", &lit)],
            None,
            A
        )
        .allowed
    );

    // Version 2008 (or none): no variables; the text is literal.
    let old = identity(
        r#"{"Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/home/${aws:username}"}]}"#,
    );
    assert_eq!(old.version(), "2008-10-17");
    assert!(
        !run(
            &req(
                alice(),
                "ecr:PutImage",
                "arn:aws:ecr:us-east-1:111122223333:repository/home/alice"
            ),
            &[("p", &old)],
            None,
            A
        )
        .allowed
    );
}

#[test]
fn not_action_and_not_resource() {
    let doc = identity(
        r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"AllButDelete","Effect":"Allow","NotAction":["ecr:Delete*","ecr:BatchDeleteImage"],"Resource":"*"},
            {"Sid":"OnlyTeam","Effect":"Deny","Action":"ecr:*","NotResource":"arn:aws:ecr:*:111122223333:repository/team/*"}]}"#,
    );
    let d = |action: &str, resource: &str| {
        run(&req(alice(), action, resource), &[("p", &doc)], None, A)
    };
    assert!(d("ecr:PutImage", REPO).allowed);
    assert!(
        d("sts:GetCallerIdentity", REPO).allowed,
        "NotAction allows every other action"
    );
    assert!(!d("ecr:DeleteRepository", REPO).allowed);
    assert!(matches!(
        d("ecr:DeleteRepository", REPO).reason,
        Reason::NotAllowed { .. }
    ));
    let outside = d(
        "ecr:PutImage",
        "arn:aws:ecr:us-east-1:111122223333:repository/other",
    );
    assert!(!outside.allowed);
    assert!(
        matches!(&outside.reason, Reason::ExplicitDeny { sid: Some(s), statement: 1, .. } if s == "OnlyTeam")
    );
}

#[test]
fn conditions_through_evaluation() {
    let doc = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{
            "IpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:db8::/32"]},
            "Bool":{"aws:SecureTransport":"true"},
            "DateLessThan":{"aws:CurrentTime":"2100-01-01T00:00:00Z"},
            "StringEquals":{"aws:ResourceTag/owner":"${aws:username}"}}}]}"#,
    );
    let base = || {
        req(alice(), "ecr:PutImage", REPO)
            .with_key("aws:SecureTransport", ["true"])
            .with_key("aws:ResourceTag/owner", ["alice"])
    };
    let ok = |ctx: RequestContext| run(&ctx, &[("p", &doc)], None, A).allowed;
    assert!(ok(base().with_key("aws:SourceIp", ["203.0.113.9"])));
    assert!(
        ok(base().with_key("aws:SourceIp", ["2001:db8:ffff::1"])),
        "IPv6 CIDR"
    );
    assert!(!ok(base().with_key("aws:SourceIp", ["198.51.100.1"])));
    assert!(!ok(base()), "missing aws:SourceIp fails IpAddress");
    assert!(!ok(base()
        .with_key("aws:SourceIp", ["203.0.113.9"])
        .with_key("aws:SecureTransport", ["false"])));
    assert!(!ok(base()
        .with_key("aws:SourceIp", ["203.0.113.9"])
        .with_key("aws:ResourceTag/owner", ["bob"])));
    assert!(!ok(base()
        .with_key("aws:SourceIp", ["203.0.113.9"])
        .with_key("aws:CurrentTime", ["2100-01-01T00:00:01Z"])));
}

#[test]
fn deny_unless_tagged_with_set_operators() {
    // A common guard: deny tagging unless every requested tag key is allowed.
    let doc = identity(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"ecr:TagResource","Resource":"*"},
            {"Sid":"OnlyKnownKeys","Effect":"Deny","Action":"ecr:TagResource","Resource":"*",
             "Condition":{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["team","env"]}}}]}"#,
    );
    let d = |keys: Option<&[&str]>| {
        let mut ctx = req(alice(), "ecr:TagResource", REPO);
        if let Some(k) = keys {
            ctx = ctx.with_key("aws:TagKeys", k.iter().copied());
        }
        run(&ctx, &[("p", &doc)], None, A)
    };
    assert!(d(Some(&["team", "env"])).allowed);
    assert!(!d(Some(&["team", "cost"])).allowed);
    assert!(
        d(Some(&[])).allowed,
        "ForAnyValue over an empty set is false: no deny"
    );
    assert!(
        d(None).allowed,
        "ForAnyValue over a missing key is false: no deny"
    );
}

// ---------------------------------------------------------------- principals

#[test]
fn principal_forms_in_resource_policies() {
    let role = PrincipalInfo::assumed_role(A, "/ci/", "builder", "run-42");
    let policy = |principal: &str| {
        resource_policy(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Pull","Effect":"Allow","Principal":{principal},"Action":"ecr:BatchGetImage"}}]}}"#
        ))
    };
    let ok = |p: &PrincipalInfo, doc: &PolicyDocument| {
        run(
            &req(p.clone(), "ecr:BatchGetImage", REPO),
            &[],
            Some(doc),
            A,
        )
        .allowed
    };

    assert!(ok(&alice(), &policy(r#""*""#)));
    assert!(ok(&alice(), &policy(r#"{"AWS":"*"}"#)));
    assert!(ok(
        &alice(),
        &policy(r#"{"AWS":"arn:aws:iam::111122223333:user/alice"}"#)
    ));
    assert!(!ok(
        &alice(),
        &policy(r#"{"AWS":"arn:aws:iam::111122223333:user/bob"}"#)
    ));
    assert!(
        ok(
            &role,
            &policy(r#"{"AWS":"arn:aws:iam::111122223333:role/ci/builder"}"#)
        ),
        "role ARN covers its sessions"
    );
    assert!(ok(
        &role,
        &policy(r#"{"AWS":"arn:aws:sts::111122223333:assumed-role/builder/run-42"}"#)
    ));
    assert!(!ok(
        &role,
        &policy(r#"{"AWS":"arn:aws:sts::111122223333:assumed-role/builder/run-43"}"#)
    ));
    assert!(ok(
        &role,
        &policy(
            r#"{"AWS":["arn:aws:iam::111122223333:user/bob","arn:aws:iam::111122223333:role/ci/builder"]}"#
        )
    ));
    assert!(!ok(
        &alice(),
        &policy(r#"{"Service":"ecs-tasks.amazonaws.com"}"#)
    ));
    assert!(!ok(
        &alice(),
        &policy(r#"{"Federated":"cognito-identity.amazonaws.com"}"#)
    ));
    // An account grant alone delegates to IAM: not enough without an identity allow.
    assert!(!ok(&alice(), &policy(r#"{"AWS":"111122223333"}"#)));
    assert!(!ok(
        &alice(),
        &policy(r#"{"AWS":"arn:aws:iam::111122223333:root"}"#)
    ));
}

#[test]
fn root_delegation_needs_identity_allow() {
    let repo = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Account","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"ecr:*"}]}"#,
    );
    let none = run(&req(alice(), "ecr:PutImage", REPO), &[], Some(&repo), A);
    assert!(!none.allowed);
    match &none.reason {
        Reason::NotAllowed {
            resource_grant: Some(rg),
            cross_account: false,
            ..
        } => {
            assert_eq!(rg.scope, GrantScope::Account);
            assert_eq!(rg.grant.sid.as_deref(), Some("Account"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = none.to_string();
    assert!(
        text.contains("only to account 111122223333 as a whole, which delegates to IAM"),
        "{text}"
    );
    assert!(
        text.contains("no identity-based policy of arn:aws:iam::111122223333:user/alice allows it"),
        "{text}"
    );

    let ecr = allow_all_ecr();
    let with_identity = run(
        &req(alice(), "ecr:PutImage", REPO),
        &[("inline policy 'ecr' of user alice", &ecr)],
        Some(&repo),
        A,
    );
    assert!(with_identity.allowed);
    assert!(
        matches!(&with_identity.reason, Reason::Allowed { source, .. } if source == "inline policy 'ecr' of user alice")
    );
}

#[test]
fn same_account_either_policy_suffices() {
    let repo = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"AlicePush","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":["ecr:PutImage","ecr:BatchGetImage"]}]}"#,
    );
    let d = run(&req(alice(), "ecr:PutImage", REPO), &[], Some(&repo), A);
    assert!(d.allowed, "{d}");
    assert!(
        matches!(&d.reason, Reason::Allowed { source, statement: 0, .. } if source == "repository policy of team/app")
    );

    let ecr = allow_all_ecr();
    let d = run(
        &req(alice(), "ecr:DeleteRepository", REPO),
        &[("inline policy 'ecr' of user alice", &ecr)],
        Some(&repo),
        A,
    );
    assert!(d.allowed);
    assert!(
        matches!(&d.reason, Reason::Allowed { source, sid: Some(s), .. } if source.starts_with("inline") && s == "Ecr")
    );
}

#[test]
fn cross_account_needs_both() {
    let repo = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"PartnerPull","Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
    );
    let ecr = allow_all_ecr();
    let bob_policy = [("inline policy 'ecr' of user bob", &ecr)];

    // Resource policy only.
    let d = run(
        &req(bob_in_b(), "ecr:BatchGetImage", REPO),
        &[],
        Some(&repo),
        A,
    );
    assert!(!d.allowed);
    let text = d.to_string();
    assert!(text.contains("statement \"PartnerPull\" (Statement[0]) of repository policy of team/app allows ecr:BatchGetImage"), "{text}");
    assert!(
        text.contains("to account 444455556666, but no identity-based policy"),
        "{text}"
    );
    assert!(text.contains("(cross-account access needs both)"), "{text}");

    // Identity policy only.
    let d = run(
        &req(bob_in_b(), "ecr:PutImage", REPO),
        &bob_policy,
        Some(&repo),
        A,
    );
    assert!(!d.allowed);
    assert!(matches!(
        &d.reason,
        Reason::NotAllowed {
            cross_account: true,
            identity_grant: Some(_),
            resource_grant: None,
            ..
        }
    ));
    let text = d.to_string();
    assert!(text.contains("statement \"Ecr\" (Statement[0]) of inline policy 'ecr' of user bob allows ecr:PutImage"), "{text}");
    assert!(text.contains("belongs to account 111122223333 and the repository policy of team/app does not grant it"), "{text}");

    // No resource policy at all.
    let d = run(
        &req(bob_in_b(), "ecr:BatchGetImage", REPO),
        &bob_policy,
        None,
        A,
    );
    assert!(!d.allowed);
    assert!(
        d.to_string().contains("no resource-based policy grants it"),
        "{d}"
    );

    // Both.
    let d = run(
        &req(bob_in_b(), "ecr:BatchGetImage", REPO),
        &bob_policy,
        Some(&repo),
        A,
    );
    assert!(d.allowed);
    assert!(matches!(&d.reason, Reason::Allowed { sid: Some(s), .. } if s == "PartnerPull"));
    assert_eq!(
        d.also.as_ref().map(|g| g.source.as_str()),
        Some("inline policy 'ecr' of user bob")
    );
    let text = d.to_string();
    assert!(
        text.contains(
            "together with statement \"Ecr\" (Statement[0]) of inline policy 'ecr' of user bob"
        ),
        "{text}"
    );

    // Principal "*" is no shortcut across accounts.
    let public = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}]}"#,
    );
    assert!(
        !run(
            &req(bob_in_b(), "ecr:BatchGetImage", REPO),
            &[],
            Some(&public),
            A
        )
        .allowed
    );
    assert!(
        run(
            &req(bob_in_b(), "ecr:BatchGetImage", REPO),
            &bob_policy,
            Some(&public),
            A
        )
        .allowed
    );
}

#[test]
fn anonymous_access() {
    let public = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Public","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
    );
    let aws_star = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"ecr:BatchGetImage"}]}"#,
    );
    let account_only = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"ecr:BatchGetImage"}]}"#,
    );
    let anon = || req(PrincipalInfo::anonymous(), "ecr:BatchGetImage", REPO);
    let d = run(&anon(), &[], Some(&public), A);
    assert!(d.allowed);
    assert_eq!(d.principal, "anonymous");
    assert!(run(&anon(), &[], Some(&aws_star), A).allowed);
    let d = run(&anon(), &[], Some(&account_only), A);
    assert!(!d.allowed);
    assert!(matches!(
        d.reason,
        Reason::NotAllowed {
            anonymous: true,
            ..
        }
    ));
    assert!(
        d.to_string()
            .contains("does not allow ecr:BatchGetImage on"),
        "{d}"
    );
    let d = run(&anon(), &[], None, A);
    assert!(!d.allowed);
    assert!(
        d.to_string()
            .contains("needs a resource-based policy that allows it to Principal \"*\""),
        "{d}"
    );
    // Identity policies never admit an anonymous caller.
    let admin = managed::by_name("AdministratorAccess")
        .expect("shipped")
        .parse()
        .expect("valid");
    assert!(
        !run(
            &anon(),
            &[("managed policy AdministratorAccess", &admin)],
            None,
            A
        )
        .allowed
    );
    assert!(
        !run(
            &req(PrincipalInfo::anonymous(), "ecr:PutImage", REPO),
            &[],
            Some(&public),
            A
        )
        .allowed
    );
}

#[test]
fn not_principal_deny() {
    let repo = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"Everyone","Effect":"Allow","Principal":"*","Action":"ecr:*"},
            {"Sid":"OnlyAdmins","Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:root","arn:aws:iam::111122223333:user/alice","arn:aws:iam::111122223333:role/admin"]},"Action":"ecr:DeleteRepository"}]}"#,
    );
    let del = |p: PrincipalInfo| run(&req(p, "ecr:DeleteRepository", REPO), &[], Some(&repo), A);
    assert!(del(alice()).allowed, "listed with its account: exempt");
    assert!(
        del(PrincipalInfo::assumed_role(A, "/", "admin", "x")).allowed,
        "role ARN exempts its sessions"
    );
    let carol = del(PrincipalInfo::user(A, "/", "carol"));
    assert!(!carol.allowed);
    assert!(
        matches!(&carol.reason, Reason::ExplicitDeny { sid: Some(s), statement: 1, .. } if s == "OnlyAdmins")
    );
    assert!(!del(PrincipalInfo::anonymous()).allowed);

    // Without the account listed, even the named user is denied (AWS checks the account first).
    let no_account = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":"*","Action":"ecr:*"},
            {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"ecr:DeleteRepository"}]}"#,
    );
    assert!(
        !run(
            &req(alice(), "ecr:DeleteRepository", REPO),
            &[],
            Some(&no_account),
            A
        )
        .allowed
    );
}

#[test]
fn explicit_deny_overrides_everything() {
    let repo = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"DenyProd","Effect":"Deny","Principal":"*","Action":"ecr:PutImage",
            "Condition":{"StringEquals":{"aws:ResourceTag/env":"prod"}}}]}"#,
    );
    let admin = managed::by_name("AdministratorAccess")
        .expect("shipped")
        .parse()
        .expect("valid");
    let ids = [(
        "managed policy arn:aws:iam::aws:policy/AdministratorAccess",
        &admin,
    )];
    let prod = req(alice(), "ecr:PutImage", REPO).with_key("aws:ResourceTag/env", ["prod"]);
    let d = run(&prod, &ids, Some(&repo), A);
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        Reason::ExplicitDeny {
            source: "repository policy of team/app".into(),
            sid: Some("DenyProd".into()),
            statement: 0
        }
    );
    assert_eq!(
        d.to_string(),
        format!("denied by statement \"DenyProd\" (Statement[0]) of repository policy of team/app, which explicitly denies ecr:PutImage on {REPO}")
    );
    let dev = req(alice(), "ecr:PutImage", REPO).with_key("aws:ResourceTag/env", ["dev"]);
    assert!(run(&dev, &ids, Some(&repo), A).allowed);

    // Identity-policy denies apply too, and a Sid-less statement is named by index.
    let deny = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"},{"Effect":"Deny","Action":"ecr:Delete*","Resource":"*"}]}"#,
    );
    let d = run(
        &req(alice(), "ecr:DeleteRepository", REPO),
        &[("inline policy 'guard' of user alice", &deny)],
        None,
        A,
    );
    assert_eq!(
        d.to_string(),
        format!("denied by Statement[1] of inline policy 'guard' of user alice, which explicitly denies ecr:DeleteRepository on {REPO}")
    );
}

#[test]
fn trust_policies() {
    let role = "arn:aws:iam::111122223333:role/deployer";
    let names_alice = trust(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"sts:AssumeRole"}]}"#,
    );
    let names_account = trust(
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Acct","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}"#,
    );
    let assume = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::111122223333:role/*"}]}"#,
    );
    let eval =
        |p: PrincipalInfo, t: &PolicyDocument, ids: &[(&str, &PolicyDocument)], mfa: bool| {
            let ctx = req(p, "sts:AssumeRole", role)
                .with_key("aws:MultiFactorAuthPresent", [mfa.to_string()]);
            let sources: Vec<PolicySource<'_>> =
                ids.iter().map(|(l, d)| PolicySource::new(*l, d)).collect();
            evaluate(
                &ctx,
                &sources,
                Some(&PolicySource::new("trust policy of role deployer", t)),
                A,
            )
        };
    assert!(
        eval(alice(), &names_alice, &[], false).allowed,
        "trust naming the user suffices in-account"
    );
    // Identity-based policies alone never let anyone assume a role, even in-account.
    let carol = eval(
        PrincipalInfo::user(A, "/", "carol"),
        &names_alice,
        &[("p", &assume)],
        false,
    );
    assert!(!carol.allowed);
    assert!(matches!(
        carol.reason,
        Reason::NotAllowed {
            trust_policy: true,
            ..
        }
    ));
    let text = carol.to_string();
    assert!(text.contains("Statement[0] of p allows sts:AssumeRole on arn:aws:iam::111122223333:role/deployer, but the trust policy of role deployer does not grant it to arn:aws:iam::111122223333:user/carol"), "{text}");
    assert!(
        !eval(alice(), &names_account, &[], true).allowed,
        "account trust delegates to IAM"
    );
    assert!(eval(alice(), &names_account, &[("p", &assume)], true).allowed);
    assert!(
        !eval(alice(), &names_account, &[("p", &assume)], false).allowed,
        "condition fails"
    );
    // Cross-account assume: account B trusted, and B's identity policy must allow.
    let trusts_b = trust(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRole"}]}"#,
    );
    assert!(!eval(bob_in_b(), &trusts_b, &[], false).allowed);
    assert!(eval(bob_in_b(), &trusts_b, &[("p", &assume)], false).allowed);
}

// ---------------------------------------------------------------- managed policies

#[test]
fn managed_policies_grant_what_aws_documents() {
    let check = |name: &str, action: &str| {
        let m = managed::by_arn(&format!("arn:aws:iam::aws:policy/{name}")).expect("shipped");
        let doc = m.parse().expect("valid");
        let label = m.label();
        run(&req(alice(), action, REPO), &[(&label, &doc)], None, A).allowed
    };
    assert!(check(
        "AmazonEC2ContainerRegistryReadOnly",
        "ecr:BatchGetImage"
    ));
    assert!(check(
        "AmazonEC2ContainerRegistryReadOnly",
        "ecr:DescribeImageScanFindings"
    ));
    assert!(!check("AmazonEC2ContainerRegistryReadOnly", "ecr:PutImage"));
    assert!(check("AmazonEC2ContainerRegistryPowerUser", "ecr:PutImage"));
    assert!(check(
        "AmazonEC2ContainerRegistryPowerUser",
        "ecr:CompleteLayerUpload"
    ));
    assert!(!check(
        "AmazonEC2ContainerRegistryPowerUser",
        "ecr:DeleteRepository"
    ));
    assert!(!check(
        "AmazonEC2ContainerRegistryPowerUser",
        "ecr:SetRepositoryPolicy"
    ));
    for action in [
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetAuthorizationToken",
    ] {
        assert!(
            check("AmazonEC2ContainerRegistryPullOnly", action),
            "{action}"
        );
    }
    assert!(!check(
        "AmazonEC2ContainerRegistryPullOnly",
        "ecr:DescribeRepositories"
    ));
    assert!(check(
        "AmazonEC2ContainerRegistryFullAccess",
        "ecr:DeleteRepository"
    ));
    assert!(!check(
        "AmazonEC2ContainerRegistryFullAccess",
        "iam:CreateUser"
    ));
    assert!(check("AdministratorAccess", "iam:CreateUser"));
    assert!(check("IAMReadOnlyAccess", "iam:GetUser"));
    assert!(!check("IAMReadOnlyAccess", "iam:CreateUser"));

    // FullAccess may create ECR's replication service-linked role, and nothing else.
    let full = managed::by_name("AmazonEC2ContainerRegistryFullAccess")
        .expect("shipped")
        .parse()
        .expect("valid");
    let slr = |service: &str| {
        let ctx = req(
            alice(),
            "iam:CreateServiceLinkedRole",
            "arn:aws:iam::111122223333:role/aws-service-role/x",
        )
        .with_key("iam:AWSServiceName", [service]);
        run(&ctx, &[("full", &full)], None, A).allowed
    };
    assert!(slr("replication.ecr.amazonaws.com"));
    assert!(!slr("ec2.amazonaws.com"));
}

#[test]
fn managed_policies_all_parse_as_identity() {
    assert!(managed::all().len() >= 6);
    for m in managed::all() {
        PolicyDocument::parse(m.document, PolicyKind::Identity)
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
    }
}

// ---------------------------------------------------------------- explanations

#[test]
fn display_names_source_statement_action_and_resource() {
    let read_only = managed::by_name("AmazonEC2ContainerRegistryReadOnly").expect("shipped");
    let doc = read_only.parse().expect("valid");
    let label = read_only.label();
    let allowed = run(
        &req(alice(), "ecr:BatchGetImage", REPO),
        &[(&label, &doc)],
        None,
        A,
    );
    assert_eq!(
        allowed.to_string(),
        format!("allowed by Statement[0] of managed policy arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly, which allows ecr:BatchGetImage on {REPO}")
    );

    let denied = run(
        &req(alice(), "ecr:PutImage", REPO),
        &[(&label, &doc)],
        None,
        A,
    );
    assert_eq!(
        denied.to_string(),
        format!("no identity-based policy of arn:aws:iam::111122223333:user/alice allows ecr:PutImage on {REPO}, and no resource-based policy grants it")
    );
    assert_eq!(denied.explain(), denied.to_string());

    let empty_repo = resource_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/bob"},"Action":"ecr:*"}]}"#,
    );
    let nobody = run(
        &req(alice(), "ecr:PutImage", REPO),
        &[],
        Some(&empty_repo),
        A,
    );
    assert_eq!(
        nobody.to_string(),
        format!("arn:aws:iam::111122223333:user/alice has no identity-based policy that allows ecr:PutImage on {REPO} (it has none), and the repository policy of team/app does not grant it")
    );
    match nobody.reason {
        Reason::NotAllowed {
            identity_policies,
            resource_policy,
            resource_grant,
            ..
        } => {
            assert_eq!(identity_policies, 0);
            assert_eq!(
                resource_policy.as_deref(),
                Some("repository policy of team/app")
            );
            assert!(resource_grant.is_none());
        }
        other => panic!("unexpected {other:?}"),
    }

    // Cross-account, neither side allows.
    let neither = run(&req(bob_in_b(), "ecr:PutImage", REPO), &[], None, A);
    let text = neither.to_string();
    assert!(
        text.contains(
            "cross-account access from account 444455556666 to account 111122223333 needs both"
        ),
        "{text}"
    );
    assert!(
        text.contains("ecr:PutImage") && text.contains(REPO),
        "{text}"
    );
}
