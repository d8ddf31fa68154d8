//! The IAM and STS APIs of Wharf, in the AWS query protocol the AWS CLI and SDKs speak
//! (`Action=CreateUser&Version=2010-05-08&…` form bodies, XML responses).
//!
//! [`IamApi::handle`] answers one request that the server has already authenticated
//! (SigV4, [`Caller`]); the credential scope's service (`iam` or `sts`) picks the API.
//! Every IAM action is authorized first through [`Guard::check`] as `iam:<Action>` on
//! the ARN of the entity it touches (`*` for account-wide lists); `sts:AssumeRole`
//! goes through [`Guard::may_assume`]. Callers manage the IAM entities of their own
//! account only. Users, roles and policies live in an [`IamStore`]; access keys in the
//! metadata store's `access_keys` (where SigV4 authentication reads them).
//!
//! Member names, shapes and constraints follow botocore's `iam` (2010-05-08) and `sts`
//! (2011-06-15) service models; the tests parse every response with botocore's own
//! query parser.

use async_trait::async_trait;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use wharf_auth::{Caller, Principal};
use wharf_meta::{IamStore, MetaError, MetadataStore, PrincipalRef, Role, User};

mod error;
mod iam;
mod params;
mod sts;
mod xml;

pub use error::ApiError;

/// XML namespace of IAM responses.
pub const IAM_NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// XML namespace of STS responses.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// IAM's API version (the `Version` parameter).
pub const IAM_VERSION: &str = "2010-05-08";
/// STS's API version.
pub const STS_VERSION: &str = "2011-06-15";

/// The AWS managed policies (`arn:aws:iam::aws:policy/<name>`) Wharf knows and lets
/// users and roles attach. Their documents live in `wharf-policy`.
pub const AWS_MANAGED_POLICIES: &[&str] = &[
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEC2ContainerRegistryPowerUser",
    "AmazonEC2ContainerRegistryFullAccess",
    "AmazonEC2ContainerRegistryPullOnly",
    "AdministratorAccess",
    "IAMReadOnlyAccess",
];

/// Decides what callers may do.
#[async_trait]
pub trait Guard: Send + Sync {
    /// Authorization of `caller` for `action` (e.g. "iam:CreateUser") on `resource`
    /// (ARN). `Err(message)` = denial, the message says why.
    async fn check(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), String>;
    /// May `caller` assume `role` (its trust policy + the caller's own identity
    /// policies)? `Err(message)` = why not.
    async fn may_assume(&self, caller: &Caller, role: &Role) -> Result<(), String>;
}

/// Settings of the IAM/STS APIs.
#[derive(Debug, Clone)]
pub struct IamConfig {
    /// Region this Wharf serves.
    pub region: String,
}

/// Looks up the document of an AWS managed policy by ARN (for `GetPolicyVersion`).
pub type ManagedDocuments = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Which kind of policy a document is, for [`validate_document`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// An identity-based policy: inline policy of a user or role, or managed policy.
    Identity,
    /// A role's trust policy (`AssumeRolePolicyDocument`).
    Trust,
}

