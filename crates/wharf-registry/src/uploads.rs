//! Blob uploads: `POST`/`PATCH`/`PUT`/`GET`/`DELETE` on `/v2/<name>/blobs/uploads/`,
//! including monolithic pushes and cross-repository mounts.

use crate::blobs::parse_digest;
use crate::error::{ApiError, ApiResult, Code};
use crate::util::{header, parse_content_range, range_header};
use crate::{AccessRequest, Registry};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::collections::HashMap;
use std::io;
use wharf_blob::ByteStream;
use wharf_meta::{now_millis, Repository, Upload};
use wharf_oci::{names, Digest};

/// Query parameters of a request (later duplicates win).
pub(crate) fn query(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|pairs| pairs.into_iter().collect())
        .unwrap_or_default()
}

/// Makes sure `name` exists before a push: creates it when create-on-push is on and
/// the caller may `ecr:CreateRepository`.
pub(crate) async fn repository_for_push(
    reg: &Registry,
    name: &str,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> ApiResult<Repository> {
    match reg.meta().get_repository(name).await? {
        Some(repo) => Ok(repo),
        None if reg.config().create_on_push => {
            reg.gate()
                .admit(&AccessRequest {
                    headers,
                    peer,
                    query: None,
                    repository: Some(name),
                    actions: &["ecr:CreateRepository"],
                })
                .await?;
            Ok(reg.meta().ensure_repository(name).await?)
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            format!(
                "repository {name:?} does not exist and create-on-push is off; create it first (wharf repo create {name})"
            ),
        )),
    }
}

/// The request body as a blob stream that fails once more than `limit` bytes
/// (counting `already` staged bytes) have arrived.
fn body_stream(body: Body, limit: u64, already: u64) -> ByteStream {
    let mut seen = already;
    Box::pin(body.into_data_stream().map(move |chunk| match chunk {
        Ok(bytes) => {
            seen += bytes.len() as u64;
            if seen > limit {
                Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("blob is larger than the registry's limit of {limit} bytes"),
                ))
            } else {
                Ok(bytes)
            }
        }
        Err(e) => Err(io::Error::other(e)),
    }))
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    (
        status,
        [
            ("location", upload_location(name, id)),
            ("range", range_header(size)),
            ("docker-upload-uuid", id.to_string()),
            ("content-length", "0".to_string()),
        ],
    )
        .into_response()
}

/// 201 for a blob now readable through `name`.
fn blob_created(name: &str, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".to_string()),
        ],
    )
        .into_response()
}

/// Checks `Content-Range` / `Content-Length` of a chunk against the staged size.
fn check_chunk(headers: &HeaderMap, id: &str, name: &str, size: u64) -> ApiResult<()> {
    let Some(cr) = header(headers, "content-range") else {
        return Ok(());
    };
    let Some((start, end)) = parse_content_range(cr) else {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            Code::BlobUploadInvalid,
            format!("Content-Range {cr:?} is not of the form <start>-<end>"),
        )
        .header("range", range_header(size))
        .header("location", upload_location(name, id)));
    };
    if start != size {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            Code::BlobUploadInvalid,
            format!(
                "chunk starts at byte {start} but upload {id} holds {size} bytes; send the chunk starting at {size}"
            ),
        )
        .header("range", range_header(size))
        .header("location", upload_location(name, id)));
    }
    if let Some(len) = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        if len != end - start + 1 {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BlobUploadInvalid,
                format!(
                    "Content-Range {start}-{end} covers {} bytes but Content-Length is {len}",
                    end - start + 1
                ),
            )
            .header("range", range_header(size))
            .header("location", upload_location(name, id)));
        }
    }
    Ok(())
}

async fn session(reg: &Registry, name: &str, id: &str) -> ApiResult<Upload> {
    match reg.meta().get_upload(id).await? {
        Some(u) if u.repository == name => Ok(u),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::BlobUploadUnknown,
            format!(
                "upload {id} is not in progress in repository {name:?} (it finished, was cancelled, or expired)"
            ),
        )),
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    match header(headers, "content-length") {
        Some(len) => len.trim() != "0",
        None => headers.contains_key("transfer-encoding"),
    }
}

