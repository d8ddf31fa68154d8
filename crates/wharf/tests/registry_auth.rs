//! `/v2/` behind IAM: Basic credentials (registry tokens from the real AWS CLI's
//! `get-login-password`, or an access key and its secret), challenges, refusals that
//! say why, and accounts as separate registries.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

fn aws(srv: &common::Server, key: &str, secret: &str, args: &[&str]) -> Value {
    common::aws_cli(srv, key, secret, args).unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
}

use common::{basic, curl, push};

#[test]
fn anonymous_requests_are_challenged() {
    let srv = common::Server::start();
    let (status, text) = curl(&[&srv.at("/v2/")]);
    assert_eq!(status, 401, "{text}");
    let lower = text.to_lowercase();
    assert!(lower.contains("www-authenticate: basic realm="), "{text}");
    assert!(
        text.contains("UNAUTHORIZED") && text.contains("get-login-password"),
        "{text}"
    );
    let (status, text) = curl(&[&srv.at("/v2/app/manifests/latest")]);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("ecr:BatchGetImage") && text.contains("repository/app"),
        "{text}"
    );
}

#[test]
fn access_keys_and_registry_tokens() {
    let srv = common::Server::start();
    // An access key id and its secret work as Basic credentials.
    let admin = basic(common::ADMIN_KEY, common::ADMIN_SECRET);
    let (status, text) = curl(&["-H", &admin, &srv.at("/v2/")]);
    assert_eq!(status, 200, "{text}");
    let (status, text) = curl(&["-H", &basic(common::ADMIN_KEY, "wrong"), &srv.at("/v2/")]);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("not the secret of access key"), "{text}");
    let (status, text) = curl(&["-H", &basic("AKIANOSUCHKEY0000000", "x"), &srv.at("/v2/")]);
    assert_eq!(status, 401);
    assert!(
        text.contains("AKIANOSUCHKEY0000000") && text.contains("does not exist"),
        "{text}"
    );

    // The ECR way: a 12-hour token for user AWS.
    let password = aws(
        &srv,
        common::ADMIN_KEY,
        common::ADMIN_SECRET,
        &["ecr", "get-login-password"],
    );
    let password = password.as_str().expect("a password").to_string();
    assert!(!password.contains(':') && password.len() > 40, "{password}");
    let token = basic("AWS", &password);
    let (status, text) = push(&srv, &token, None, "tokens/app", "v1");
    assert_eq!(status, 201, "{text}");
    let (status, text) = curl(&["-H", &token, &srv.at("/v2/tokens/app/manifests/v1")]);
    assert_eq!(status, 200, "{text}");

    let data = aws(
        &srv,
        common::ADMIN_KEY,
        common::ADMIN_SECRET,
        &["ecr", "get-authorization-token"],
    );
    let entry = &data["authorizationData"][0];
    let decoded = String::from_utf8(
        STANDARD
            .decode(entry["authorizationToken"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(decoded.starts_with("AWS:"), "{decoded}");
    assert_eq!(entry["proxyEndpoint"], Value::String(srv.url.clone()));
    // The CLI prints the epoch seconds ECR sends: twelve hours from now.
    let expires = entry["expiresAt"].as_f64().expect("epoch seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expires - now - 12.0 * 3600.0).abs() < 120.0,
        "{expires} vs {now}"
    );

    // A tampered token is refused, saying so.
    let mut forged = password.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, text) = curl(&["-H", &basic("AWS", &forged), &srv.at("/v2/")]);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("not a registry token"), "{text}");
}

