//! Listings: `_catalog`, tags, and referrers.

use crate::blobs::{parse_digest, require_repository};
use crate::error::ApiResult;
use crate::uploads::query;
use crate::Registry;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Page size when the client names none.
const DEFAULT_PAGE: usize = 10_000;

struct Page {
    n: usize,
    explicit_n: bool,
    last: Option<String>,
}

fn page(req: &Request) -> Page {
    let q = query(req);
    let parsed = q.get("n").and_then(|v| v.parse::<usize>().ok());
    Page {
        n: parsed.unwrap_or(DEFAULT_PAGE).min(DEFAULT_PAGE),
        explicit_n: parsed.is_some(),
        last: q.get("last").filter(|l| !l.is_empty()).cloned(),
    }
}

fn with_link(body: Value, more: Option<String>) -> Response {
    let mut resp = (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(link) = more.and_then(|l| l.parse().ok()) {
        resp.headers_mut().insert("link", link);
    }
    resp
}

fn next_link(base: &str, p: &Page, last: &str) -> String {
    let last = serde_urlencoded::to_string([("last", last)]).unwrap_or_default();
    if p.explicit_n {
        format!("<{base}?n={}&{last}>; rel=\"next\"", p.n)
    } else {
        format!("<{base}?{last}>; rel=\"next\"")
    }
}

/// `GET /v2/_catalog`.
pub async fn catalog(reg: &Registry, req: Request) -> ApiResult<Response> {
    let p = page(&req);
    let mut repos: Vec<String> = if p.n == 0 {
        Vec::new()
    } else {
        reg.meta()
            .list_repositories(p.last.as_deref(), p.n + 1)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    let more = repos.len() > p.n;
    repos.truncate(p.n);
    let link = match (more, repos.last()) {
        (true, Some(last)) => Some(next_link("/v2/_catalog", &p, last)),
        _ => None,
    };
    Ok(with_link(json!({ "repositories": repos }), link))
}

/// `GET /v2/<name>/tags/list`.
pub async fn tags(reg: &Registry, name: &str, req: Request) -> ApiResult<Response> {
    let p = page(&req);
    let mut tags = if p.n == 0 {
        Vec::new()
    } else {
        reg.meta()
            .list_tags(name, p.last.as_deref(), p.n + 1)
            .await?
    };
    if tags.is_empty() {
        // Tell an empty repository from a missing one.
        require_repository(reg, name).await?;
    }
    let more = tags.len() > p.n;
    tags.truncate(p.n);
    let link = match (more, tags.last()) {
        (true, Some(last)) => Some(next_link(&format!("/v2/{name}/tags/list"), &p, last)),
        _ => None,
    };
    Ok(with_link(json!({ "name": name, "tags": tags }), link))
}

/// `GET /v2/<name>/referrers/<digest>`: an image index of the manifests whose
/// subject is `digest`, optionally filtered by `artifactType`.
pub async fn referrers(
    reg: &Registry,
    name: &str,
    digest: &str,
    req: Request,
) -> ApiResult<Response> {
    let digest = parse_digest(digest)?;
    let q = query(&req);
    let filter = q.get("artifactType").filter(|t| !t.is_empty());
    let refs = reg
        .meta()
        .referrers(name, &digest, filter.map(String::as_str))
        .await?;
    // The spec forbids 404 here (clients read it as "no referrers API"), so an unknown
    // repository or subject is an empty index.
    let manifests: Vec<Value> = refs
        .into_iter()
        .map(|r| {
            let mut d = json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_string(),
                "size": r.size,
            });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = Value::String(t);
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": wharf_oci::media_types::OCI_INDEX,
        "manifests": manifests,
    });
    let mut resp = (
        StatusCode::OK,
        [("content-type", wharf_oci::media_types::OCI_INDEX)],
        body.to_string(),
    )
        .into_response();
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            axum::http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