/// The one place policy documents are checked before they are stored; a failure is
/// answered as `MalformedPolicyDocument` with the message. The grammar is the policy
/// engine's ([`wharf_policy::PolicyDocument::parse`]): what is stored is what will be
/// evaluated.
pub fn validate_document(kind: DocumentKind, text: &str) -> Result<(), String> {
    let kind = match kind {
        DocumentKind::Identity => wharf_policy::PolicyKind::Identity,
        DocumentKind::Trust => wharf_policy::PolicyKind::Trust,
    };
    wharf_policy::PolicyDocument::parse(text, kind)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The IAM and STS APIs over an [`IamStore`] and the access keys of a
/// [`MetadataStore`].
#[derive(Clone)]
pub struct IamApi {
    store: Arc<dyn IamStore>,
    keys: Arc<dyn MetadataStore>,
    guard: Arc<dyn Guard>,
    config: IamConfig,
    managed_documents: Option<ManagedDocuments>,
}

impl std::fmt::Debug for IamApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamApi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IamApi {
    /// The APIs over `store` (users, roles, policies, sessions) and `keys` (access
    /// keys), authorizing through `guard`.
    pub fn new(
        store: Arc<dyn IamStore>,
        keys: Arc<dyn MetadataStore>,
        guard: Arc<dyn Guard>,
        config: IamConfig,
    ) -> IamApi {
        IamApi {
            store,
            keys,
            guard,
            config,
            managed_documents: None,
        }
    }

    /// Serves `GetPolicyVersion` for AWS managed policies with documents from
    /// `documents` (e.g. `wharf-policy`'s copies); without it they are not found.
    pub fn with_managed_documents(mut self, documents: ManagedDocuments) -> IamApi {
        self.managed_documents = Some(documents);
        self
    }

    /// The settings.
    pub fn config(&self) -> &IamConfig {
        &self.config
    }

    /// One already-authenticated request; `service` is "iam" or "sts" (from the SigV4
    /// credential scope); `params` is the decoded form body (or query string).
    pub async fn handle(
        &self,
        caller: &Caller,
        service: &str,
        params: &[(String, String)],
    ) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let p = params::Params::new(params);
        let (namespace, outcome) = match service {
            "iam" => (IAM_NAMESPACE, self.dispatch(caller, p, true).await),
            "sts" => (STS_NAMESPACE, self.dispatch(caller, p, false).await),
            other => (
                IAM_NAMESPACE,
                Err(ApiError::new(
                    400,
                    "InvalidAction",
                    format!(
                        "The service {other:?} of the request's credential scope is not served here; IAM requests are signed for \"iam\", STS requests for \"sts\""
                    ),
                )),
            ),
        };
        match outcome {
            Ok((action, result)) => success(namespace, action, result.as_deref(), &request_id),
            Err(e) => failure(namespace, &e, &request_id, caller),
        }
    }

    /// Finds the action and runs it: `(action, inner XML of <ActionResult>)`.
    async fn dispatch(
        &self,
        caller: &Caller,
        p: params::Params<'_>,
        is_iam: bool,
    ) -> Result<(&'static str, Option<String>), ApiError> {
        let (version, actions): (&str, &[&'static str]) = if is_iam {
            (IAM_VERSION, iam::ACTIONS)
        } else {
            (STS_VERSION, sts::ACTIONS)
        };
        let Some(given) = p.get("Action") else {
            return Err(ApiError::new(
                400,
                "MissingAction",
                "The request must contain the parameter Action",
            ));
        };
        let Some(action) = actions.iter().copied().find(|a| *a == given) else {
            return Err(ApiError::new(
                400,
                "InvalidAction",
                format!(
                    "Could not find operation {given} for version {version} (Wharf serves: {})",
                    actions.join(", ")
                ),
            ));
        };
        if let Some(v) = p.get("Version") {
            if v != version {
                return Err(ApiError::new(
                    400,
                    "InvalidAction",
                    format!("Could not find operation {action} for version {v}; Wharf serves version {version}"),
                ));
            }
        }
        if caller.principal == Principal::Anonymous {
            return Err(ApiError::new(
                403,
                "MissingAuthenticationToken",
                format!(
                    "{action} requires a request signed with AWS credentials (Signature Version 4)"
                ),
            ));
        }
        let result = if is_iam {
            iam::run(self, caller, p, action).await?
        } else {
            sts::run(self, caller, p, action).await?
        };
        Ok((action, result))
    }

    /// `guard.check`, a denial as `AccessDenied`.
    async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
    ) -> Result<(), ApiError> {
        self.guard
            .check(caller, action, resource)
            .await
            .map_err(ApiError::access_denied)
    }
}

