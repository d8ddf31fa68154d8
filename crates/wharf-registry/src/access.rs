//! Who may do what on `/v2/`: every request is admitted by a [`Gate`] as the ECR
//! actions it performs (DESIGN.md §7), before any handler runs.
//!
//! The registry knows nothing of credentials or policies; the gate authenticates the
//! request (401 with a `WWW-Authenticate` challenge when it cannot), authorizes each
//! action on the repository (403 `DENIED` saying why), and names the account whose
//! repositories the request addresses.

use crate::error::ApiError;
use crate::route::Route;
use async_trait::async_trait;
use axum::http::{HeaderMap, Method};
use std::net::IpAddr;

/// One authorization question: may this request do `actions` on `repository`?
#[derive(Debug)]
pub struct AccessRequest<'a> {
    /// The request's headers (`Authorization`, `Host`).
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// The request's query string.
    pub query: Option<&'a str>,
    /// The repository addressed (`None` for `/v2/` and `/v2/_catalog`).
    pub repository: Option<&'a str>,
    /// ECR actions the request performs, all of which must be allowed (e.g.
    /// `ecr:BatchGetImage`). Empty: authentication only.
    pub actions: &'a [&'static str],
}

/// What an admitted request may address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The 12-digit account whose registry the request addresses.
    pub account: String,
    /// Who is calling, for logs (an ARN, or `anonymous`).
    pub principal: String,
}

/// Authenticates and authorizes `/v2/` requests.
#[async_trait]
pub trait Gate: Send + Sync + 'static {
    /// Admits the request, or refuses it with the OCI error to answer (`UNAUTHORIZED`
    /// with a challenge, `DENIED`, ...).
    async fn admit(&self, req: &AccessRequest<'_>) -> Result<Grant, ApiError>;
}

/// Admits everything as one account, without credentials. For embedding and tests
/// of the registry alone; `wharf serve` always uses the IAM gate.
#[derive(Debug, Clone)]
pub struct OpenGate {
    /// The account every request addresses.
    pub account: String,
}

#[async_trait]
impl Gate for OpenGate {
    async fn admit(&self, _req: &AccessRequest<'_>) -> Result<Grant, ApiError> {
        Ok(Grant {
            account: self.account.clone(),
            principal: "anonymous".to_string(),
        })
    }
}

impl Route {
    /// The repository the route addresses.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The ECR actions a request with `method` on this route performs, as ECR maps
    /// registry calls to IAM actions.
    pub fn actions(&self, method: &Method) -> &'static [&'static str] {
        let get = method == Method::GET || method == Method::HEAD;
        match self {
            Route::Base => &[],
            Route::Catalog => &["ecr:DescribeRepositories"],
            Route::Tags { .. } => &["ecr:ListImages"],
            Route::Referrers { .. } => &["ecr:BatchGetImage"],
            Route::Manifest { .. } if get => &["ecr:BatchGetImage"],
            Route::Manifest { .. } if method == Method::PUT => &["ecr:PutImage"],
            Route::Manifest { .. } => &["ecr:BatchDeleteImage"],
            Route::Blob { .. } if method == Method::GET => &["ecr:GetDownloadUrlForLayer"],
            Route::Blob { .. } if method == Method::HEAD => &["ecr:BatchCheckLayerAvailability"],
            Route::Blob { .. } => &["ecr:BatchDeleteImage"],
            Route::UploadStart { .. } => &["ecr:InitiateLayerUpload"],
            Route::Upload { .. } if method == Method::PUT => &["ecr:CompleteLayerUpload"],
            Route::Upload { .. } => &["ecr:UploadLayerPart"],
        }
    }
}
