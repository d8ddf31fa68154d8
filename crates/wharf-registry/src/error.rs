//! OCI error responses: `{"errors":[{"code","message","detail"}]}` with the spec's codes.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use wharf_blob::BlobError;
use wharf_meta::MetaError;

/// The error codes of the OCI distribution spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl Code {
    /// The code as it appears in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
        }
    }
}

/// An error returned to a `/v2/` client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OCI error code.
    pub code: Code,
    /// What was wrong, in words that name the thing concerned.
    pub message: String,
    /// Structured detail, if any.
    pub detail: Option<Value>,
    /// Extra headers (e.g. `Range` on a 416).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds structured detail.
    pub fn detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// 400 DIGEST_INVALID.
    pub fn digest_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Code::DigestInvalid, message)
    }

    /// 500 for failures of the server itself.
    pub fn internal(message: impl Into<String>) -> ApiError {
        // Server faults still use a spec code so clients can parse the body.
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unsupported,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), "{}", self.message);
        }
        let mut entry = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = self.detail {
            entry["detail"] = d;
        }
        let body = json!({ "errors": [entry] }).to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> ApiError {
        let msg = e.to_string();
        match e {
            MetaError::RepositoryNotFound(name) => {
                ApiError::new(StatusCode::NOT_FOUND, Code::NameUnknown, msg)
                    .detail(json!({ "name": name }))
            }
            MetaError::RepositoryExists(_) | MetaError::RepositoryNotEmpty { .. } => {
                ApiError::new(StatusCode::CONFLICT, Code::Denied, msg)
            }
            MetaError::MissingBlob { digest, .. } | MetaError::MissingManifest { digest, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, Code::ManifestBlobUnknown, msg)
                    .detail(json!({ "digest": digest.to_string() }))
            }
            MetaError::TagImmutable { tag, current, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, Code::TagInvalid, msg)
                    .detail(json!({ "tag": tag, "digest": current.to_string() }))
            }
            MetaError::InvalidSetting(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, Code::Unsupported, msg)
            }
            MetaError::AccessKeyExists(_) | MetaError::Backend(_) | MetaError::Iam { .. } => {
                ApiError::internal(msg)
            }
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> ApiError {
        let msg = e.to_string();
        match e {
            BlobError::UploadUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, Code::BlobUploadUnknown, msg)
            }
            BlobError::OffsetMismatch { size, .. } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BlobUploadInvalid,
                msg,
            )
            .header("range", crate::util::range_header(size)),
            BlobError::DigestMismatch { expected, computed } => ApiError::digest_invalid(msg)
                .detail(
                    json!({ "expected": expected.to_string(), "computed": computed.to_string() }),
                ),
            BlobError::BlobUnknown(d) => {
                ApiError::new(StatusCode::NOT_FOUND, Code::BlobUnknown, msg)
                    .detail(json!({ "digest": d.to_string() }))
            }
            BlobError::RangeNotSatisfiable { size, .. } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, Code::BlobUnknown, msg)
                    .header("content-range", format!("bytes */{size}"))
            }
            BlobError::Body(ref io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::SizeInvalid,
                    io.to_string(),
                )
            }
            BlobError::Body(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, Code::BlobUploadInvalid, msg)
            }
            BlobError::Io(_) => ApiError::internal(msg),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
