//! The STS actions: `GetCallerIdentity` and `AssumeRole`.

use crate::error::ApiError;
use crate::params::{Params, ARN, SESSION_NAME};
use crate::xml::Xml;
use crate::IamApi;
use wharf_auth::ids::{new_id, new_secret, new_session_token};
use wharf_auth::{Caller, Principal};
use wharf_meta::{now_millis, Session};

/// The STS actions Wharf serves.
pub(crate) const ACTIONS: &[&str] = &["GetCallerIdentity", "AssumeRole"];

/// Longest session a role session may get by assuming another role (role chaining).
const CHAINED_MAX_SECONDS: i64 = 3600;

/// Runs STS action `action` (one of [`ACTIONS`]).
pub(crate) async fn run(
    api: &IamApi,
    caller: &Caller,
    p: Params<'_>,
    action: &'static str,
) -> Result<Option<String>, ApiError> {
    match action {
        "GetCallerIdentity" => get_caller_identity(api, caller).await,
        "AssumeRole" => assume_role(api, caller, p).await,
        other => Err(ApiError::service_failure(format!(
            "the STS action {other} is listed but has no implementation"
        ))),
    }
}

/// Who the caller is. Like AWS, needs no permission.
async fn get_caller_identity(api: &IamApi, caller: &Caller) -> Result<Option<String>, ApiError> {
    let account = &caller.account_id;
    let user_id = match &caller.principal {
        Principal::User { name, .. } => match api.store.get_user(account, name).await? {
            Some(u) => u.user_id,
            // A key without a user row (an administrator key made before IAM users
            // existed) answers like an account's root credentials: the account id.
            None => account.clone(),
        },
        Principal::AssumedRole { role, session, .. } => {
            match api.store.get_role(account, role).await? {
                Some(r) => format!("{}:{session}", r.role_id),
                None => format!("{role}:{session}"),
            }
        }
        Principal::Anonymous => String::new(),
    };
    let mut x = Xml::new();
    x.text("UserId", &user_id)
        .text("Account", account)
        .text("Arn", &caller.arn());
    Ok(Some(x.finish()))
}

/// `arn:aws:iam::<account>:role/<path/><name>` → (account, path, name).
fn parse_role_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = resource.strip_prefix("role")?;
    let cut = full.rfind('/')? + 1;
    let (path, name) = full.split_at(cut);
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    (path.starts_with('/') && name_ok).then_some((account, path, name))
}

async fn assume_role(
    api: &IamApi,
    caller: &Caller,
    p: Params<'_>,
) -> Result<Option<String>, ApiError> {
    let role_arn = p.req("RoleArn", ARN)?;
    let session_name = p.req("RoleSessionName", SESSION_NAME)?;
    let duration = p.int("DurationSeconds", 900, 43200)?;
    p.unsupported(&["Policy", "PolicyArns"], "session policies")?;
    p.unsupported(&["Tags", "TransitiveTagKeys"], "session tags")?;
    p.unsupported(&["SerialNumber", "TokenCode"], "MFA")?;
    p.unsupported(
        &["ExternalId", "SourceIdentity", "ProvidedContexts"],
        "AssumeRole context keys",
    )?;
    let (account, path, name) = parse_role_arn(role_arn).ok_or_else(|| {
        ApiError::validation(format!(
            "{role_arn} is not a valid role ARN: a role ARN is arn:aws:iam::<12-digit account>:role/<path/><name>"
        ))
    })?;
    let denied = |why: String| {
        ApiError::access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}: {why}",
            caller.arn()
        ))
    };
    let role = api
        .store
        .get_role(account, name)
        .await?
        .ok_or_else(|| denied(format!("no role named {name} exists in account {account}")))?;
    if role.path != path {
        return Err(denied(format!(
            "the role's path is {}, so its ARN is {}",
            role.path,
            role.arn()
        )));
    }
    api.guard.may_assume(caller, &role).await.map_err(&denied)?;

    let seconds = duration.unwrap_or(3600);
    if seconds > i64::from(role.max_session_duration) {
        return Err(ApiError::validation(format!(
            "The requested DurationSeconds ({seconds}) exceeds the MaxSessionDuration set for role {} ({} seconds).",
            role.arn(),
            role.max_session_duration
        )));
    }
    if matches!(caller.principal, Principal::AssumedRole { .. }) && seconds > CHAINED_MAX_SECONDS {
        return Err(ApiError::validation(format!(
            "The requested DurationSeconds ({seconds}) exceeds the 1 hour session limit for roles assumed by role chaining ({} is a role session).",
            caller.arn()
        )));
    }
    let now = now_millis();
    let session = Session {
        access_key_id: new_id("ASIA"),
        secret_access_key: new_secret(),
        session_token: new_session_token(),
        account_id: role.account_id.clone(),
        role_name: role.role_name.clone(),
        role_path: role.path.clone(),
        session_name: session_name.to_string(),
        expires_at: now + seconds * 1000,
        created_at: now,
    };
    api.store.create_session(&session).await?;
    tracing::info!(
        caller = %caller.arn(),
        role = %role.arn(),
        session = %session.session_name,
        access_key_id = %session.access_key_id,
        "assumed role"
    );
    let mut x = Xml::new();
    x.elem("Credentials", |x| {
        x.text("AccessKeyId", &session.access_key_id)
            .text("SecretAccessKey", &session.secret_access_key)
            .text("SessionToken", &session.session_token)
            .time("Expiration", session.expires_at);
    })
    .elem("AssumedRoleUser", |x| {
        x.text(
            "AssumedRoleId",
            &format!("{}:{}", role.role_id, session.session_name),
        )
        .text(
            "Arn",
            &format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                role.account_id, role.role_name, session.session_name
            ),
        );
    });
    Ok(Some(x.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/deploy"),
            Some(("123456789012", "/", "deploy"))
        );
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/ci/jobs/deploy"),
            Some(("123456789012", "/ci/jobs/", "deploy"))
        );
        for bad in [
            "arn:aws:iam::123456789012:user/deploy",
            "arn:aws:iam::12345:role/deploy",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
        ] {
            assert_eq!(parse_role_arn(bad), None, "{bad}");
        }
    }
}
