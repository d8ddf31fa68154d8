//! The OCI distribution API (`/v2/`), spec v1.1, over the [`MetadataStore`] and
//! [`BlobStore`] seams. Handlers never see a storage path or SQL; they parse the
//! request, ask the stores, and shape the response.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use wharf_blob::BlobStore;
use wharf_meta::MetadataStore;

mod blobs;
pub mod error;
mod listing;
mod manifests;
mod route;
mod uploads;
pub mod util;

pub use error::{ApiError, ApiResult, Code};
use route::Route;

/// Behaviour switches of the registry API.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Create a repository on first push instead of answering NAME_UNKNOWN.
    pub create_on_push: bool,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Upload sessions idle for longer are discarded.
    pub upload_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            create_on_push: true,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 52_000 * 1024 * 1024,
            upload_timeout: Duration::from_secs(24 * 3600),
        }
    }
}

/// The registry: its stores and configuration. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    config: RegistryConfig,
}

impl Registry {
    /// A registry over the given stores.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        config: RegistryConfig,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                meta,
                blobs,
                config,
            }),
        }
    }

    pub(crate) fn meta(&self) -> &dyn MetadataStore {
        self.inner.meta.as_ref()
    }

    pub(crate) fn blobs(&self) -> &dyn BlobStore {
        self.inner.blobs.as_ref()
    }

    pub(crate) fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The `/v2/` routes, to be merged into the server's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2", any(dispatch))
            .route("/v2/", any(dispatch))
            .route("/v2/{*path}", any(dispatch))
            .with_state(self.clone())
    }

    /// Discards upload sessions idle for longer than the configured timeout, and
    /// staging areas that no session refers to. Returns how many were removed.
    pub async fn expire_uploads(&self) -> ApiResult<usize> {
        let timeout = self.config().upload_timeout.as_millis() as i64;
        let cutoff = wharf_meta::now_millis() - timeout;
        let mut removed = 0;
        for upload in self.meta().stale_uploads(cutoff).await? {
            self.blobs().abort_upload(&upload.id).await?;
            self.meta().delete_upload(&upload.id).await?;
            removed += 1;
        }
        // Staging areas without a session row: the row is written before the staging
        // area is created, so such an area is left over from a crash or a failed start.
        for id in self.blobs().list_uploads().await? {
            if self.meta().get_upload(&id).await?.is_none() {
                self.blobs().abort_upload(&id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = match route::parse(&path) {
        Ok(route) => handle(&reg, route, req).await,
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn handle(reg: &Registry, route: Route, req: Request) -> ApiResult<Response> {
    let method = req.method().clone();
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok((
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from("{}"),
        )
            .into_response()),
        (Route::Catalog, Method::GET) => listing::catalog(reg, req).await,
        (Route::Tags { name }, Method::GET) => listing::tags(reg, &name, req).await,
        (Route::Referrers { name, digest }, Method::GET) => {
            listing::referrers(reg, &name, &digest, req).await
        }
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(reg, &name, &reference, req).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            manifests::put(reg, &name, &reference, req).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(reg, &name, &reference).await
        }
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            blobs::get(reg, &name, &digest, req).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => blobs::delete(reg, &name, &digest).await,
        (Route::UploadStart { name }, Method::POST) => uploads::start(reg, &name, req).await,
        (Route::Upload { name, id }, Method::GET) => uploads::status(reg, &name, &id).await,
        (Route::Upload { name, id }, Method::PATCH) => uploads::patch(reg, &name, &id, req).await,
        (Route::Upload { name, id }, Method::PUT) => uploads::finish(reg, &name, &id, req).await,
        (Route::Upload { name, id }, Method::DELETE) => uploads::cancel(reg, &name, &id).await,
        (route, method) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("{method} is not supported on {}", route.describe()),
        )),
    }
}
