//! Blob reads and deletes: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use crate::error::{ApiError, ApiResult, Code};
use crate::util::{header, parse_range, ByteRange};
use crate::Registry;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wharf_oci::Digest;

/// How long a redirect to the blob store's own URL stays valid.
const REDIRECT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Parses a digest from a path or query, as 400 DIGEST_INVALID when malformed.
pub(crate) fn parse_digest(s: &str) -> ApiResult<Digest> {
    Digest::parse(s).map_err(|e| ApiError::digest_invalid(e.to_string()))
}

/// Ok if repository `name` exists, else 404 NAME_UNKNOWN.
pub(crate) async fn require_repository(reg: &Registry, name: &str) -> ApiResult<()> {
    match reg.meta().get_repository(name).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            format!("repository {name:?} does not exist"),
        )
        .detail(json!({ "name": name }))),
    }
}

/// NAME_UNKNOWN if the repository is missing, else the given error.
pub(crate) async fn or_name_unknown(reg: &Registry, name: &str, err: ApiError) -> ApiError {
    match require_repository(reg, name).await {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// `GET`/`HEAD`: a blob the repository holds, whole or a byte range.
pub async fn get(reg: &Registry, name: &str, digest: &str, req: Request) -> ApiResult<Response> {
    let digest = parse_digest(digest)?;
    let Some(size) = reg.meta().repository_blob(name, &digest).await? else {
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            Code::BlobUnknown,
            format!("blob {digest} is not in repository {name:?}"),
        )
        .detail(json!({ "digest": digest.to_string() }));
        return Err(or_name_unknown(reg, name, err).await);
    };
    let common = [
        ("docker-content-digest", digest.to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("etag", format!("\"{digest}\"")),
    ];
    if req.method() == Method::HEAD {
        return Ok((
            StatusCode::OK,
            common,
            [("content-length", size.to_string())],
        )
            .into_response());
    }
    // When the blob store hands out direct URLs (S3 with redirects on), the client
    // fetches the bytes from there, Range and all, as from ECR's presigned S3 URLs.
    if let Some(url) = reg.blobs().download_url(&digest, REDIRECT_LIFETIME).await? {
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                ("location", url),
                ("docker-content-digest", digest.to_string()),
            ],
        )
            .into_response());
    }
    let range = header(req.headers(), "range")
        .map(|r| parse_range(r, size))
        .unwrap_or(ByteRange::Full);
    match range {
        ByteRange::Full => {
            let stream = reg.blobs().read(&digest, None).await?;
            Ok((
                StatusCode::OK,
                common,
                [("content-length", size.to_string())],
                Body::from_stream(stream),
            )
                .into_response())
        }
        ByteRange::Partial(start, end) => {
            let stream = reg.blobs().read(&digest, Some(start..end)).await?;
            Ok((
                StatusCode::PARTIAL_CONTENT,
                common,
                [
                    ("content-length", (end - start).to_string()),
                    ("content-range", format!("bytes {start}-{}/{size}", end - 1)),
                ],
                Body::from_stream(stream),
            )
                .into_response())
        }
        ByteRange::Unsatisfiable => Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            Code::BlobUnknown,
            format!(
                "range {:?} is outside blob {digest} of {size} bytes",
                header(req.headers(), "range").unwrap_or("")
            ),
        )
        .header("content-range", format!("bytes */{size}"))),
    }
}

/// `DELETE`: removes the repository's link to the blob. The bytes are collected
/// later, once no repository links them (DESIGN.md §4).
pub async fn delete(reg: &Registry, name: &str, digest: &str) -> ApiResult<Response> {
    let digest = parse_digest(digest)?;
    if reg.meta().unlink_blob(name, &digest).await? {
        return Ok((StatusCode::ACCEPTED, [("content-length", "0")]).into_response());
    }
    let err = ApiError::new(
        StatusCode::NOT_FOUND,
        Code::BlobUnknown,
        format!("blob {digest} is not in repository {name:?}"),
    )
    .detail(json!({ "digest": digest.to_string() }));
    Err(or_name_unknown(reg, name, err).await)
}