#[test]
fn accounts_are_separate_registries() {
    let srv = common::Server::start();
    let admin = basic(common::ADMIN_KEY, common::ADMIN_SECRET);
    let (status, text) = push(&srv, &admin, None, "shared/name", "v1");
    assert_eq!(status, 201, "{text}");

    // A second account, created with the CLI, gets its own administrator.
    let (b_key, b_secret) = common::create_account(&srv, "111122223333");
    let b = basic(&b_key, &b_secret);

    // B's /v2/ on a plain host is B's own registry: the same name is another repository.
    let (status, text) = curl(&["-H", &b, &srv.at("/v2/shared/name/manifests/v1")]);
    assert_eq!(status, 404, "{text}");
    let (status, text) = push(&srv, &b, None, "shared/name", "v2");
    assert_eq!(status, 201, "{text}");
    let (_, text) = curl(&["-H", &b, &srv.at("/v2/shared/name/tags/list")]);
    assert!(
        text.contains("\"v2\"") && !text.contains("\"v1\""),
        "{text}"
    );
    let (_, text) = curl(&["-H", &admin, &srv.at("/v2/shared/name/tags/list")]);
    assert!(
        text.contains("\"v1\"") && !text.contains("\"v2\""),
        "{text}"
    );
    let (_, text) = curl(&["-H", &b, &srv.at("/v2/_catalog")]);
    assert!(
        text.contains("shared/name") && !text.contains("000000000000"),
        "{text}"
    );

    // ECR's host names address an account's registry explicitly: B is refused in the
    // default account's registry, and told why.
    let a_host = format!("{}.dkr.ecr.us-east-1.localhost", common::ACCOUNT);
    let (status, text) = curl(&[
        "-H",
        &b,
        "-H",
        &format!("Host: {a_host}"),
        &srv.at("/v2/shared/name/manifests/v1"),
    ]);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("DENIED")
            && text.contains("arn:aws:iam::111122223333:user/admin")
            && text.contains("ecr:BatchGetImage")
            && text.contains("arn:aws:ecr:us-east-1:000000000000:repository/shared/name"),
        "{text}"
    );
    // The default account's administrator reads it through that host name.
    let (status, text) = curl(&[
        "-H",
        &admin,
        "-H",
        &format!("Host: {a_host}"),
        &srv.at("/v2/shared/name/manifests/v1"),
    ]);
    assert_eq!(status, 200, "{text}");

    // The ECR API lists each account's own repositories.
    let a_repos = aws(
        &srv,
        common::ADMIN_KEY,
        common::ADMIN_SECRET,
        &["ecr", "describe-repositories"],
    );
    let b_repos = aws(&srv, &b_key, &b_secret, &["ecr", "describe-repositories"]);
    let arn = |v: &Value| {
        v["repositories"][0]["repositoryArn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        arn(&a_repos),
        "arn:aws:ecr:us-east-1:000000000000:repository/shared/name"
    );
    assert_eq!(
        arn(&b_repos),
        "arn:aws:ecr:us-east-1:111122223333:repository/shared/name"
    );
}

#[test]
fn permissive_mode_admits_anyone_as_the_administrator() {
    let srv = common::Server::start_with(&["--auth", "permissive"]);
    let (status, text) = curl(&[&srv.at("/v2/")]);
    assert_eq!(status, 200, "{text}");
    let (status, text) = push(&srv, "X-Nothing: 1", None, "dev/app", "v1");
    assert_eq!(status, 201, "{text}");
    let any = aws(
        &srv,
        "AKIAANYTHING00000000",
        "whatever",
        &["ecr", "describe-repositories"],
    );
    assert_eq!(any["repositories"][0]["repositoryName"], "dev/app");
}

#[test]
fn registry_domain_names_registries_the_ecr_way() {
    let srv = common::Server::start_with(&["--registry-domain", "localhost"]);
    let port = srv.host.rsplit(':').next().unwrap().to_string();
    let host = format!("000000000000.dkr.ecr.us-east-1.localhost:{port}");
    let made = common::aws_admin(
        &srv,
        &["ecr", "create-repository", "--repository-name", "dom/app"],
    );
    assert_eq!(
        made["repository"]["repositoryUri"],
        format!("{host}/dom/app").as_str()
    );
    let auth = common::aws_admin(&srv, &["ecr", "get-authorization-token"]);
    assert_eq!(
        auth["authorizationData"][0]["proxyEndpoint"],
        format!("http://{host}").as_str()
    );
    // The URI works as is, resolved to the server.
    let admin = basic(common::ADMIN_KEY, common::ADMIN_SECRET);
    let (status, text) = push(&srv, &admin, None, "dom/app", "v1");
    assert_eq!(status, 201, "{text}");
    let (status, text) = curl(&[
        "-H",
        &admin,
        "--resolve",
        &format!("000000000000.dkr.ecr.us-east-1.localhost:{port}:127.0.0.1"),
        &format!("http://{host}/v2/dom/app/manifests/v1"),
    ]);
    assert_eq!(status, 200, "{text}");
}

#[test]
fn a_lost_administrator_key_is_replaced_from_the_data_directory() {
    let srv = common::Server::start();
    let out = srv
        .command()
        .args(["account", "reset-admin-key"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(&format!("deleted access key {}", common::ADMIN_KEY)),
        "{printed}"
    );
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("export {name}=")))
            .unwrap()
            .to_string()
    };
    let (key, secret) = (field("AWS_ACCESS_KEY_ID"), field("AWS_SECRET_ACCESS_KEY"));
    // The running server takes the new key and refuses the old one at once.
    let (status, text) = curl(&["-H", &basic(&key, &secret), &srv.at("/v2/")]);
    assert_eq!(status, 200, "{text}");
    let (status, _) = curl(&[
        "-H",
        &basic(common::ADMIN_KEY, common::ADMIN_SECRET),
        &srv.at("/v2/"),
    ]);
    assert_eq!(status, 401);
}
