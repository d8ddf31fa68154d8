//! Manifests: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use crate::blobs::or_name_unknown;
use crate::error::{ApiError, ApiResult, Code};
use crate::uploads::repository_for_push;
use crate::util::header;
use crate::Registry;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wharf_meta::{ManifestRecord, NewManifest, Reference};
use wharf_oci::{manifest, names, Algorithm, Digest};

fn parse_reference(reference: &str) -> Result<Reference, ApiError> {
    if reference.contains(':') {
        Digest::parse(reference)
            .map(Reference::Digest)
            .map_err(|e| ApiError::digest_invalid(e.to_string()))
    } else {
        names::validate_tag(reference)
            .map(|_| Reference::Tag(reference.to_string()))
            .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, Code::ManifestInvalid, why))
    }
}

fn describe(reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!("tag {t:?}"),
        Reference::Digest(d) => format!("manifest {d}"),
    }
}

/// Media types the client accepts, or `None` when it accepts anything.
fn accepted_types(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut types = Vec::new();
    for value in headers.get_all("accept") {
        let Ok(v) = value.to_str() else { continue };
        for item in v.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            if t == "*/*" || t == "application/*" || t == "application/json" {
                return None;
            }
            types.push(t.to_string());
        }
    }
    (!types.is_empty()).then_some(types)
}

fn kind_name(media_type: &str) -> &'static str {
    match media_type {
        wharf_oci::media_types::OCI_INDEX => "an OCI image index",
        wharf_oci::media_types::DOCKER_MANIFEST_LIST => "a Docker manifest list",
        wharf_oci::media_types::OCI_MANIFEST => "an OCI image manifest",
        wharf_oci::media_types::DOCKER_MANIFEST => "a Docker schema 2 manifest",
        _ => "a manifest",
    }
}

/// `GET`/`HEAD`: the manifest bytes exactly as pushed.
pub async fn get(reg: &Registry, name: &str, reference: &str, req: Request) -> ApiResult<Response> {
    let reference = parse_reference(reference).map_err(|e| {
        if e.code == Code::ManifestInvalid {
            ApiError::new(StatusCode::NOT_FOUND, Code::ManifestUnknown, e.message)
        } else {
            e
        }
    })?;
    let Some(m) = reg.meta().get_manifest(name, &reference).await? else {
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            Code::ManifestUnknown,
            format!("{} is not in repository {name:?}", describe(&reference)),
        );
        return Err(or_name_unknown(reg, name, err).await);
    };
    if let Some(accepted) = accepted_types(req.headers()) {
        if !accepted.contains(&m.media_type) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                Code::ManifestUnknown,
                format!(
                    "{} in repository {name:?} is {} ({}), which the request's Accept header does not include (it accepts: {})",
                    describe(&reference),
                    kind_name(&m.media_type),
                    m.media_type,
                    accepted.join(", ")
                ),
            )
            .detail(json!({ "mediaType": m.media_type, "digest": m.digest.to_string() })));
        }
    }
    let head = req.method() == Method::HEAD;
    if !head {
        reg.note_pull(name, &m.digest);
    }
    Ok(manifest_response(m, head))
}

fn manifest_response(m: ManifestRecord, head: bool) -> Response {
    let headers = [
        ("content-type", m.media_type),
        ("docker-content-digest", m.digest.to_string()),
        ("etag", format!("\"{}\"", m.digest)),
        ("content-length", m.body.len().to_string()),
    ];
    if head {
        (StatusCode::OK, headers).into_response()
    } else {
        (StatusCode::OK, headers, Body::from(m.body)).into_response()
    }
}

/// How much of an oversized manifest body is read before refusing it.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn drain(body: Body, limit: usize) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > limit {
            break;
        }
    }
}

/// `PUT`: verifies and stores a manifest, and tags it when pushed by tag.
pub async fn put(reg: &Registry, name: &str, reference: &str, req: Request) -> ApiResult<Response> {
    let reference = parse_reference(reference)?;
    let content_type = header(req.headers(), "content-type").map(str::to_string);
    let (headers, peer) = (req.headers().clone(), crate::peer(&req));
    let max = reg.config().max_manifest_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::SizeInvalid,
            format!("manifest is larger than the registry's limit of {max} bytes"),
        )
    };
    if let Some(len) = header(req.headers(), "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        if len > max {
            // Read (and drop) a bounded amount of the body first, so that clients which
            // write the whole body before reading see the 413 instead of a reset.
            drain(req.into_body(), DRAIN_LIMIT).await;
            return Err(too_large());
        }
    }
    let body = axum::body::to_bytes(req.into_body(), max)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .map(|s| s.is::<http_body_util::LengthLimitError>())
                .unwrap_or(false)
            {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Code::ManifestInvalid,
                    format!("reading the manifest body failed: {e}"),
                )
            }
        })?;
    let parsed = manifest::parse(&body, content_type.as_deref()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::ManifestInvalid,
            e.to_string(),
        )
    })?;
    let (digest, tag) = match &reference {
        Reference::Digest(expected) => {
            let computed = expected.algorithm().digest(&body);
            if computed != *expected {
                return Err(ApiError::digest_invalid(format!(
                    "manifest body hashes to {computed}, not to {expected} named in the URL"
                ))
                .detail(
                    json!({ "expected": expected.to_string(), "computed": computed.to_string() }),
                ));
            }
            (computed, None)
        }
        Reference::Tag(t) => (Algorithm::Sha256.digest(&body), Some(t.as_str())),
    };
    repository_for_push(reg, name, &headers, peer).await?;
    let new = NewManifest::from_parsed(digest.clone(), body, &parsed);
    let subject = new.subject.clone();
    reg.meta().put_manifest(name, &new, tag).await?;
    let mut resp = (
        StatusCode::CREATED,
        [
            ("location", format!("/v2/{name}/manifests/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".to_string()),
        ],
    )
        .into_response();
    if let Some(s) = subject {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert("oci-subject", v);
        }
    }
    Ok(resp)
}

/// `DELETE`: by digest removes the manifest and its tags; by tag removes the tag.
pub async fn delete(reg: &Registry, name: &str, reference: &str) -> ApiResult<Response> {
    let reference = parse_reference(reference)?;
    let existed = match &reference {
        Reference::Digest(d) => reg.meta().delete_manifest(name, d).await?,
        Reference::Tag(t) => reg.meta().delete_tag(name, t).await?,
    };
    if existed {
        return Ok((StatusCode::ACCEPTED, [("content-length", "0")]).into_response());
    }
    let err = ApiError::new(
        StatusCode::NOT_FOUND,
        Code::ManifestUnknown,
        format!("{} is not in repository {name:?}", describe(&reference)),
    );
    Err(or_name_unknown(reg, name, err).await)
}
