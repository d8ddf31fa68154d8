//! What a request is: who asks, for which action on which resource, and the
//! condition context keys that come with it.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrincipalInfo {
    /// No credentials at all. Only a resource-based policy that allows `*` admits
    /// an anonymous caller.
    pub anonymous: bool,
    /// The caller's 12-digit account ("" when anonymous).
    pub account: String,
    /// The caller's ARN: an IAM user (`arn:aws:iam::A:user/[path/]N`), an assumed-role
    /// session (`arn:aws:sts::A:assumed-role/R/S`) or the account root
    /// (`arn:aws:iam::A:root`). Empty when anonymous.
    pub arn: String,
    /// For a role session, the role's ARN (`arn:aws:iam::A:role/[path/]R`).
    pub role_arn: Option<String>,
    /// For an IAM user, its name (`aws:username`).
    pub user_name: Option<String>,
}

impl PrincipalInfo {
    /// An anonymous caller.
    pub fn anonymous() -> PrincipalInfo {
        PrincipalInfo {
            anonymous: true,
            ..PrincipalInfo::default()
        }
    }

    /// The IAM user `name` with IAM path `path` (`/` or `/a/b/`) in `account`.
    pub fn user(account: &str, path: &str, name: &str) -> PrincipalInfo {
        PrincipalInfo {
            anonymous: false,
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:user{}{name}", norm_path(path)),
            role_arn: None,
            user_name: Some(name.to_string()),
        }
    }

    /// A session `session` of role `role` with IAM path `path` in `account`.
    pub fn assumed_role(account: &str, path: &str, role: &str, session: &str) -> PrincipalInfo {
        PrincipalInfo {
            anonymous: false,
            account: account.to_string(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            role_arn: Some(format!(
                "arn:aws:iam::{account}:role{}{role}",
                norm_path(path)
            )),
            user_name: None,
        }
    }

    /// The value of `aws:PrincipalType` for this caller.
    pub fn principal_type(&self) -> &'static str {
        if self.anonymous {
            "Anonymous"
        } else if self.role_arn.is_some() || self.arn.contains(":assumed-role/") {
            "AssumedRole"
        } else if self.arn.contains(":federated-user/") {
            "FederatedUser"
        } else if self.arn.ends_with(":root") {
            "Account"
        } else {
            "User"
        }
    }

    /// The value of `aws:PrincipalArn`: the role's ARN for a role session, otherwise
    /// the caller's ARN (`None` when anonymous).
    pub fn principal_arn(&self) -> Option<&str> {
        if self.anonymous {
            None
        } else {
            Some(self.role_arn.as_deref().unwrap_or(&self.arn))
        }
    }

    /// How the caller is named in explanations.
    pub(crate) fn display_name(&self) -> String {
        if self.anonymous {
            "an anonymous caller".to_string()
        } else if self.arn.is_empty() {
            format!("a principal of account {}", self.account)
        } else {
            self.arn.clone()
        }
    }
}

fn norm_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        format!("/{trimmed}/")
    }
}

/// One request to authorize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Who asks.
    pub principal: PrincipalInfo,
    /// The action, e.g. `ecr:BatchGetImage` (matched case-insensitively).
    pub action: String,
    /// The resource's ARN, e.g. `arn:aws:ecr:us-east-1:111122223333:repository/team/app`.
    pub resource: String,
    /// Condition context keys: lower-cased names (`aws:sourceip`, `aws:currenttime`,
    /// `aws:resourcetag/team`, `aws:tagkeys`, ...) to their values. A key with several
    /// values is multivalued; an absent key, or one with no values, is missing.
    /// Names are matched case-insensitively even if not lower-cased.
    pub keys: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    /// A request with no context keys yet.
    pub fn new(principal: PrincipalInfo, action: &str, resource: &str) -> RequestContext {
        RequestContext {
            principal,
            action: action.to_string(),
            resource: resource.to_string(),
            keys: BTreeMap::new(),
        }
    }

    /// Sets context key `name` (stored lower-cased) to `values`.
    pub fn with_key<I, S>(mut self, name: &str, values: I) -> RequestContext
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys.insert(
            name.to_ascii_lowercase(),
            values.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Fills the global keys AWS derives from the caller and the clock, each only
    /// when absent: `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:username` (IAM
    /// users), `aws:PrincipalType`, `aws:CurrentTime` (now, RFC 3339) and
    /// `aws:EpochTime` (now, seconds).
    pub fn with_standard_keys(self) -> Self {
        self.with_standard_keys_at(OffsetDateTime::now_utc())
    }

    /// [`RequestContext::with_standard_keys`] with `now` as the current time.
    pub fn with_standard_keys_at(mut self, now: OffsetDateTime) -> Self {
        let p = self.principal.clone();
        let mut fill = |name: &str, value: Option<String>| {
            let present = self.keys.keys().any(|k| k.eq_ignore_ascii_case(name));
            if let (false, Some(v)) = (present, value) {
                self.keys.insert(name.to_string(), vec![v]);
            }
        };
        fill("aws:principalarn", p.principal_arn().map(str::to_string));
        fill(
            "aws:principalaccount",
            (!p.anonymous && !p.account.is_empty()).then(|| p.account.clone()),
        );
        fill(
            "aws:username",
            if p.anonymous {
                None
            } else {
                p.user_name.clone()
            },
        );
        fill("aws:principaltype", Some(p.principal_type().to_string()));
        let now = now.replace_nanosecond(0).unwrap_or(now);
        fill("aws:currenttime", now.format(&Rfc3339).ok());
        fill("aws:epochtime", Some(now.unix_timestamp().to_string()));
        self
    }
}