/// Makes sure `user_name` of `account_id` exists as an IAM user with
/// `AdministratorAccess` attached: for the administrator whose access key the server
/// bootstraps (`wharf_ecr::bootstrap`). Idempotent; returns the user.
pub async fn bootstrap_admin(
    store: &dyn IamStore,
    account_id: &str,
    user_name: &str,
) -> Result<User, MetaError> {
    let user = match store.get_user(account_id, user_name).await? {
        Some(u) => u,
        None => {
            let new = User {
                account_id: account_id.to_string(),
                user_name: user_name.to_string(),
                user_id: wharf_auth::ids::new_id("AIDA"),
                path: "/".to_string(),
                created_at: wharf_meta::now_millis(),
                tags: Vec::new(),
            };
            match store.create_user(&new).await {
                Ok(u) => u,
                // Another process made it first.
                Err(e) if e.iam_kind() == Some(wharf_meta::IamErrorKind::EntityAlreadyExists) => {
                    store.get_user(account_id, user_name).await?.ok_or(e)?
                }
                Err(e) => return Err(e),
            }
        }
    };
    store
        .attach_principal_policy(
            account_id,
            &PrincipalRef::User(user.user_name.clone()),
            &format!(
                "{}AdministratorAccess",
                wharf_meta::iam::AWS_MANAGED_POLICY_PREFIX
            ),
        )
        .await?;
    Ok(user)
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn success(namespace: &str, action: &str, result: Option<&str>, request_id: &str) -> Response {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{namespace}\">"
    );
    if let Some(r) = result {
        body.push_str(&format!("<{action}Result>{r}</{action}Result>"));
    }
    body.push_str(&format!(
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    ));
    xml_response(StatusCode::OK, body, request_id)
}

/// An error in the query protocol's XML for `service` (`iam` or `sts`), for refusals
/// before a request reaches [`IamApi::handle`] (authentication, unreadable bodies).
pub fn error_response(service: &str, error: &ApiError) -> Response {
    let namespace = if service == "sts" {
        STS_NAMESPACE
    } else {
        IAM_NAMESPACE
    };
    let nobody = Caller {
        account_id: String::new(),
        principal: wharf_auth::Principal::Anonymous,
        access_key_id: None,
        source_ip: None,
    };
    failure(namespace, error, &uuid::Uuid::new_v4().to_string(), &nobody)
}

fn failure(namespace: &str, e: &ApiError, request_id: &str, caller: &Caller) -> Response {
    if e.status >= 500 {
        tracing::error!(code = e.code, caller = %caller.arn(), "{}", e.message);
    } else {
        tracing::debug!(code = e.code, caller = %caller.arn(), "{}", e.message);
    }
    let mut x = xml::Xml::new();
    x.elem("Error", |x| {
        x.text("Type", e.fault())
            .text("Code", e.code)
            .text("Message", &e.message);
    })
    .text("RequestId", request_id);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{namespace}\">{}</ErrorResponse>",
        x.finish()
    );
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(status, body, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let ok = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
        assert_eq!(validate_document(DocumentKind::Identity, ok), Ok(()));
        let single = r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#;
        assert_eq!(validate_document(DocumentKind::Identity, single), Ok(()));
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(validate_document(DocumentKind::Trust, trust), Ok(()));
        for (kind, bad, says) in [
            (DocumentKind::Identity, "not json", "not valid JSON"),
            (DocumentKind::Identity, "[]", "JSON object"),
            (
                DocumentKind::Identity,
                r#"{"Version":"2012-10-17"}"#,
                "must have a Statement",
            ),
            (DocumentKind::Identity, r#"{"Statement":[]}"#, "empty"),
            (
                DocumentKind::Identity,
                r#"{"Version":"2020-01-01","Statement":[]}"#,
                "Version",
            ),
            (
                DocumentKind::Identity,
                r#"{"Statement":[{"Effect":"Maybe"}]}"#,
                "Effect",
            ),
            (DocumentKind::Identity, trust, "Principal is not allowed"),
            (DocumentKind::Trust, ok, "Principal"),
            (
                DocumentKind::Trust,
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}]}"#,
                "Resource",
            ),
        ] {
            let e = validate_document(kind, bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
