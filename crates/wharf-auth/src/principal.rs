//! Who is calling: the principal a request was authenticated as.

use std::net::IpAddr;

/// The kind of principal behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An IAM user, signing with one of its long-term access keys.
    User {
        /// User name.
        name: String,
        /// IAM path (`/` unless set), part of the user's ARN.
        path: String,
    },
    /// A session of a role, signing with temporary credentials from `sts:AssumeRole`.
    AssumedRole {
        /// Role name.
        role: String,
        /// IAM path of the role (`/` unless set).
        path: String,
        /// `RoleSessionName` given to AssumeRole.
        session: String,
    },
    /// No credentials at all (allowed only where a resource policy grants `*`).
    Anonymous,
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's 12-digit account (empty for [`Principal::Anonymous`]).
    pub account_id: String,
    /// Who it is.
    pub principal: Principal,
    /// The access key that signed the request (or that a registry token was issued
    /// to), if any.
    pub access_key_id: Option<String>,
    /// The client's address (`aws:SourceIp`), if known.
    pub source_ip: Option<IpAddr>,
}

impl Caller {
    /// The caller's ARN as AWS writes it: `arn:aws:iam::<account>:user/<path><name>`,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`, or `*` when anonymous.
    pub fn arn(&self) -> String {
        match &self.principal {
            Principal::User { name, path } => {
                format!(
                    "arn:aws:iam::{}:user{}{name}",
                    self.account_id,
                    norm_path(path)
                )
            }
            Principal::AssumedRole { role, session, .. } => format!(
                "arn:aws:sts::{}:assumed-role/{role}/{session}",
                self.account_id
            ),
            Principal::Anonymous => "*".to_string(),
        }
    }

    /// For an assumed role, the role's own ARN (`arn:aws:iam::<account>:role/<path><name>`).
    pub fn role_arn(&self) -> Option<String> {
        match &self.principal {
            Principal::AssumedRole { role, path, .. } => Some(format!(
                "arn:aws:iam::{}:role{}{role}",
                self.account_id,
                norm_path(path)
            )),
            _ => None,
        }
    }

    /// The IAM user name (`aws:username`), for users only.
    pub fn user_name(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { name, .. } => Some(name),
            _ => None,
        }
    }

    /// True when no credentials were given.
    pub fn is_anonymous(&self) -> bool {
        self.principal == Principal::Anonymous
    }
}

/// `/` for an empty path; otherwise the path with leading and trailing `/`.
fn norm_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        format!("/{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let user = Caller {
            account_id: "111122223333".into(),
            principal: Principal::User {
                name: "alice".into(),
                path: "/ci/".into(),
            },
            access_key_id: None,
            source_ip: None,
        };
        assert_eq!(user.arn(), "arn:aws:iam::111122223333:user/ci/alice");
        assert_eq!(user.user_name(), Some("alice"));
        let role = Caller {
            principal: Principal::AssumedRole {
                role: "deploy".into(),
                path: "/".into(),
                session: "build-42".into(),
            },
            ..user
        };
        assert_eq!(
            role.arn(),
            "arn:aws:sts::111122223333:assumed-role/deploy/build-42"
        );
        assert_eq!(
            role.role_arn().as_deref(),
            Some("arn:aws:iam::111122223333:role/deploy")
        );
    }
}
