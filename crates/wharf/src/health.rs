//! `/healthz` (the process answers) and `/readyz` (it can serve: the metadata database
//! and the blob store answer, and it is not shutting down), for load balancers and
//! orchestrators. Both are unauthenticated and reveal nothing but engine status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wharf_blob::BlobStore;
use wharf_meta::MetadataStore;

/// How long each engine may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the checks look at.
#[derive(Clone)]
pub struct Health {
    /// The metadata store.
    pub meta: Arc<dyn MetadataStore>,
    /// The blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// Set once shutdown has begun: the replica drains and should get no new work.
    pub draining: Arc<AtomicBool>,
}

/// The two routes.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(health)
}

async fn ready(State(h): State<Health>) -> Response {
    let (meta, blobs) = tokio::join!(check_metadata(&h), check_blobs(&h));
    let draining = h.draining.load(Ordering::Relaxed);
    let ok = meta.is_ok() && blobs.is_ok() && !draining;
    let text = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let body = serde_json::json!({
        "status": if ok { "ready" } else if draining { "draining" } else { "unavailable" },
        "metadata": text(&meta),
        "blobs": text(&blobs),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !ok {
        tracing::warn!(%body, "readiness check failed");
    }
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn check_metadata(h: &Health) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, h.meta.list_repositories(None, 1)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err(format!("error: no answer within {CHECK_TIMEOUT:?}")),
    }
}

async fn check_blobs(h: &Health) -> Result<(), String> {
    // A lookup of a blob nobody has: exercises the store's connection and permissions.
    let probe = wharf_oci::Algorithm::Sha256.digest(b"wharf readiness probe");
    match tokio::time::timeout(CHECK_TIMEOUT, h.blobs.stat(&probe)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err(format!("error: no answer within {CHECK_TIMEOUT:?}")),
    }
}