/// Case-insensitive read access to a request's context keys.
pub(crate) struct Keys<'a> {
    map: BTreeMap<String, &'a [String]>,
}

impl<'a> Keys<'a> {
    pub(crate) fn new(keys: &'a BTreeMap<String, Vec<String>>) -> Keys<'a> {
        Keys {
            map: keys
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_slice()))
                .collect(),
        }
    }

    /// The values of `name` (any case), `None` when the key is absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'a [String]> {
        self.map.get(&name.to_ascii_lowercase()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn constructors_build_aws_arns() {
        let u = PrincipalInfo::user("111122223333", "/ci/", "alice");
        assert_eq!(u.arn, "arn:aws:iam::111122223333:user/ci/alice");
        assert_eq!(u.principal_type(), "User");
        let r = PrincipalInfo::assumed_role("111122223333", "/", "builder", "s1");
        assert_eq!(r.arn, "arn:aws:sts::111122223333:assumed-role/builder/s1");
        assert_eq!(
            r.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/builder")
        );
        assert_eq!(r.principal_type(), "AssumedRole");
        assert_eq!(
            r.principal_arn(),
            Some("arn:aws:iam::111122223333:role/builder")
        );
        assert_eq!(PrincipalInfo::anonymous().principal_type(), "Anonymous");
    }

    #[test]
    fn standard_keys_fill_only_absent_keys() {
        let ctx = RequestContext::new(
            PrincipalInfo::user("111122223333", "/", "alice"),
            "ecr:PutImage",
            "arn:aws:ecr:us-east-1:111122223333:repository/app",
        )
        .with_key("aws:PrincipalType", ["Custom"])
        .with_standard_keys_at(datetime!(2024-05-01 12:30:00.5 UTC));
        let get = |k: &str| ctx.keys.get(k).cloned().unwrap_or_default();
        assert_eq!(
            get("aws:principalarn"),
            ["arn:aws:iam::111122223333:user/alice"]
        );
        assert_eq!(get("aws:principalaccount"), ["111122223333"]);
        assert_eq!(get("aws:username"), ["alice"]);
        assert_eq!(get("aws:principaltype"), ["Custom"]);
        assert_eq!(get("aws:currenttime"), ["2024-05-01T12:30:00Z"]);
        assert_eq!(get("aws:epochtime"), ["1714566600"]);

        let anon = RequestContext::new(PrincipalInfo::anonymous(), "ecr:BatchGetImage", "arn:x")
            .with_standard_keys();
        assert!(!anon.keys.contains_key("aws:principalarn"));
        assert!(!anon.keys.contains_key("aws:username"));
        assert_eq!(
            anon.keys
                .get("aws:principaltype")
                .cloned()
                .unwrap_or_default(),
            ["Anonymous"]
        );
        assert!(anon.keys.contains_key("aws:currenttime"));
    }

    #[test]
    fn keys_are_case_insensitive() {
        let mut m = BTreeMap::new();
        m.insert("aws:SourceIp".to_string(), vec!["10.0.0.1".to_string()]);
        let k = Keys::new(&m);
        assert_eq!(k.get("AWS:SOURCEIP").map(|v| v.len()), Some(1));
        assert!(k.get("aws:sourcevpc").is_none());
    }
}