/// `POST /v2/<name>/blobs/uploads/`: mount, monolithic upload, or a new session.
pub async fn start(reg: &Registry, name: &str, req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let digest = q.get("digest").map(|d| parse_digest(d)).transpose()?;
    let mount = q.get("mount").map(|d| parse_digest(d)).transpose()?;
    let peer = crate::peer(&req);
    let repo = repository_for_push(reg, name, req.headers(), peer).await?;
    if let Some(mount) = &mount {
        if let Some(from) = q.get("from") {
            // Mounting reads the blob from `from`: the caller must be able to pull it.
            let may_read = names::validate_repository(from).is_ok()
                && reg
                    .gate()
                    .admit(&AccessRequest {
                        headers: req.headers(),
                        peer,
                        query: None,
                        repository: Some(from),
                        actions: &["ecr:GetDownloadUrlForLayer"],
                    })
                    .await
                    .is_ok();
            if may_read && reg.meta().mount_blob(from, name, mount).await?.is_some() {
                // The blob may be encrypted under the source repository's key only.
                reg.blobs().grant_key(mount, repo.encryption_key()).await?;
                return Ok(blob_created(name, mount));
            }
        }
        // Not mountable (no source, or the source does not hold it): fall back to an
        // upload session, as the spec allows.
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let now = now_millis();
    reg.meta()
        .create_upload(&Upload {
            id: id.clone(),
            repository: name.to_string(),
            started_at: now,
            updated_at: now,
        })
        .await?;
    reg.blobs()
        .start_upload_for_key(&id, repo.encryption_key())
        .await?;
    match digest {
        Some(digest) if mount.is_none() => {
            let (parts, body) = req.into_parts();
            let result = finish_upload(reg, name, &id, &digest, &parts.headers, body).await;
            if result.is_err() {
                // The client holds no Location for this session: do not leave it behind.
                reg.blobs().abort_upload(&id).await?;
                reg.meta().delete_upload(&id).await?;
            }
            result
        }
        _ => Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0)),
    }
}

/// `PATCH`: appends a chunk (with `Content-Range`) or a stream (without).
pub async fn patch(reg: &Registry, name: &str, id: &str, req: Request) -> ApiResult<Response> {
    session(reg, name, id).await?;
    let size = reg.blobs().upload_size(id).await?;
    let (parts, body) = req.into_parts();
    check_chunk(&parts.headers, id, name, size)?;
    let limit = reg.config().max_blob_bytes;
    let new_size = reg
        .blobs()
        .append_upload(id, size, body_stream(body, limit, size))
        .await?;
    reg.meta().touch_upload(id, now_millis()).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, new_size))
}

/// `GET`: how many bytes the session holds.
pub async fn status(reg: &Registry, name: &str, id: &str) -> ApiResult<Response> {
    session(reg, name, id).await?;
    let size = reg.blobs().upload_size(id).await?;
    Ok(upload_response(StatusCode::NO_CONTENT, name, id, size))
}

/// `PUT ?digest=`: optional last chunk, then verify and commit.
pub async fn finish(reg: &Registry, name: &str, id: &str, req: Request) -> ApiResult<Response> {
    let q = query(&req);
    session(reg, name, id).await?;
    let digest = match q.get("digest") {
        Some(d) => parse_digest(d)?,
        None => {
            return Err(ApiError::digest_invalid(
                "PUT to finish an upload needs a ?digest= parameter naming the blob's digest",
            ))
        }
    };
    let (parts, body) = req.into_parts();
    finish_upload(reg, name, id, &digest, &parts.headers, body).await
}

async fn finish_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    digest: &Digest,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if has_body(headers) {
        let size = reg.blobs().upload_size(id).await?;
        check_chunk(headers, id, name, size)?;
        let limit = reg.config().max_blob_bytes;
        reg.blobs()
            .append_upload(id, size, body_stream(body, limit, size))
            .await?;
    }
    let committed = reg.blobs().commit_upload(id, digest).await;
    // The staging area is gone either way; so is the session.
    reg.meta().delete_upload(id).await?;
    let size = committed?;
    reg.meta().link_blob(name, digest, size).await?;
    Ok(blob_created(name, digest))
}

/// `DELETE`: cancels the session.
pub async fn cancel(reg: &Registry, name: &str, id: &str) -> ApiResult<Response> {
    session(reg, name, id).await?;
    reg.blobs().abort_upload(id).await?;
    reg.meta().delete_upload(id).await?;
    Ok((StatusCode::NO_CONTENT, [("content-length", "0")]).into_response())
}
