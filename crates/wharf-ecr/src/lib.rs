//! The ECR control-plane API: AWS JSON 1.1 on `POST /` with
//! `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`.
//!
//! Every call is authenticated once with SigV4 ([`wharf_auth::sigv4`]) against the
//! access keys in the metadata store; errors are answered as botocore parses them
//! (`__type`, `message`, HTTP status) with messages that say what was wrong.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use wharf_access::{Authority, Refusal};
use wharf_meta::{MetaError, MetadataStore};

pub mod bootstrap;
mod images;
mod layers;
mod ops;
mod policies;

/// `X-Amz-Target` prefix of the ECR API.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
/// SigV4 signing name of the ECR API.
pub const SIGNING_NAME: &str = "ecr";
/// Largest request body accepted (PutImage carries a manifest of up to 4 MiB as JSON).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Settings of the ECR API.
#[derive(Debug, Clone)]
pub struct EcrConfig {
    /// Region name this Wharf serves (SigV4 scope, ARNs).
    pub region: String,
    /// Host (and port) of the registry endpoint, for `repositoryUri`.
    pub registry_host: String,
    /// URL of the registry endpoint (`http(s)://host:port`), ECR's `proxyEndpoint`.
    pub proxy_endpoint: String,
    /// With a domain (e.g. `localhost`, or one with wildcard DNS), registries are
    /// addressed ECR's way: `<account>.dkr.ecr.<region>.<domain>[:port]`.
    pub registry_domain: Option<String>,
    /// Encryption at rest: the master key ids of the registry's key file (the first is
    /// the default key), which `KMS` repositories may name as `kmsKey`; `None` when
    /// blobs are not encrypted at rest.
    pub encryption_keys: Option<Vec<String>>,
}

pub use wharf_auth::Caller;

/// An error answered in AWS JSON 1.1 form.
#[derive(Debug, Clone)]
pub struct EcrError {
    /// HTTP status.
    pub status: u16,
    /// `__type` (e.g. `RepositoryNotFoundException`).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl EcrError {
    /// A new error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> EcrError {
        EcrError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `InvalidParameterException`.
    pub fn invalid(message: impl Into<String>) -> EcrError {
        EcrError::new(400, "InvalidParameterException", message)
    }

    /// 500 `ServerException`.
    pub fn server(message: impl Into<String>) -> EcrError {
        EcrError::new(500, "ServerException", message)
    }
}

impl From<MetaError> for EcrError {
    fn from(e: MetaError) -> EcrError {
        let msg = e.to_string();
        match e {
            MetaError::RepositoryNotFound(_) => {
                EcrError::new(400, "RepositoryNotFoundException", msg)
            }
            MetaError::RepositoryExists(_) => {
                EcrError::new(400, "RepositoryAlreadyExistsException", msg)
            }
            MetaError::RepositoryNotEmpty { .. } => {
                EcrError::new(400, "RepositoryNotEmptyException", msg)
            }
            MetaError::TagImmutable { .. } => {
                EcrError::new(400, "ImageTagAlreadyExistsException", msg)
            }
            MetaError::MissingBlob { .. } => EcrError::new(400, "LayersNotFoundException", msg),
            MetaError::MissingManifest { .. } => {
                EcrError::new(400, "ReferencedImagesNotFoundException", msg)
            }
            MetaError::InvalidSetting(_) => EcrError::invalid(msg),
            MetaError::Iam {
                kind: wharf_meta::IamErrorKind::LimitExceeded,
                ..
            } => EcrError::new(400, "LimitExceededException", msg),
            MetaError::Iam { .. } => EcrError::invalid(msg),
            MetaError::AccessKeyExists(_) | MetaError::Backend(_) => EcrError::server(msg),
        }
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl IntoResponse for EcrError {
    fn into_response(self) -> Response {
        if self.status >= 500 {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let body = json!({ "__type": self.code, "message": self.message }).to_string();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        if let Ok(v) = HeaderValue::from_str(self.code) {
            h.insert("x-amzn-errortype", v);
        }
        if let Ok(v) = HeaderValue::from_str(&request_id()) {
            h.insert("x-amzn-requestid", v);
        }
        resp
    }
}

/// The ECR API over a metadata store.
#[derive(Clone)]
pub struct EcrApi {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn wharf_blob::BlobStore>,
    authority: Arc<Authority>,
    config: EcrConfig,
}

impl EcrConfig {
    /// Host (and port) of `account`'s registry: ECR's host name under the registry
    /// domain when one is set, else the server's own address.
    pub fn registry_host_of(&self, account: &str) -> String {
        match &self.registry_domain {
            Some(domain) => {
                let port = self
                    .registry_host
                    .rsplit_once(':')
                    .map(|(_, p)| format!(":{p}"))
                    .unwrap_or_default();
                format!("{account}.dkr.ecr.{}.{domain}{port}", self.region)
            }
            None => self.registry_host.clone(),
        }
    }

    /// ECR's `proxyEndpoint` of `account`'s registry.
    pub fn proxy_endpoint_of(&self, account: &str) -> String {
        let scheme = self
            .proxy_endpoint
            .split_once("://")
            .map(|(s, _)| s)
            .unwrap_or("http");
        format!("{scheme}://{}", self.registry_host_of(account))
    }
}

impl From<Refusal> for EcrError {
    fn from(r: Refusal) -> EcrError {
        EcrError::new(r.status, r.code, r.message)
    }
}

impl EcrApi {
    /// An API over the whole metadata store `meta` (all accounts).
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn wharf_blob::BlobStore>,
        authority: Arc<Authority>,
        config: EcrConfig,
    ) -> EcrApi {
        EcrApi {
            inner: Arc::new(Inner {
                meta,
                blobs,
                authority,
                config,
            }),
        }
    }

    /// Account `account`'s view of the metadata store.
    pub(crate) fn registry(&self, account: &str) -> wharf_meta::Namespaced {
        wharf_meta::Namespaced::new(self.inner.meta.clone(), account)
    }

    pub(crate) fn blobs(&self) -> &dyn wharf_blob::BlobStore {
        self.inner.blobs.as_ref()
    }

    pub(crate) fn authority(&self) -> &Authority {
        &self.inner.authority
    }

    pub(crate) fn config(&self) -> &EcrConfig {
        &self.inner.config
    }

    /// Answers one `POST /` request carrying `X-Amz-Target`.
    pub async fn handle(&self, req: Request) -> Response {
        handle(State(self.clone()), req).await
    }
}

async fn handle(State(api): State<EcrApi>, req: Request) -> Response {
    match dispatch(&api, req).await {
        Ok(v) => {
            let mut resp = (StatusCode::OK, Body::from(v.to_string())).into_response();
            let h = resp.headers_mut();
            h.insert(
                "content-type",
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            if let Ok(v) = HeaderValue::from_str(&request_id()) {
                h.insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn dispatch(api: &EcrApi, req: Request) -> Result<Value, EcrError> {
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        EcrError::new(
            413,
            "ValidationException",
            format!("request body could not be read or exceeds {MAX_BODY} bytes: {e}"),
        )
    })?;
    let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
        return Err(EcrError::new(
            400,
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not an ECR operation (expected {TARGET_PREFIX}<Operation>)"),
        ));
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let caller = api
        .authority()
        .authenticate_sigv4(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
            &body,
            SIGNING_NAME,
            peer,
        )
        .await?;
    let Some(op) = wharf_ecr_model::Operation::from_name(operation) else {
        return Err(EcrError::new(
            400,
            "UnknownOperationException",
            format!("{operation} is not an operation of the ECR API"),
        ));
    };
    // Shapes, required members, lengths, patterns and enums, as the ECR model says.
    let typed = op.parse_input(&body).map_err(|e| {
        EcrError::new(
            400,
            "SerializationException",
            format!("{operation} request body does not match the ECR model: {e}"),
        )
    })?;
    typed
        .validate()
        .map_err(|e| EcrError::new(400, "ValidationException", e.to_string()))?;
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            EcrError::new(
                400,
                "SerializationException",
                format!("request body is not valid JSON: {e}"),
            )
        })?
    };
    tracing::debug!(operation, caller = %caller.arn(), "ECR API call");
    ops::call(api, &caller, operation, &input).await
}
